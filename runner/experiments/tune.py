"""`tune`: an Optuna search per framework; every trial is a `run` through the launcher, with its record.

    python -m runner tune --framework torch,jax --trials 20 [--timeout S] [--study NAME] [--out DIR]
                          [--pruner median|none|threshold:X] [spec flags: the base of every trial]
    python -m runner tune-table results/tune            # the result table again, from the records

One study per framework, named STUDY-FRAMEWORK, in OUT/tune-STUDY.db (SQLite): a search that
crashed or was stopped resumes when the same command runs again, up to --trials trials in total
(complete, pruned and failed ones count; a trial cut short by Ctrl-C or a crash does not). The sampler
is TPE seeded from the spec's seed, the same for every framework, so they draw the same first points;
a resumed study seeds it with seed + the trials it already holds, so it does not draw its first points
again. The objective is the best test accuracy (maximized). The pruner runs in the child, after each
epoch (runner.launch.trial: what each --pruner does, and why median waits as it does); the parent tells
Optuna the outcome: complete with its best accuracy, pruned, or failed.

SEARCH_SPACE below is the one place the search space is written.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from runner import records
from runner.errors import SpecError, UserError
from runner.workload.spec import make_spec

# name -> (kind, arguments): what every trial samples; everything else is the base spec's.
SEARCH_SPACE = {
    "learning_rate": ("log-uniform", 1e-4, 1e-2),
    "batch_size": ("categorical", (32, 64, 128, 256)),
    "beta1": ("uniform", 0.8, 0.95),
    "beta2": ("uniform", 0.99, 0.9999),
}


def space_text() -> str:
    """"learning_rate log-uniform [0.0001, 0.01], batch_size in {32, 64, 128, 256}, ...": for --help."""
    parts = []
    for name, (kind, *args) in SEARCH_SPACE.items():
        parts.append(f"{name} in {{{', '.join(map(str, args[0]))}}}" if kind == "categorical"
                     else f"{name} {kind} [{args[0]:g}, {args[1]:g}]")
    return ", ".join(parts)


def distributions() -> dict:
    import optuna.distributions as d

    out = {}
    for name, (kind, *args) in SEARCH_SPACE.items():
        out[name] = (d.CategoricalDistribution(args[0]) if kind == "categorical"
                     else d.FloatDistribution(args[0], args[1], log=kind == "log-uniform"))
    return out


def check_base(preset: str, overrides: dict) -> None:
    """The searched fields are the trial's, not the base's; every batch size searched must fit the data."""
    searched = sorted(set(overrides) & set(SEARCH_SPACE))
    if searched:
        raise UserError(f"{', '.join(searched)}: searched by tune ({space_text()}); leave it out of the base spec")
    for batch in SEARCH_SPACE["batch_size"][1]:
        try:
            make_spec(preset, **overrides, batch_size=batch)
        except SpecError as e:
            raise UserError(f"tune searches batch sizes up to {max(SEARCH_SPACE['batch_size'][1])}: {e}") from None


def storage_path(out: Path, study: str) -> Path:
    return Path(out) / f"tune-{study}.db"


@dataclass(frozen=True)
class Search:
    study: str          # the base name; each framework's study is f"{study}-{framework}"
    trials: int         # in total, per framework, over every run of the command
    timeout_s: float | None   # per framework, this command: no new trial after it
    pruner: dict        # runner.launch.trial.parse_pruner
    preset: str
    overrides: dict     # the base spec's fields


def _quiet_optuna():
    """Optuna's INFO lines (a new study, each finished trial) stay off the terminal: the progress
    lines here say the same, once."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def open_study(search: Search, framework: str, out: Path, seed: int):
    """The framework's study, created or loaded; trials a crash left running are marked failed."""
    optuna = _quiet_optuna()
    from runner.launch.trial import make_pruner

    name = f"{search.study}-{framework}"
    storage = f"sqlite:///{storage_path(out, search.study).resolve()}"
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True,
                                pruner=make_pruner(search.pruner))
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials))
    for stale in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study._storage.set_trial_user_attr(stale._trial_id, "interrupted", True)  # no public setter by id
        study.tell(stale.number, state=optuna.trial.TrialState.FAIL)
    return study


def counted(study) -> int:
    """Trials that count toward --trials: finished, not cut short by the user or a crash."""
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
    return sum(not t.user_attrs.get("interrupted") for t in done)


def _label(params: dict) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def run_study(search: Search, framework: str, work, out: Path, run_kwargs: dict,
              log=lambda m: print(m, file=sys.stderr)) -> tuple[list, bool]:
    """Trials for one framework until the study holds search.trials of them (or the timeout);
    returns (outcomes, interrupted)."""
    from optuna.trial import TrialState

    from runner.launch import orchestrate

    base = make_spec(search.preset, **search.overrides)
    study = open_study(search, framework, out, base.seed)
    name, have = study.study_name, counted(study)
    if have >= search.trials:
        log(f"[{name}] {have} of {search.trials} trials already done in {storage_path(out, search.study)}:"
            f" nothing to run")
        return [], False
    if have:
        log(f"[{name}] resuming: {have} of {search.trials} trials already done")
    start, outcomes = time.monotonic(), []
    while counted(study) < search.trials:
        if search.timeout_s is not None and time.monotonic() - start >= search.timeout_s:
            log(f"[{name}] --timeout {search.timeout_s:g} s reached after {counted(study)} of {search.trials} trials")
            break
        trial = study.ask(distributions())
        spec = make_spec(search.preset, **{**search.overrides, **trial.params})
        log(f"[{name} trial {trial.number}, {counted(study) + 1}/{search.trials}] {_label(trial.params)}")
        experiment = {"kind": "tune", "id": name, "point": dict(trial.params), "index": trial.number,
                      "size": search.trials, "state": None,
                      # the child's pruning channel (runner.launch.trial); the record keeps only the above
                      "pruning": {"storage": storage_path(out, search.study).name, "study": name,
                                  "trial_id": trial._trial_id, "pruner": search.pruner}}
        mine, interrupted = orchestrate.run_all(
            spec, [framework], repeats=1, platform=work.platform, device=work.device, out_dir=out,
            options={framework: work.options.get(framework, {})}, launcher=work.launcher, experiment=experiment,
            **run_kwargs)
        outcomes += mine
        rec = records.read(mine[0].path)
        state, best = rec["experiment"]["state"], rec["metrics"].get("best_test_accuracy")
        if interrupted:
            trial.set_user_attr("interrupted", True)
            study.tell(trial, state=TrialState.FAIL)
            log(f"[{name}] interrupted in trial {trial.number}: the same command resumes the study")
            return outcomes, True
        if state == "complete" and best is not None:
            study.tell(trial, best)
        else:
            study.tell(trial, state=TrialState.PRUNED if state == "pruned" else TrialState.FAIL)
        shown = "-" if best is None else f"{100 * best:.2f} %"
        log(f"[{name} trial {trial.number}] {rec['status']} ({state}): best test accuracy {shown},"
            f" {rec['metrics'].get('epochs_completed', 0)} epoch(s), {rec['timing']['wall_s'] or 0:.1f} s"
            f" -> {mine[0].path}")
    return outcomes, False
