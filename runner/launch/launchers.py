"""How a child process is started: one Launcher per way of starting it, each with its own settings.

    python -m runner run --launcher process      # the default: a subprocess of this one, on this machine

Every launcher starts the same thing, `python -m runner.launch.child REQUEST.json`, on the same
request file (runner.request); only where and how differ. New ways (a container through the
docker SDK or podman, torchrun ranks, Slurm job arrays) are one class each, registered in LAUNCHERS
by import path, so none of their dependencies loads unless it is chosen.

The caller owns the result: `launch()` returns how the child ended (`Exit`), and the caller reads
the record or result file the child wrote, or has the record module write one for a child that
died without (runner.records.build.lost).
"""

from __future__ import annotations

import abc
import dataclasses
import importlib
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar

from runner.errors import UserError
from runner.request import LaunchSettings, RunRequest

CHILD = "runner.launch.child"


@dataclass(frozen=True)
class Exit:
    code: int                     # the child's exit status; negative: killed by that signal
    interrupted: str | None = None  # the signal that stopped the parent (and was passed on), if any

    def describe(self) -> str:
        return f"killed by {signal.Signals(-self.code).name}" if self.code < 0 else f"exited with code {self.code}"


class Launcher(abc.ABC):
    """A way to start the child. Subclasses are frozen dataclasses: their fields are the settings,
    recorded with every run they start."""

    name: ClassVar[str]

    def __post_init__(self):
        # Checked at construction (from the command line or a request), so a bad value never reaches
        # the request's JSON (nan and inf are not JSON) nor a signal's wait.
        grace = getattr(self, "grace_s", 0.0)
        if isinstance(grace, bool) or not isinstance(grace, (int, float)) or not math.isfinite(grace) or grace < 0:
            raise UserError(f"launcher {self.name}: grace_s must be a finite number of seconds >= 0, got {grace!r}")

    def describe(self) -> LaunchSettings:
        return LaunchSettings(name=self.name, settings=dataclasses.asdict(self))

    def preflight(self) -> None:
        """Raise UserError if this launcher cannot start anything here (checked before any run)."""

    def check_here(self, spec, device: str) -> None:
        """Raise UserError if this launcher cannot start a child for `spec` on `device` from this
        machine: `run` and `verify` ask before anything starts (preflight holds what also holds for a
        submission to other machines)."""

    def request_folder(self, request: RunRequest) -> str | None:
        """Where the request file goes: None, a temporary folder on this machine (the child runs here)."""
        return None

    @abc.abstractmethod
    def start(self, request_file: Path, request: RunRequest) -> Exit:
        """Run the child on `request_file` to its end; on SIGINT/SIGTERM pass the signal on, give
        the child time to record what it finished, and say so in the Exit."""

    def supervise(self, wait: Callable[[], int], send: Callable[[str], None],
                  wait_at_most: Callable[[float], int]) -> Exit:
        """The signal protocol every launcher keeps: `wait()` for the child's exit code; if SIGINT or
        SIGTERM reaches us meanwhile, `send` the same signal on (a terminal's Ctrl-C has reached a
        child in our process group already; the child ignores signals once it handles the first, so
        passing it on is always safe, and passing on the same one keeps the record's "interrupted by
        SIGINT|SIGTERM" true), then `wait_at_most(grace_s)`, which ends the child if it overstays."""
        received = None
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
        try:
            try:
                return Exit(wait())
            except KeyboardInterrupt:
                received = "SIGINT"
            except _Terminated:
                received = "SIGTERM"
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            send(received)
            return Exit(wait_at_most(self.grace_s), received)
        finally:
            signal.signal(signal.SIGTERM, previous)
            if received:
                signal.signal(signal.SIGINT, signal.default_int_handler)


class _Terminated(BaseException):
    pass


def _raise_terminated(signum, frame):
    raise _Terminated


def check_program(program: str, who: str, setting: str = "python") -> None:
    """Refuse, before anything starts, an interpreter the child could not be started with: looked
    at, never run (running it would start whatever it is, which may block: a wrapper that waits)."""
    path = shutil.which(program) if os.sep not in program else program
    if path is None:
        raise UserError(f"launcher {who}: {setting}={program}: not found on PATH")
    if not os.path.exists(path):
        raise UserError(f"launcher {who}: {setting}={program}: no such file")
    if not os.path.isfile(path):  # follows symlinks: a link to a directory is no interpreter either
        raise UserError(f"launcher {who}: {setting}={program}: not a file")
    if not os.access(path, os.X_OK):
        raise UserError(f"launcher {who}: {setting}={program}: not executable (chmod +x, or another python=)")


def popen(command: list[str], who: str, **kwargs) -> subprocess.Popen:
    """subprocess.Popen, with a program that cannot be started (removed or made unexecutable since
    it was checked, or never checked: srun, an interpreter from $DLBENCH_PYTHONS) as one line."""
    try:
        return subprocess.Popen(command, **kwargs)
    except OSError as e:
        raise UserError(f"launcher {who}: cannot start {command[0]}: {e.strerror or e}") from None


def _die_with_parent(parent: int) -> None:
    """In the child, before exec: receive SIGTERM when the parent dies, even by SIGKILL (Linux), so
    a killed `dlbench run` never leaves a worker training on."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the child may outlive a SIGKILLed parent
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


@dataclass(frozen=True)
class ProcessLauncher(Launcher):
    """A subprocess on this machine, in the same process group (a terminal's Ctrl-C reaches both)."""

    name: ClassVar[str] = "process"
    python: str | None = None     # the interpreter every child runs with; None: the framework's own
    grace_s: float = 120.0        # how long a signalled child gets to write its record

    def __post_init__(self):
        super().__post_init__()
        if self.python is not None and not self.python.strip():  # `python=`: not the default, a mistake
            raise UserError(f"launcher {self.name}: python= is empty: give the interpreter's path"
                            f" (or 'none' for the framework's own)")

    def preflight(self) -> None:
        # Here, not at construction: a Slurm task builds its launcher from the request on a node
        # whose files the submitting machine need not have.
        if self.python is not None:
            check_program(self.python, self.name)

    def command(self, request_file: Path, framework: str) -> list[str]:
        """The child's command line; without a `python` setting, the interpreter of the framework's
        environment ($DLBENCH_PYTHONS: an image can hold one per framework), else this one."""
        from runner.backends.interpreters import python_for

        return [self.python or python_for(framework), "-m", CHILD, str(request_file)]

    def start(self, request_file: Path, request: RunRequest) -> Exit:
        parent = os.getpid()
        preexec = (lambda: _die_with_parent(parent)) if sys.platform.startswith("linux") else None
        proc = popen(self.command(request_file, request.framework), self.name, preexec_fn=preexec)

        def wait_at_most(seconds: float) -> int:
            try:
                return proc.wait(timeout=seconds)
            except subprocess.TimeoutExpired:
                proc.kill()
                return proc.wait()

        return self.supervise(proc.wait, lambda name: proc.send_signal(getattr(signal, name)), wait_at_most)


# name -> "module:Class", imported only when chosen.
LAUNCHERS: dict[str, str] = {"process": "runner.launch.launchers:ProcessLauncher",
                             "container": "runner.launch.container:ContainerLauncher",
                             "torchrun": "runner.launch.torchrun:TorchrunLauncher"}


def get(name: str = "process", **settings) -> Launcher:
    if name not in LAUNCHERS:
        raise UserError(f"unknown launcher {name!r} (choose from {', '.join(LAUNCHERS)})")
    module, cls = LAUNCHERS[name].split(":")
    launcher_cls = getattr(importlib.import_module(module), cls)
    try:
        return launcher_cls(**settings)
    except TypeError as e:
        raise UserError(f"launcher {name}: bad settings ({e})") from None


def from_args(name: str, items: list[str], **given) -> Launcher:
    """The launcher `name` with `--launcher-setting KEY=VALUE` items, each value read as its
    field's type ('none' for the settings that may be unset), and `given` settings from other flags."""
    import typing

    launcher_cls = type(get(name))
    hints = typing.get_type_hints(launcher_cls)
    fields = {f.name for f in dataclasses.fields(launcher_cls)}
    settings = {}
    for item in items:
        key, eq, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or key not in fields:
            raise UserError(f"--launcher-setting {item!r}: expected KEY=VALUE with KEY one of"
                            f" {', '.join(sorted(fields))} (launcher {name})")
        kinds = typing.get_args(hints[key]) or (hints[key],)
        if type(None) in kinds and text.lower() == "none":
            settings[key] = None
            continue
        kind = next(k for k in kinds if k is not type(None))
        try:
            settings[key] = kind(text)
        except ValueError:
            raise UserError(f"--launcher-setting {item!r}: {key} must be a {kind.__name__}") from None
        # Every float setting is a duration: nan, inf, 1e400 (read as inf) and -1 are no wait.
        if kind is float and not (math.isfinite(settings[key]) and settings[key] >= 0):
            raise UserError(f"--launcher-setting {item!r}: {key} must be a finite number >= 0, got {text}")
    return get(name, **settings, **given)


def launch(request: RunRequest, launcher: Launcher) -> Exit:
    """Write `request` where the child can read it, start the child with `launcher`, wait for it."""
    if request.launcher != launcher.describe():
        raise ValueError(f"request says launcher {request.launcher}, started with {launcher.describe()}")
    with tempfile.TemporaryDirectory(prefix="dlbench-", dir=launcher.request_folder(request)) as tmp:
        return launcher.start(request.write(Path(tmp) / "request.json"), request)
