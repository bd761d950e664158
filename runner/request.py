"""The run request: everything a child process needs to do one job, typed, versioned, one JSON file.

    python -m runner run ...       # the parent builds one RunRequest per framework and repeat
    python -m runner verify ...    # one per framework, job "parity"
    python -m runner ensemble ... | per-sample-grads ...   # one per framework, job "ensemble" | "per_sample_grads"
    python -m runner.launch.child REQUEST.json   # what every launcher starts: the same file for a
                                                 # subprocess, a container, a torchrun rank or a Slurm task

It is the only contract between parent and child. Both sides validate it (`from_dict` checks the
version, every key and every type), so a launcher that drops or misspells a field fails at once with
the field's name instead of a silent default deep in the worker.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import UserError
from runner.workload.spec import Spec

REQUEST_VERSION = 2  # 2: experiment and study (schema v5)
# train: one timed run -> a record; parity: the gate alone -> a result file; ensemble, per_sample_grads:
# a timed operation study (runner.micro) -> a record of that kind, its settings in `study`
JOBS = ("train", "parity", "ensemble", "per_sample_grads")


class RequestError(UserError):
    """A run request that does not match this dlbench's contract."""


@dataclass(frozen=True)
class Repeat:
    """Which run of a framework this is, and the policy that decides how many there are."""

    index: int = 0
    of: int = 1                     # the minimum number of runs (all of them under "fixed")
    policy: str = "fixed"           # fixed | until-stable
    max: int = 1
    cv_threshold: float | None = None


@dataclass(frozen=True)
class Sampling:
    """The resource sampler around training (runner.measure)."""

    interval_s: float = 1.0
    write_samples: bool = False     # keep every sample beside the record


@dataclass(frozen=True)
class LaunchSettings:
    """Which launcher starts the child and its own settings (runner.launch.launchers)."""

    name: str = "process"
    settings: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RunRequest:
    job: str
    spec: Spec
    framework: str
    device: str                     # as asked: auto | cpu | cuda | mps
    data_dir: str                   # the verified dataset folder
    out_dir: str                    # train: the records folder; parity: where the result file goes
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    options: dict = field(default_factory=dict)          # backend options, already checked
    platform: dict = field(default_factory=lambda: {"name": "local", "source": "detected"})
    data_source: str = "cache"      # folder | env | cache: where the data folder came from
    command: str = ""               # the command line the user typed, for the record
    repeat: Repeat = field(default_factory=Repeat)
    sampling: Sampling = field(default_factory=Sampling)
    parity_steps: int = 0           # train: check K steps after training (0: no); parity: K steps
    launcher: LaunchSettings = field(default_factory=LaunchSettings)
    hardware: dict | None = None    # the parent's probe, so the child does not probe again
    environment: dict | None = None
    experiment: dict | None = None  # train: the sweep point or tuning trial this run is (the record's block)
    study: dict | None = None       # ensemble / per_sample_grads: the study's settings (runner.experiments)
    version: int = REQUEST_VERSION

    def __post_init__(self):
        if self.job not in JOBS:
            raise RequestError(f"run request: unknown job {self.job!r} (known: {', '.join(JOBS)})")

    @property
    def result_path(self) -> Path:
        """Where a parity job writes its result (a train job's result is its record)."""
        return Path(self.out_dir) / f"parity-{self.framework}-{self.run_id[:12]}.json"

    @property
    def log_name(self) -> str:
        """The child's log file (framework banners, warnings, tracebacks), relative to out_dir."""
        return f"logs/{self.framework}-{self.run_id[:12]}.log"

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["spec"] = self.spec.to_dict()
        for name in ("repeat", "sampling", "launcher"):
            d[name] = dataclasses.asdict(d[name])
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, allow_nan=False)

    def write(self, path: Path) -> Path:
        """Validate (the same check the child makes) and write; a bad request never leaves the parent."""
        text = self.to_json()
        RunRequest.from_dict(json.loads(text))
        Path(path).write_text(text)
        return Path(path)

    @classmethod
    def from_dict(cls, d: Any) -> "RunRequest":
        if not isinstance(d, dict):
            raise RequestError("run request: not a JSON object")
        if d.get("version") != REQUEST_VERSION:
            raise RequestError(f"run request version {d.get('version')!r}: this dlbench reads version"
                               f" {REQUEST_VERSION} (parent and child must be the same dlbench)")
        values = _checked(cls, d, "run request")
        values["spec"] = Spec.from_dict(d["spec"])
        for name, sub in (("repeat", Repeat), ("sampling", Sampling), ("launcher", LaunchSettings)):
            values[name] = sub(**_checked(sub, d[name], f"run request {name}"))
        return cls(**values)

    @classmethod
    def read(cls, path: Path) -> "RunRequest":
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise RequestError(f"run request {path}: unreadable ({type(e).__name__}: {e})") from None
        return cls.from_dict(data)


def _checked(cls, d: Any, what: str) -> dict[str, Any]:
    """`d`'s values for `cls`'s fields, every key present and of its declared type."""
    if not isinstance(d, dict):
        raise RequestError(f"{what}: not a JSON object")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    missing, unknown = [n for n in names if n not in d], sorted(set(d) - set(names))
    if missing or unknown:
        raise RequestError(f"{what}: missing {missing or 'nothing'}, unknown {unknown or 'nothing'}")
    for name in names:
        if not _is(d[name], hints[name]):
            raise RequestError(f"{what}: {name} = {d[name]!r} is not {_show(hints[name])}")
    return {n: d[n] for n in names}


_NESTED = (Spec, Repeat, Sampling, LaunchSettings)


def _is(value: Any, hint: Any) -> bool:
    if hint in _NESTED:
        return isinstance(value, dict)  # checked field by field by its own from_dict
    if isinstance(hint, types.UnionType):
        return any(_is(value, h) for h in hint.__args__)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, typing.get_origin(hint) or hint)


def _show(hint: Any) -> str:
    return getattr(hint, "__name__", str(hint))
