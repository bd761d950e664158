"""The train job: one timed run in a process of its own, started by runner.launch.child.

    python -m runner run ...   # one worker per framework and repeat: frameworks never share thread
                               # pools or device memory, and a crash in one never takes down the rest

Five steps, each owned by the module whose job it is, in the frame every child job shares
(runner.jobs.frame): prepare the data (runner.data.store), build the backend (runner.backends),
train under the meters (runner.workload.harness inside runner.measure.meters), check parity (runner.parity.gate), write the record (runner.records.build).
Whatever happens, the run leaves one record: ok, below_target, diverged, failed, unavailable,
interrupted or pruned (a tuning trial its pruner stopped: runner.jobs.trial, called after each
epoch), with the epochs it finished, and the process exits with a status-specific code.
"""

from __future__ import annotations

import time
from pathlib import Path

from runner.jobs import frame
from runner.request import RunRequest


def main(req: RunRequest, started: float) -> int:
    rec, path = run(req, started)
    return frame.finish(req, rec, details=rec["status"] != "pruned")  # a pruned trial's reason is the whole story


def run(req: RunRequest, started: float) -> tuple[dict, Path]:
    from runner.workload import ranks
    from runner.records import build
    from runner.jobs.trial import Pruned
    from runner.workload import harness

    rec = build.skeleton(req)
    log = harness.TrainLog()
    samples = None

    def body():
        nonlocal samples
        data = frame.load_data(req, rec)
        backend = build_backend(req, rec, data)
        samples = train_under_meters(req, rec, backend, log)
        target, best = req.spec.target_accuracy, max(log.test_accuracy, default=0.0)
        rec["status"] = "below_target" if target is not None and best < target else "ok"
        if req.parity_steps:
            rec["parity"] = check_parity(req, data)

    def interrupted(why: str):
        if rec["status"] in ("ok", "below_target"):  # every epoch ran: keep the run, the check is what stopped
            from runner.parity import gate

            rec["parity"] = gate.error_result(req.parity_steps, f"interrupted by {why} during the check")
        else:
            rec["status"] = "interrupted"
            rec["error"] = f"interrupted by {why} after {log.epochs_completed} epoch(s)"

    # pruned: a tuning trial the pruner stopped, the epochs it ran are in the record
    frame.guarded(req, rec, body, interrupted, own=((Pruned, "pruned"), (harness.Diverged, "diverged")))
    if not ranks.is_writer():  # data-parallel: rank 0 writes the run's one record
        return rec, None
    return rec, build.finish(rec, req, log, wall_s=time.time() - started,
                             samples=samples if req.sampling.write_samples else None)


def build_backend(req: RunRequest, rec: dict, data):
    """The framework's backend, set up with the reference weights and the data on its device."""
    from runner.workload import reference

    t0 = time.perf_counter()
    backend = frame.create_backend(req, rec, req.options)
    backend.setup(reference.initial_params(req.spec), data.train_x, data.train_y, data.test_x, data.test_y)
    backend.synchronize()
    rec["timing"]["setup_s"] = time.perf_counter() - t0
    return backend


def train_under_meters(req: RunRequest, rec: dict, backend, log) -> list[dict]:
    """harness.train inside the sampler and energy meter; returns the resource samples."""
    from runner.jobs import trial
    from runner.workload import ranks
    from runner.measure.meters import Meters
    from runner.workload import harness
    from runner.workload.progress import EpochLines

    meters = Meters(req.sampling.interval_s)
    lines = EpochLines(req.spec, _label(req, rec)) if ranks.is_writer() else None  # rank 0 speaks
    try:
        with meters:
            harness.train(req.spec, backend, log, on_epoch=_on_epoch(lines, trial.reporter(req)))
    finally:
        if meters.energy is not None:  # the meters ran (and stopped): a partial run reports too
            rec["energy"], rec["resources"] = meters.energy, meters.resources(backend)
    return meters.samples


def _on_epoch(*hooks):
    """One on_epoch from several (progress lines first, then a tuning trial's report: a pruned run
    still shows the epoch that got it pruned)."""
    hooks = [h for h in hooks if h is not None]

    def on_epoch(epoch, log):
        for hook in hooks:
            hook(epoch, log)
    return on_epoch if hooks else None


def check_parity(req: RunRequest, data) -> dict:
    """The parity gate on a fresh model, after training (so it cannot warm caches the timed first
    epoch should pay for). Its failure marks the record; it never fails the run."""
    from runner import backends
    from runner.parity import gate

    return gate.after_training(lambda: backends.create(req.framework, req.spec, req.device, req.options),
                               req.spec, data, req.parity_steps)


def _label(req: RunRequest, rec: dict) -> str:
    label = f"{req.framework}/{rec['device']['kind']}"
    if rec["parallel"]["devices"] > 1:
        label += f" x{rec['parallel']['devices']}"
    if req.repeat.policy == "until-stable":  # how many runs is not known yet
        return label + f" #{req.repeat.index + 1} (until stable, {req.repeat.of}-{req.repeat.max})"
    if req.repeat.of > 1:
        return label + f" #{req.repeat.index + 1}/{req.repeat.of}"
    return label
