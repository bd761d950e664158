"""The child side of every micro-benchmark: one framework, one process, one record of its kind.

    python -m runner ensemble ...           # job "ensemble": runner.micro.ensemble:run_job
    python -m runner per-sample-grads ...   # job "per_sample_grads": runner.micro.per_sample_grads:run_job
    python -m runner.launch.child REQUEST.json   # what the launcher starts (the same launchers as `run`)

The steps are the train job's (runner.jobs.train), in the same frame (runner.jobs.frame), with the
micro-benchmark in place of training: load and verify the data, create the framework's backend (it
picks the device and says what it is; the micro-benchmark builds its own functions on it), measure,
write the record with runner.records.build, so the record has everything a training record has
(probe, software, environment, launcher, log file) and its training blocks stay empty. Whatever happens the run leaves one record: ok (the checks may still
fail: they are in study.checks), unavailable (the framework, or this study on it, cannot run here),
interrupted (with the operations measured so far) or failed.
"""

from __future__ import annotations

import sys
import time
from typing import Callable

from runner.jobs import frame


class StudyUnavailable(Exception):
    """The framework runs, but this study cannot run on it here (the message says why)."""


def run(req, started: float, measure: Callable) -> int:
    """The study job: `measure(req, backend, data, study, say)` fills `study` (the record's block:
    operations and checks, appended as they are measured); `say(text)` prints one progress line."""
    from runner.records import build
    from runner.workload import harness

    rec = build.skeleton(req)
    study = {"name": req.job, "settings": dict(req.study or {}), "operations": [], "checks": []}
    rec["study"] = study
    label = [req.framework]
    say = lambda text: print(f"[{label[0]}] {req.job}: {text}", file=sys.stderr)  # noqa: E731

    def body():
        data = frame.load_data(req, rec)
        t0 = time.perf_counter()
        # created, not set up: the study builds its own functions on the backend's device
        backend = frame.create_backend(req, rec, {})
        rec["timing"]["setup_s"] = time.perf_counter() - t0
        label[0] = f"{req.framework}/{rec['device']['kind']}"
        measure(req, backend, data, study, say)
        rec["status"] = "ok"

    def interrupted(why: str):
        rec["status"] = "interrupted"
        rec["error"] = f"interrupted by {why} after {len(study['operations'])} timed operation(s)"

    frame.guarded(req, rec, body, interrupted, own=((StudyUnavailable, "unavailable"),))
    build.finish(rec, req, harness.TrainLog(), wall_s=time.time() - started)
    return frame.finish(req, rec)


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
