"""The child side of every study: one framework, one process, one record of the study's kind.

    python -m runner ensemble ...           # job "ensemble": runner.studies.ensemble:run_job
    python -m runner per-sample-grads ...   # job "per_sample_grads": runner.studies.per_sample_grads:run_job
    python -m runner.launch.child REQUEST.json   # what the launcher starts (the same launchers as `run`)

The steps are the train job's (runner.launch.worker), with the study in place of training: load and
verify the data, create the framework's backend (it picks the device and says what it is; the study
builds its own functions on it), measure, write the record with runner.records.build, so the record
has everything a training record has (probe, software, environment, launcher, log file) and its
training blocks stay empty. Whatever happens the run leaves one record: ok (the checks may still
fail: they are in study.checks), unavailable (the framework, or this study on it, cannot run here),
interrupted (with the operations measured so far) or failed.
"""

from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path
from typing import Callable

from runner.errors import Interrupted, reason

EXIT_CODES = {"ok": 0, "failed": 1, "unavailable": 3, "interrupted": 130}  # the train job's codes


class StudyUnavailable(Exception):
    """The framework runs, but this study cannot run on it here (the message says why)."""


def run(req, started: float, measure: Callable) -> int:
    """The study job: `measure(req, backend, data, study, say)` fills `study` (the record's block:
    operations and checks, appended as they are measured); `say(text)` prints one progress line."""
    import signal

    from runner import backends
    from runner.backends.base import FrameworkUnavailable
    from runner import console
    from runner.records import build
    from runner.workload import harness

    rec = build.skeleton(req)
    study = {"name": req.job, "settings": dict(req.study or {}), "operations": [], "checks": []}
    rec["study"] = study
    label = [req.framework]
    say = lambda text: print(f"[{label[0]}] {req.job}: {text}", file=sys.stderr)  # noqa: E731
    try:
        data = _load_data(req, rec)
        backend = _backend(req, rec)
        label[0] = f"{req.framework}/{rec['device']['kind']}"
        measure(req, backend, data, study, say)
        rec["status"] = "ok"
    except (Interrupted, KeyboardInterrupt) as e:
        rec["status"] = "interrupted"
        rec["error"] = f"interrupted by {e or 'SIGINT'} after {len(study['operations'])} timed operation(s)"
    except FrameworkUnavailable as e:
        rec["status"], rec["error"] = "unavailable", f"{e} (install: {backends.install_hint(req.framework)})"
    except StudyUnavailable as e:
        rec["status"], rec["error"] = "unavailable", str(e)
    except Exception as e:
        console.log_only(traceback.format_exc())
        rec["status"], rec["error"] = "failed", reason(e)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    build.finish(rec, req, harness.TrainLog(), wall_s=time.time() - started)
    if rec["error"]:
        where = f" (details: {Path(req.out_dir) / rec['log_file']})" if rec["log_file"] else ""
        print(f"[{req.framework}] {rec['status']}: {rec['error']}{where}", file=sys.stderr)
    return EXIT_CODES[rec["status"]]


def _load_data(req, rec: dict):
    """The spec's dataset, checked against its pins again here (as the train job does)."""
    from runner.data import store

    t0 = time.perf_counter()
    data = store.load_for(req.spec, Path(req.data_dir))
    rec["timing"]["data_load_s"] = time.perf_counter() - t0
    rec["data"].update(origin=data.origin, sha256=data.sha256, verified=True)
    return data


def _backend(req, rec: dict):
    """The framework's backend, created but not set up: its device choice, precision settings
    (TF32 off, JAX's highest matmul precision) and its description for the record."""
    from runner import backends
    from runner.machine import buildinfo

    t0 = time.perf_counter()
    backend = backends.create(req.framework, req.spec, req.device, {})
    info = backend.info()
    rec["framework"], rec["device"] = info["framework"], {**info["device"], "requested": req.device}
    rec["device"]["name"] = rec["device"]["name"] or rec["hardware"]["cpu"].get("brand")
    rec["framework"]["build"] = buildinfo.collect(req.framework)
    rec["timing"]["setup_s"] = time.perf_counter() - t0
    return backend


def framework_ops(known: dict, framework: str, study: str):
    """The study's module for `framework` (imported now: it imports the framework)."""
    import importlib

    if framework not in known:
        raise StudyUnavailable(f"{study} is written for {', '.join(known)}, not {framework}")
    return importlib.import_module(known[framework])


def batches(req, data, count: int):
    """The first `count` batches of epoch 0's order (runner.workload.reference): (x (count, B, 28, 28)
    float32, y (count, B) int64), the same samples for every framework."""
    import numpy as np

    from runner.workload import reference

    order = reference.epoch_order(req.spec, 0)
    if len(order) < count:
        raise ValueError(f"{req.spec.dataset} has {len(order)} batches of {req.spec.batch_size}, {count} needed")
    idx = order[:count]
    return data.train_x[idx], data.train_y[idx].astype(np.int64)
