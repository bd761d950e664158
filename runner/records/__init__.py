"""Run records: one versioned JSON file per run, validated on write and on read.

    python -m runner run --out results/        # writes them
    python -m runner compare results/          # reads them

Files are written atomically under a unique name and never overwritten. Older schema versions are
checked against their own schema, then upgraded; a record from a newer dlbench is refused with a
clear reason. read() turns anything that is not a good record into one RecordError line: bytes that
are not UTF-8 JSON, NaN / Infinity / numbers beyond a double, nesting too deep to parse, lone
surrogates, non-objects, a schema violation, a spec that does not hash to its spec_hash.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from functools import lru_cache
from importlib import resources
from pathlib import Path

from runner import atomic
from runner.errors import RecordError

SCHEMA_VERSION = 6
# pruned: a tuning trial the pruner stopped early (runner.experiments.tune); its epochs are comparable,
# its run is not complete.
STATUSES = ("ok", "failed", "interrupted", "diverged", "unavailable", "below_target", "pruned")
COMPLETED = ("ok", "below_target")  # every epoch ran: timings are comparable

# What made a record: the training workload, or one of the timed operation studies (runner.experiments).
KINDS = ("train", "ensemble", "per_sample_grads")

# The record's `experiment` block (schema v5, additionalProperties false): a request's experiment dict
# may carry more for the child (a tuning trial's pruning channel, runner.jobs.trial); only these
# keys reach the record.
EXPERIMENT_KEYS = ("kind", "id", "point", "index", "size", "state")
# A tuning trial's state as Optuna names it, from its record's status: every epoch ran -> complete.
TRIAL_STATES = {"ok": "complete", "below_target": "complete", "pruned": "pruned"}


def trial_state(status: str) -> str:
    """complete | pruned | fail: what the tuner tells Optuna about a trial that ended with `status`."""
    return TRIAL_STATES.get(status, "fail")

PARITY_STATUSES = ("pass", "fail", "error", "unavailable")


def _v1_to_v2(record: dict) -> dict:
    """v2 added the parity gate's result; a v1 run was never checked."""
    return {**record, "schema_version": 2, "parity": None}


NOT_RECORDED = "not recorded (schema v2 record)"


def _v2_to_v3(record: dict) -> dict:
    """v3 deepened the probe and added framework.build, resources, energy and the repeat policy.
    What a v2 run did not record stays null, with the reason where the schema keeps reasons."""
    hw, env = record["hardware"], record["environment"]
    cpu = {"brand": hw.get("cpu"), "vendor": None, "arch": None, "physical_cores": hw.get("cores"),
           "logical_cores": hw.get("logical_cores"), "usable_cores": None, "freq_mhz": None, "flags": None}
    errors = dict(hw.get("errors") or {})
    # v2 wrote [] both for "NVML read no GPU" and "NVML unreadable"; its error tells them apart.
    gpus = None if "gpus" in errors else hw.get("gpus") or []
    errors.setdefault("cpu.flags", NOT_RECORDED)
    environment = {"hostname": None, "os": None, "container": None, "notebook": None, "scheduler": None,
                   "cloud": None, "apple_chip": None, "load_avg_start": env.get("load_avg_start"),
                   "load_avg_end": env.get("load_avg_end"), "thread_env": env.get("thread_env") or {},
                   "errors": {"environment": NOT_RECORDED}}
    of = record["repeat"]["of"]
    return {**record, "schema_version": 3,
            "repeat": {**record["repeat"], "policy": "fixed", "max": of, "cv_threshold": None},
            "framework": {"build": None, **record["framework"]},
            "hardware": {"cpu": cpu, "memory_bytes": hw.get("memory_bytes"), "gpus": gpus, "errors": errors},
            "environment": environment, "resources": None,
            "energy": {"joules": None, "method": "none", "scope": NOT_RECORDED, "window_s": None, "parts": [],
                       "errors": {"energy": NOT_RECORDED}}}


V3_PARITY_CHECKS = ("loss_rel_diff", "logits_max_diff", "grad_rel_diff", "weights_rel_diff", "trajectory_max_diff")


def _v3_parity(parity: dict | None) -> dict | None:
    """A v3 parity block (five flat distances, tolerances apart) in v4's shape: each check with its
    value and limit. The v3 gate checked step 1 and the trajectory; it measured no float32 envelope."""
    if parity is None:
        return None
    limits = parity.get("tolerances") or {}
    return {"status": parity["status"], "reference": parity["reference"], "steps": parity["steps"],
            "checked_steps": [1], "checks": {k: {"value": parity.get(k), "limit": limits.get(k)}
                                             for k in V3_PARITY_CHECKS},
            "trajectory_envelope": None, "replicas": 0, "failed": parity["failed"], "error": parity["error"],
            "seconds": parity["seconds"]}


def _v3_to_v4(record: dict) -> dict:
    """v4 added the launcher and the per-run log file; every v3 run was a worker subprocess
    (the only launcher then) that logged to the terminal. v4's parity block lists its checks."""
    return {**record, "schema_version": 4, "launcher": {"name": "process", "settings": {}}, "log_file": None,
            "parity": _v3_parity(record.get("parity")), "parallel": _single(record)}


def _single(record: dict) -> dict:
    """A v3 run ran in one process on one device (v4 added data-parallel runs and their `parallel`)."""
    batch = record["spec"]["batch_size"]
    return {"world_size": 1, "processes": 1, "devices": 1, "strategy": "none", "comm_backend": None,
            "global_batch": batch, "per_rank_batch": batch, "timing": "one process"}


def _v4_to_v5(record: dict) -> dict:
    """v5 added experiments: every v4 record is a plain training run (no sweep, no trial, no study)
    whose data sat on the device (no loader, so no per-epoch loader wait)."""
    return {**record, "schema_version": 5, "kind": "train", "experiment": None, "study": None,
            "timing": {**record["timing"], "epoch_data_s": None}}


def _v5_to_v6(record: dict) -> dict:
    """v6 added host_noise and efficiency, and the other processes' CPU share and the sampled load to
    resources.host. A v5 run sampled the system's and its own CPU % at the same instants, so the mean
    share of the others is the difference of the means (linear); their maximum and the sampled load
    were not kept. Both new blocks are then judged from the record, as for a new one."""
    from runner.measure import noise
    from runner.records import efficiency

    record = {**record, "schema_version": 6}
    if record.get("resources") is not None:
        host = dict(record["resources"]["host"])
        system, own = host.get("system_cpu_percent_mean"), host.get("process_cpu_percent_mean")
        cores = record["hardware"]["cpu"].get("logical_cores")
        other = max(0.0, system - own / cores) if None not in (system, own, cores) and cores > 0 else None
        host.update(other_cpu_percent_mean=other, other_cpu_percent_max=None, load_avg_mean=None, load_avg_max=None)
        record["resources"] = {**record["resources"], "host": host}
    record["host_noise"] = noise.judge(record)
    record["efficiency"] = efficiency.block(record)
    return record


# v(N) -> v(N+1) converters; read() applies them in turn.
UPGRADES: dict[int, callable] = {1: _v1_to_v2, 2: _v2_to_v3, 3: _v3_to_v4, 4: _v4_to_v5, 5: _v5_to_v6}


MAX_BYTES = 256 << 20  # a record is kilobytes (samples go to a side file); a larger file is not one


@lru_cache(maxsize=None)
def _validator(version: int = SCHEMA_VERSION):
    """The compiled validator of schema `version`, None if dlbench has no schema file for it.

    jsonschema-rs (Rust), not the pure-Python jsonschema: the same Draft 2020-12 semantics, about 100x
    faster, which is most of `compare`'s time over thousands of records. The schemas themselves are
    checked against the metaschema by the tests."""
    import jsonschema_rs  # imported on first use: keeps `--help` fast

    path = resources.files("runner.records").joinpath(f"schemas/record.v{version}.json")
    if not path.is_file():
        return None
    return jsonschema_rs.Draft202012Validator(json.loads(path.read_text()))


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _as_json(record: dict) -> dict:
    """`record` as JSON would read it back: plain dict, list, str, int, float."""
    try:
        return json.loads(json.dumps(record, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise RecordError(f"not JSON: {_one_line(str(e))}") from None


def _check_schema(record: dict, version: int = SCHEMA_VERSION, plain: bool = False) -> None:
    validator = _validator(version)
    try:
        if validator is None or validator.is_valid(record):
            return
    except UnicodeEncodeError:  # jsonschema-rs takes only valid Unicode; read() refuses it earlier
        raise RecordError("invalid Unicode (a lone surrogate)") from None
    except ValueError:  # jsonschema-rs takes only plain JSON types; torch.__version__ is a str subclass
        if plain:
            raise
        return _check_schema(_as_json(record), version, plain=True)
    # The first error in path order: a missing key (at the top) before a bad value deep inside.
    error = min(validator.iter_errors(record), key=lambda e: tuple(map(str, e.instance_path)))
    where = "/".join(str(p) for p in error.instance_path) or "(top)"
    raise RecordError(f"record does not match schema v{version} at {where}: {_one_line(error.message)}")


def validate(record: dict) -> None:
    """Raise RecordError with the first schema violation, or if the spec does not hash to spec_hash
    (an edited spec would otherwise be merged into another workload's row)."""
    from runner.workload.spec import hash_of

    _check_schema(record)
    actual = hash_of(record["spec"])
    if actual != record["spec_hash"]:
        raise RecordError(f"spec_hash {record['spec_hash'][:12]}… does not match its spec (which hashes to"
                          f" {actual[:12]}…): the spec was edited after the run")


def upgrade(record: dict) -> dict:
    """Bring a record of an older schema version up to SCHEMA_VERSION; each step first checks the
    record against its own version's schema, so a converter never meets a shape it does not know."""
    version = record.get("schema_version")
    if type(version) is not int:  # noqa: E721 - bool is an int to isinstance, and `true` is no version
        raise RecordError("not a dlbench record (no integer schema_version)")
    if version > SCHEMA_VERSION:
        raise RecordError(f"schema version {version} is newer than this dlbench reads ({SCHEMA_VERSION}); upgrade dlbench")
    while version < SCHEMA_VERSION:
        if version not in UPGRADES:
            raise RecordError(f"no upgrade from schema version {version}")
        _check_schema(record, version)
        record = UPGRADES[version](record)
        version = record["schema_version"]
    return record


def filename(record: dict) -> str:
    stamp = record["created_utc"].replace("-", "").replace(":", "")
    device = record["device"]["kind"] or record["device"]["requested"]
    return f"{stamp}-{record['framework']['name']}-{device}-{record['run_id'][:12]}.json"


def write(record: dict, out_dir: Path) -> Path:
    """Validate and write `record` into `out_dir`; never replaces an existing file."""
    data = json.dumps(record, indent=1, allow_nan=False) + "\n"
    validate(json.loads(data))  # what goes on disk is what was checked
    return atomic.write_bytes(Path(out_dir) / filename(record), data.encode(), replace=False)


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a finite number (JSON has none)")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text[:30]} is not a finite number (beyond a double)")
    return value


def _bounded_int(text: str) -> int:
    value = int(text)
    if len(text) > 300:  # only then can it exceed a double, which every consumer of a record uses
        try:
            float(value)
        except OverflowError:
            raise ValueError(f"{text[:30]}… ({len(text)} digits) is not a finite number (beyond a double)") from None
    return value


# A JSON escape of a UTF-16 surrogate: only then can the parsed text hold a lone one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def parse(data: bytes) -> dict:
    """The record in `data` (a file's bytes), upgraded and validated; RecordError if it is none."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RecordError(f"not UTF-8 text (byte {e.start})") from None
    try:
        # The hooks cost ~20 % of parsing (measured: a regex prefilter to skip them cost more).
        record = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_bounded_int)
    except RecursionError:
        raise RecordError("unreadable JSON (nested too deeply)") from None
    except ValueError as e:  # JSONDecodeError, the hooks above, Python's limit on digits of an int
        raise RecordError(f"unreadable JSON ({_one_line(str(e))})") from None
    if not isinstance(record, dict):
        raise RecordError("not a dlbench record (not a JSON object)")
    if _SURROGATE_ESCAPE.search(text):
        try:
            json.dumps(record, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise RecordError("invalid Unicode (a lone surrogate escape): it cannot be printed") from None
    record = upgrade(record)
    validate(record)
    return record


def read(path: Path) -> dict:
    """Load, upgrade and validate one record; RecordError for anything that is not a good record."""
    try:
        # O_NONBLOCK: a FIFO named *.json opens at once (and is refused below) instead of hanging.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise RecordError("not a regular file")
            if info.st_size > MAX_BYTES:
                raise RecordError(f"{info.st_size:,} bytes: too large for a record (at most {MAX_BYTES:,})")
            data = f.read()
    except OSError as e:
        raise RecordError(f"cannot read ({e.strerror or e})") from None
    return parse(data)
