"""Run records: one versioned JSON file per run, validated on write and on read.

    python -m runner run --out results/        # writes them
    python -m runner compare results/          # reads them

Files are written atomically under a unique name and never overwritten. Older schema versions are
upgraded on read; a record from a newer dlbench is refused with a clear reason.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path

from runner import atomic
from runner.errors import RecordError

SCHEMA_VERSION = 4
STATUSES = ("ok", "failed", "interrupted", "diverged", "unavailable", "below_target")
COMPLETED = ("ok", "below_target")  # every epoch ran: timings are comparable

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


def _v3_to_v4(record: dict) -> dict:
    """v4 added the launcher and the per-run log file; every v3 run was a worker subprocess
    (the only launcher then) that logged to the terminal."""
    return {**record, "schema_version": 4, "launcher": {"name": "process", "settings": {}}, "log_file": None,
            "parallel": _single(record)}


def _single(record: dict) -> dict:
    """A v3 run ran in one process on one device (v4 added data-parallel runs and their `parallel`)."""
    batch = record["spec"]["batch_size"]
    return {"world_size": 1, "processes": 1, "devices": 1, "strategy": "none", "comm_backend": None,
            "global_batch": batch, "per_rank_batch": batch, "timing": "one process"}


# v(N) -> v(N+1) converters; read() applies them in turn.
UPGRADES: dict[int, callable] = {1: _v1_to_v2, 2: _v2_to_v3, 3: _v3_to_v4}


@lru_cache(maxsize=None)
def _validator():
    import jsonschema  # imported on first use: keeps `--help` fast

    schema = json.loads(resources.files("runner.records").joinpath(f"schemas/record.v{SCHEMA_VERSION}.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def validate(record: dict) -> None:
    """Raise RecordError with the first schema violation, if any."""
    error = next(iter(sorted(_validator().iter_errors(record), key=lambda e: list(e.path))), None)
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top)"
        raise RecordError(f"record does not match schema v{SCHEMA_VERSION} at {where}: {error.message}")


def upgrade(record: dict) -> dict:
    """Bring a record of an older schema version up to SCHEMA_VERSION."""
    version = record.get("schema_version")
    if not isinstance(version, int):
        raise RecordError("not a dlbench record (no integer schema_version)")
    if version > SCHEMA_VERSION:
        raise RecordError(f"schema version {version} is newer than this dlbench reads ({SCHEMA_VERSION}); upgrade dlbench")
    while version < SCHEMA_VERSION:
        if version not in UPGRADES:
            raise RecordError(f"no upgrade from schema version {version}")
        record = UPGRADES[version](record)
        version = record["schema_version"]
    return record


def filename(record: dict) -> str:
    stamp = record["created_utc"].replace("-", "").replace(":", "")
    device = record["device"]["kind"] or record["device"]["requested"]
    return f"{stamp}-{record['framework']['name']}-{device}-{record['run_id'][:12]}.json"


def write(record: dict, out_dir: Path) -> Path:
    """Validate and write `record` into `out_dir`; never replaces an existing file."""
    validate(record)
    data = (json.dumps(record, indent=1, allow_nan=False) + "\n").encode()
    return atomic.write_bytes(Path(out_dir) / filename(record), data, replace=False)


def read(path: Path) -> dict:
    """Load, upgrade and validate one record; RecordError for anything that is not a good record."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise RecordError(f"unreadable JSON ({type(e).__name__}: {e})") from None
    if not isinstance(record, dict):
        raise RecordError("not a dlbench record (not a JSON object)")
    record = upgrade(record)
    validate(record)
    return record
