"""A tuning trial's child side: each epoch's test accuracy goes to Optuna, and the pruner may stop the run.

    python -m runner tune --framework torch --trials 20 [--pruner median|none|threshold:0.5]
        # every trial is a run; its worker (runner.jobs.train) calls Reporter after each epoch

The request's experiment dict carries the channel under "pruning" (runner.experiments.tune puts it
there; the record keeps only the schema's keys): the study's SQLite file relative to the run's
out_dir (so a container child finds it under its own mount of that folder), the study name, the
trial's id and the pruner's settings (Optuna keeps no pruner in its storage: both sides build the same
one from PRUNERS). The intermediate value at step e (0-based, as Optuna's examples count) is the test
accuracy after epoch e+1. After the last epoch the accuracy is reported but no pruning is asked:
nothing would be saved. A pruned run stops there and its record says status "pruned".

Without Optuna in the child's environment (an image built without the `tune` extra) the trial runs
to the end, unpruned, and says so on one line; the parent still tells Optuna the result.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

from runner.errors import UserError

# --pruner NAME[:ARG] -> what it does: the one place the pruners are described (tune --help, README).
# median is MedianPruner(n_startup_trials=3, n_warmup_steps=1), sized for small epoch counts: never in
# the first epoch (its accuracy says little about the end of a run), not before 3 trials completed (a
# median of fewer is noise), and never after the last epoch (nothing left to save). So a 2-epoch search
# is never pruned by it, a 3-epoch one after epoch 2 at the earliest, a 50-epoch one from epoch 2 on.
PRUNERS = {
    "median": "stop a trial below the median of the completed trials at the same epoch (from epoch 2,"
              " after 3 completed trials)",
    "threshold:X": "stop a trial whose test accuracy after an epoch is below X (0 < X <= 1)",
    "none": "never prune",
}
MEDIAN = {"n_startup_trials": 3, "n_warmup_steps": 1}


def parse_pruner(text: str) -> dict:
    """--pruner's text -> the pruner's settings (JSON: it travels in the request)."""
    name, colon, arg = text.strip().partition(":")
    if name in ("median", "none") and not colon:
        return {"kind": name, **(MEDIAN if name == "median" else {})}
    if name == "threshold" and colon:
        try:
            lower = float(arg)
        except ValueError:
            lower = float("nan")
        if 0 < lower <= 1:
            return {"kind": "threshold", "lower": lower}
        raise UserError(f"--pruner {text!r}: the threshold is a test accuracy in (0, 1], e.g. threshold:0.5")
    raise UserError(f"--pruner {text!r}: choose median, none or threshold:X (X a test accuracy in (0, 1])")


def make_pruner(settings: dict):
    """The Optuna pruner `settings` (from parse_pruner) describe."""
    import optuna

    if settings["kind"] == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=settings["n_startup_trials"],
                                           n_warmup_steps=settings["n_warmup_steps"])
    if settings["kind"] == "threshold":
        return optuna.pruners.ThresholdPruner(lower=settings["lower"])
    return optuna.pruners.NopPruner()


def describe(settings: dict) -> str:
    if settings["kind"] == "threshold":
        return f"threshold pruner (test accuracy < {settings['lower']:g})"
    return f"{settings['kind']} pruner"


class Pruned(Exception):
    """The pruner stopped this trial; the message says when and why."""


class Reporter:
    """on_epoch for a tuning trial: report the epoch's test accuracy, raise Pruned if the pruner says so."""

    def __init__(self, trial, epochs: int, settings: dict):
        self.trial, self.epochs, self.settings = trial, epochs, settings

    def __call__(self, epoch: int, log) -> None:
        accuracy = log.test_accuracy[-1]
        self.trial.report(accuracy, epoch)
        if epoch + 1 < self.epochs and self.trial.should_prune():
            raise Pruned(f"stopped by the {describe(self.settings)} after epoch {epoch + 1} of {self.epochs}"
                         f" (test accuracy {100 * accuracy:.2f} %)")


def reporter(req) -> Reporter | None:
    """The trial's Reporter if the request is a tuning trial with a pruning channel, else None."""
    channel = (req.experiment or {}).get("pruning")
    if channel is None:
        return None
    try:
        import optuna
    except ImportError:
        print(f"[{req.framework}] optuna is not installed in this environment: trial"
              f" {req.experiment.get('index')} runs unpruned (pip install 'dlbench[tune]')", file=sys.stderr)
        return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{(Path(req.out_dir) / channel['storage']).resolve()}"
    try:
        study = optuna.load_study(study_name=channel["study"], storage=storage, pruner=make_pruner(channel["pruner"]))
        trial = optuna.trial.Trial(study, channel["trial_id"])
    except Exception as e:  # the study out of reach (a folder the child does not see): train, unpruned
        from runner import console
        from runner.errors import reason

        console.log_only(traceback.format_exc())
        print(f"[{req.framework}] the study {channel['study']} is out of reach ({reason(e)}): trial"
              f" {req.experiment.get('index')} runs unpruned", file=sys.stderr)
        return None
    return Reporter(trial, req.spec.epochs, channel["pruner"])
