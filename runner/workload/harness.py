"""The training loop every backend runs under: batch order, clocks, divergence, per-epoch eval.

    python -m runner run      # each worker process calls harness.train once

Timing is done here, once, for all frameworks: the device is synchronized before every clock read,
evaluation is timed apart from training, and the harness' own work (drawing the permutation) stays
outside the timed region.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field

from runner.workload import reference
from runner.workload.spec import Spec


class Diverged(Exception):
    """Training loss became NaN or infinite."""


@dataclass
class TrainLog:
    """Filled epoch by epoch, so an interrupted or diverged run still reports what it finished."""

    epoch_train_s: list[float] = field(default_factory=list)
    eval_s: list[float | None] = field(default_factory=list)
    train_loss: list[float | None] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    test_accuracy: list[float | None] = field(default_factory=list)
    train_fn_s: float | None = None   # the whole loop: training, evaluation and the harness between
    epoch_data_s: list[float] = field(default_factory=list)  # loader mode only: waiting for batches

    @property
    def epochs_completed(self) -> int:
        return sum(acc is not None for acc in self.test_accuracy)


def train(spec: Spec, backend, log: TrainLog, on_epoch=None, clock=time.perf_counter) -> TrainLog:
    """Run spec.epochs epochs on `backend`, appending to `log`; raise Diverged on a non-finite loss."""
    start = clock()
    try:
        for epoch in range(spec.epochs):
            order = reference.epoch_order(spec, epoch)
            backend.synchronize()
            t0 = clock()
            stats = backend.train_epoch(order)
            backend.synchronize()
            log.epoch_train_s.append(clock() - t0)
            if stats.data_s is not None:  # a loader's wait, measured inside the epoch by the backend
                log.epoch_data_s.append(stats.data_s)
            loss = float(stats.loss_sum) / stats.steps
            log.train_accuracy.append(int(stats.correct) / (stats.steps * spec.batch_size))
            if not math.isfinite(loss):
                log.train_loss.append(None)  # JSON has no NaN; null marks the diverged epoch
                log.eval_s.append(None)
                log.test_accuracy.append(None)
                raise Diverged(f"training loss is {loss} in epoch {epoch + 1}")
            log.train_loss.append(loss)
            t0 = clock()
            correct = backend.evaluate()
            backend.synchronize()
            log.test_accuracy.append(int(correct) / spec.n_test)
            log.eval_s.append(clock() - t0)
            if on_epoch:
                on_epoch(epoch, log)
    finally:
        log.train_fn_s = clock() - start
    return log


def timing_and_metrics(spec: Spec, log: TrainLog) -> tuple[dict, dict]:
    """Derived (timing, metrics) for the record, from the per-epoch lists alone."""
    done = log.epochs_completed
    epochs = log.epoch_train_s[:done]
    steady = epochs[1:]
    steady_s = statistics.median(steady) if steady else None
    accs = [a for a in log.test_accuracy if a is not None]
    losses = [x for x in log.train_loss if x is not None]
    # Time to target counts training time only (evaluation is timed apart), up to the end of the
    # first epoch whose test accuracy reaches the spec's target.
    time_to_target = target_epoch = None
    if spec.target_accuracy is not None:
        elapsed = 0.0
        for i, (t, acc) in enumerate(zip(epochs, accs)):
            elapsed += t
            if acc >= spec.target_accuracy:
                time_to_target, target_epoch = elapsed, i + 1
                break
    samples = spec.steps_per_epoch * spec.batch_size
    per_epoch = steady_s if steady_s is not None else (epochs[0] if epochs else None)
    timing = {
        "first_epoch_s": epochs[0] if epochs else None,
        "steady_epoch_s": steady_s,
        # The first epoch's surplus over a steady one: compilation, tracing, allocator and cache
        # warm-up. Measured the same way in every framework; unknown with a single epoch.
        "compile_s": max(0.0, epochs[0] - steady_s) if steady_s is not None else None,
        "epoch_train_s": list(log.epoch_train_s),
        "eval_s": list(log.eval_s),
        "total_train_s": sum(log.epoch_train_s),
        "train_fn_s": log.train_fn_s,
        "epoch_data_s": list(log.epoch_data_s) if log.epoch_data_s else None,
    }
    metrics = {
        "epochs_completed": done,
        "train_loss": list(log.train_loss),
        "train_accuracy": list(log.train_accuracy),
        "test_accuracy": list(log.test_accuracy),
        "best_test_accuracy": max(accs) if accs else None,
        "final_test_accuracy": accs[-1] if accs else None,
        "best_train_accuracy": max(log.train_accuracy) if log.train_accuracy else None,
        "mean_train_loss": statistics.fmean(losses) if losses else None,
        "time_to_target_s": time_to_target,
        "target_epoch": target_epoch,
        "images_per_s": samples / per_epoch if per_epoch else None,
    }
    return timing, metrics
