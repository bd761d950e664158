"""`tune`: an Optuna search per framework; every trial is a `run` through the launcher, with its record.

    python -m runner tune --framework torch,jax --trials 20 [--timeout S] [--study NAME] [--out DIR]
                          [--pruner median|none|threshold:X] [spec flags: the base of every trial]
    python -m runner tune-table results/tune            # the result table again, from the records

One study per framework, named STUDY-FRAMEWORK, in OUT/tune-STUDY.db (SQLite): a search that
crashed or was stopped resumes when the same command runs again, up to --trials trials in total
(complete, pruned and failed ones count; a trial cut short by Ctrl-C, a crash or a signal does not).
A study keeps the base spec it was made with (a user attribute): the same study with other spec
flags is refused in one line, so one table never ranks two workloads' trials. One tune at a time
per study (study_lock): a second stops with one line, and only the holder of the lock marks the
trials a crash left running as failed (a live one is never taken for one). The sampler is TPE
seeded from the spec's seed, the same for every framework, so they draw the same first points; a
resumed study seeds it with seed + the trials it already holds, so it does not draw its first points
again (both modulo 2**32, numpy's range). The objective is the best test accuracy (maximized). The
pruner runs in the child, after each epoch (runner.jobs.trial: what each --pruner does, and why
median waits as it does); the parent tells Optuna the outcome: complete with its best accuracy,
pruned, or failed.

SEARCH_SPACE below is the one place the search space is written.
"""

from __future__ import annotations

import os
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


# The longest file name a study makes: SQLite's rollback journal beside the study's file.
LONGEST_FILE = "tune-{}.db-journal"


def _name_max(out: Path) -> int:
    """The longest file name (bytes) the file system under `out` takes (255 where it cannot say)."""
    folder = Path(out).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        longest = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return 255
    return longest if isinstance(longest, int) and longest > 0 else 255


def check_study_name(study: str, out: Path) -> None:
    """--study names the file OUT/tune-STUDY.db (and SQLite's OUT/tune-STUDY.db-journal): a plain name
    that fits a file name, checked before anything is made (SQLite would say only 'unable to open')."""
    if (not study or any(c in study for c in "/\\\0") or study.startswith(".")
            or not all(c.isprintable() for c in study)):
        raise UserError(f"--study {study!r}: a plain name: no /, \\, control characters or leading dot"
                        f" (it names the file OUT/tune-NAME.db)")
    room = _name_max(out) - len(LONGEST_FILE.format("").encode())
    size = len(os.fsencode(study))
    if size > room:
        raise UserError(f"--study: a name of {size} bytes is too long: at most {room} here (it names the file"
                        f" OUT/tune-NAME.db and SQLite's OUT/tune-NAME.db-journal)")


def study_lock(out: Path, study: str):
    """The lock one tune holds on its study's file while it runs (runner.experiments.lock): a second
    tune on the same study stops with one line, so a trial that is running is never taken for one a
    crash left behind. Yields True, or False where the file system has no locks."""
    from runner.experiments import lock

    return lock.held(Path(out) / f".tune-{study}.lock",
                     f"another tune is running study {study} in {storage_path(out, study)}{{holder}}: wait for it"
                     f" to end, or choose another --study",
                     unguarded="a second tune on this study would not be stopped; trials left running are left as"
                               " they are")


@dataclass(frozen=True)
class Search:
    study: str          # the base name; each framework's study is f"{study}-{framework}"
    trials: int         # in total, per framework, over every run of the command
    timeout_s: float | None   # per framework, this command: no new trial after it
    pruner: dict        # runner.jobs.trial.parse_pruner
    preset: str
    overrides: dict     # the base spec's fields


def _quiet_optuna():
    """Optuna's INFO lines (a new study, each finished trial) stay off the terminal: the progress
    lines here say the same, once."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


# The study's user attribute that keeps the base spec its trials were made from.
BASE_ATTR = "dlbench_base_spec"


def sampler_seed(seed: int, trials: int) -> int:
    """TPE's seed: the spec's seed plus the trials the study holds, reduced to numpy's range [0, 2**32)
    (a spec's seed may be up to 2**64 - 1); seeds below 2**32 - trials are unchanged."""
    return (seed + trials) % 2**32


def _value(v) -> str:
    return "none" if v is None else format(v, "g") if isinstance(v, float) else str(v)


def _check_base(study, base, path: Path, log) -> None:
    """A study's trials are all of one base spec: ranking trials of two workloads, or pruning one by
    the other's curves, would mean nothing. A study made before the spec was kept takes this one's."""
    import json

    mine = json.loads(json.dumps(base.to_dict()))
    kept = study.user_attrs.get(BASE_ATTR)
    if kept is None:
        if study.trials:
            log(f"[{study.study_name}] this study does not say which base spec its {len(study.trials)} trial(s)"
                f" ran: it keeps this command's (spec {base.hash[:12]}) from now on")
        study.set_user_attr(BASE_ATTR, {"hash": base.hash, "spec": mine})
        return
    if kept.get("hash") == base.hash:
        return
    theirs = kept.get("spec") or {}
    fields = [k for k in sorted(set(theirs) | set(mine)) if theirs.get(k) != mine.get(k)]
    raise UserError(f"study {study.study_name} in {path} holds trials of another base spec (spec"
                    f" {str(kept.get('hash'))[:12]}: {', '.join(f'{k}={_value(theirs.get(k))}' for k in fields)};"
                    f" this command: {', '.join(f'{k}={_value(mine.get(k))}' for k in fields)}): give the same"
                    f" spec flags to resume it, or another --study")


def open_study(search: Search, framework: str, out: Path, reap: bool = True,
               log=lambda m: print(m, file=sys.stderr)):
    """The framework's study, created or loaded, checked to hold this base spec's trials. With `reap`
    (the caller holds study_lock, so no other tune is running any of its trials), trials a crash left
    running are marked failed and cut short."""
    optuna = _quiet_optuna()
    from runner.jobs.trial import make_pruner

    base = make_spec(search.preset, **search.overrides)
    name = f"{search.study}-{framework}"
    path = storage_path(out, search.study)
    path.parent.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(study_name=name, storage=f"sqlite:///{path.resolve()}", direction="maximize",
                                load_if_exists=True, pruner=make_pruner(search.pruner))
    _check_base(study, base, path, log)
    study.sampler = optuna.samplers.TPESampler(seed=sampler_seed(base.seed, len(study.trials)))
    for stale in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)) if reap else ():
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


def run_study(search: Search, framework: str, study, work, out: Path, run_kwargs: dict,
              log=lambda m: print(m, file=sys.stderr)) -> tuple[list, bool]:
    """Trials for one framework in its study (open_study) until it holds search.trials of them (or the
    timeout); returns (outcomes, interrupted)."""
    from optuna.trial import TrialState

    from runner.launch import orchestrate

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
                      # the child's pruning channel (runner.jobs.trial); the record keeps only the above
                      "pruning": {"storage": storage_path(out, search.study).name, "study": name,
                                  "trial_id": trial._trial_id, "pruner": search.pruner}}
        mine, interrupted = orchestrate.run_all(
            spec, [framework], repeats=1, platform=work.platform, device=work.device, out_dir=out,
            options={framework: work.options.get(framework, {})}, launcher=work.launcher, experiment=experiment,
            **run_kwargs)
        outcomes += mine
        rec = records.read(mine[0].path)
        state, best = rec["experiment"]["state"], rec["metrics"].get("best_test_accuracy")
        if interrupted or rec["status"] == "interrupted":  # cut short: says nothing of its parameters
            trial.set_user_attr("interrupted", True)
            study.tell(trial, state=TrialState.FAIL)
            if interrupted:
                log(f"[{name}] interrupted in trial {trial.number}: the same command resumes the study")
                return outcomes, True
            # a signal from outside (a scheduler ending the job): stop here rather than ask again and again
            log(f"[{name}] trial {trial.number} was interrupted from outside ({rec.get('error')}): stopping"
                f" this study; the same command resumes it")
            return outcomes, False
        if state == "complete" and best is not None:
            study.tell(trial, best)
        else:
            study.tell(trial, state=TrialState.PRUNED if state == "pruned" else TrialState.FAIL)
        shown = "-" if best is None else f"{100 * best:.2f} %"
        log(f"[{name} trial {trial.number}] {rec['status']} ({state}): best test accuracy {shown},"
            f" {rec['metrics'].get('epochs_completed', 0)} epoch(s), {rec['timing']['wall_s'] or 0:.1f} s"
            f" -> {mine[0].path}")
    return outcomes, False
