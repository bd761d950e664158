"""Building one run's record from its request: the skeleton before anything runs, the derived
numbers at the end, and the record for a child that died before it could write its own.

    python -m runner run ...    # the worker fills skeleton(req) step by step, then finish(...)
                                # the parent writes lost(req, exit) if the worker left nothing

Whatever happens to a run, exactly one record says so: the worker's, or, if the process was killed
outright (SIGKILL, the OOM killer, a segfault), the parent's from the same request.
"""

from __future__ import annotations

import json
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from runner import atomic, records
from runner.measure import noise
from runner.records import efficiency
from runner.backends.base import single_parallel
from runner.request import RunRequest
from runner.machine import probe
from runner.workload import harness


def skeleton(req: RunRequest) -> dict:
    """Every key of the record, filled with what is known before anything runs."""
    spec = req.spec
    hardware = req.hardware if req.hardware is not None else probe.hardware()
    environment = req.environment if req.environment is not None else probe.environment()
    return {
        "schema_version": records.SCHEMA_VERSION,
        "run_id": req.run_id,
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "status": "failed",
        "error": None,
        "kind": req.job if req.job in records.KINDS else "train",
        "experiment": experiment_block(req.experiment),
        "study": None,
        "command": req.command,
        "launcher": {"name": req.launcher.name, "settings": dict(req.launcher.settings)},
        "log_file": None,
        "repeat": {"index": req.repeat.index, "of": req.repeat.of, "policy": req.repeat.policy,
                   "max": req.repeat.max, "cv_threshold": req.repeat.cv_threshold},
        "spec": spec.to_dict(),
        "spec_hash": spec.hash,
        "framework": {"name": req.framework, "version": None, "build": None},
        "device": {"kind": None, "name": None, "requested": req.device},
        "parallel": planned_parallel(req),  # the backend's own once it is built
        "platform": dict(req.platform),
        "hardware": hardware,
        "software": probe.software(),
        "environment": {**environment, "load_avg_start": probe.load_avg(), "load_avg_end": None,
                        "thread_env": probe.thread_env()},
        "data": {"dataset": spec.dataset, "source": req.data_source, "origin": {}, "sha256": {},
                 "verified": False, "n_train": spec.n_train, "n_test": spec.n_test},
        "timing": {"wall_s": None, "data_load_s": None, "setup_s": None, "epoch_data_s": None},
        "metrics": {},
        "parity": None,
        "resources": None,
        "energy": {"joules": None, "method": "none", "scope": "nothing measured: training did not start",
                   "window_s": None, "parts": [], "errors": {}},
        "host_noise": None,
        "efficiency": None,
    }


def experiment_block(experiment: dict | None) -> dict | None:
    """The record's experiment block: the schema's keys of the request's (the rest is for the child)."""
    if experiment is None:
        return None
    return {key: experiment.get(key) for key in records.EXPERIMENT_KEYS}


def planned_parallel(req: RunRequest) -> dict:
    """The `parallel` block the request asks for, so that a run that dies before its backend is built
    (or a rank that takes the others down) is still recorded with its world size."""
    batch, settings = req.spec.batch_size, req.launcher.settings
    devices = str(req.options.get("devices", "1"))  # the JAX backend's option
    if req.launcher.name == "torchrun":
        n = int(settings.get("nproc_per_node", 1)) * int(settings.get("nnodes", 1))
        strategy = "torch DistributedDataParallel"
    elif devices.isdigit() and int(devices) > 1:
        n, strategy = int(devices), "jax.sharding: NamedSharding, batch split, weights replicated"
    else:
        return single_parallel(batch)
    return {"world_size": n, "processes": n if req.launcher.name == "torchrun" else 1, "devices": n,
            "strategy": strategy, "comm_backend": None, "global_batch": batch,
            "per_rank_batch": max(1, batch // n), "timing": "as requested: the run ended before its backend started"}


def finish(rec: dict, req: RunRequest, log: harness.TrainLog, wall_s: float | None,
           samples: list | None = None) -> Path:
    """Fill the derived timing and metrics from `log` and write the record (and, if given, the
    resource samples beside it: RECORD.samples.jsonl, one JSON object per line)."""
    out_dir = Path(req.out_dir)
    timing, rec["metrics"] = harness.timing_and_metrics(req.spec, log)
    if (rec["experiment"] or {}).get("kind") == "tune":  # the state the tuner tells Optuna, from the status
        rec["experiment"]["state"] = records.trial_state(rec["status"])
    rec["timing"].update(timing, wall_s=wall_s)
    rec["environment"]["load_avg_end"] = probe.load_avg()
    rec["host_noise"], rec["efficiency"] = noise.judge(rec), efficiency.block(rec)
    if (out_dir / req.log_name).exists():
        rec["log_file"] = req.log_name
    if samples and rec["resources"] is not None:
        name = records.filename(rec).removesuffix(".json") + ".samples.jsonl"
        lines = "".join(json.dumps(s, allow_nan=False) + "\n" for s in samples)
        try:
            rec["resources"]["samples_file"] = atomic.write_bytes(out_dir / name, lines.encode(), replace=False).name
        except OSError as e:  # the samples are extra; the record is what must survive
            print(f"dlbench: resource samples not written ({out_dir / name}: {e.strerror})", file=sys.stderr)
    try:
        return records.write(rec, out_dir)
    except OSError as e:
        return _keep_elsewhere(rec, out_dir, e)


def unsaved_dir() -> Path:
    """Where a record goes when its folder cannot take it (a full disk, a vanished mount)."""
    return Path(tempfile.gettempdir()) / "dlbench-unsaved"


def _keep_elsewhere(rec: dict, out_dir: Path, error: OSError) -> Path:
    """A measured run is never lost to a failed write: keep it in unsaved_dir(), else print it."""
    why = f"could not write the record to {out_dir} ({error.strerror or error})"
    try:
        path = records.write(rec, unsaved_dir())
    except OSError:
        print(f"dlbench: {why}, nor to {unsaved_dir()}; here it is:\n{json.dumps(rec, allow_nan=False)}",
              file=sys.stderr)
        raise
    print(f"dlbench: {why}; kept it at {path}: move it into {out_dir} once there is room", file=sys.stderr)
    return path


def lost(req: RunRequest, how: str, interrupted: bool) -> Path:
    """The record of a run whose process ended without writing one (`how` it ended)."""
    rec = skeleton(req)
    rec["status"] = "interrupted" if interrupted else "failed"
    rec["error"] = f"worker process {how} without writing a record"
    return finish(rec, req, harness.TrainLog(), wall_s=None)


def find(out_dir: Path, run_id: str) -> Path | None:
    """The record a run wrote, by its run id (record file names end in the id's first 12 digits),
    in its folder or, if that could not take it, in unsaved_dir()."""
    for folder in (Path(out_dir), unsaved_dir()):
        found = sorted(folder.glob(f"*-{run_id[:12]}.json"))
        if found:
            return found[0]
    return None
