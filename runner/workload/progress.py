"""Progress for long runs: one line per epoch (loss, accuracies, times, ETA) on stderr.

    python -m runner run        # epoch 3/50  loss 0.0412  train 98.71%  test 98.93%  2.41s (+0.21s eval)  ETA 1m52s

Lines, not a redrawn bar, so Slurm logs, notebooks and CI logs read the same as a terminal.
"""

from __future__ import annotations

import statistics
import sys

from runner.workload.spec import Spec


def _fmt(seconds: float) -> str:
    from tqdm import tqdm

    return tqdm.format_interval(seconds)


class EpochLines:
    def __init__(self, spec: Spec, label: str, stream=None):
        self.spec, self.label, self.stream = spec, label, stream or sys.stderr

    def __call__(self, epoch: int, log) -> None:
        spent = [t + (e or 0.0) for t, e in zip(log.epoch_train_s, log.eval_s)]
        # The first epoch carries compilation: estimate the rest from the steady ones when we can.
        per_epoch = statistics.median(spent[1:]) if len(spent) > 1 else spent[0]
        eta = per_epoch * (self.spec.epochs - epoch - 1)
        width = len(str(self.spec.epochs))
        print(f"[{self.label}] epoch {epoch + 1:>{width}}/{self.spec.epochs}"
              f"  loss {log.train_loss[-1]:.4f}"
              f"  train {100 * log.train_accuracy[-1]:.2f}%"
              f"  test {100 * log.test_accuracy[-1]:.2f}%"
              f"  {log.epoch_train_s[-1]:.2f}s (+{log.eval_s[-1]:.2f}s eval)"
              f"  ETA {_fmt(eta)}", file=self.stream, flush=True)
