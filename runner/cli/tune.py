"""`tune`: an Optuna search per framework, every trial a run with its record; then the result table.

    python -m runner tune --framework torch,jax --trials 20 --out results/tune
    python -m runner tune --framework torch --trials 30 --timeout 3600 --study lenet --epochs 10 --pruner median
    python -m runner tune --framework torch --trials 3 --preset smoke --dataset synthetic --pruner none

The spec flags make the base of every trial; the searched fields (runner.experiments.tune.SEARCH_SPACE)
are the trial's. The same command again resumes the study from OUT/tune-STUDY.db.
"""

from __future__ import annotations

import sys

from runner.cli import EXIT_FAILED, EXIT_INTERRUPTED, SUMMARIES, run, workload
from runner.errors import UserError


def add_parser(sub) -> None:
    from runner.experiments.tune import space_text
    from runner.jobs.trial import PRUNERS

    p = sub.add_parser("tune", help=SUMMARIES["tune"],
                       description="Search the hyperparameters with Optuna (TPE seeded from the spec's seed,"
                                   " maximizing the best test accuracy), one study per framework in"
                                   " OUT/tune-STUDY.db; every trial is a run with its record."
                                   f" Searched: {space_text()}."
                                   " The same command again resumes the studies. Prints the best trials.")
    workload.add_arguments(p)
    p.add_argument("--trials", type=int, required=True, metavar="N",
                   help="trials per framework, in total: a resumed study runs only the missing ones")
    p.add_argument("--timeout", type=float, metavar="S",
                   help="per framework: start no new trial after S seconds of this command")
    p.add_argument("--study", default="dlbench", metavar="NAME",
                   help="the study's name (default dlbench); framework F's study is NAME-F in OUT/tune-NAME.db")
    p.add_argument("--pruner", default="median", metavar="median|none|threshold:X",
                   help="stop bad trials after an epoch (default median): "
                        + "; ".join(f"{k}: {v}" for k, v in PRUNERS.items()).replace("%", "%%"))
    p.add_argument("--top", type=int, default=5, metavar="K",
                   help="the best K completed trials per framework in the table (default 5)")
    # Parity is off by default here: every trial is a spec of its own (a float64 reference each); check
    # the winner with `run`.
    run.add_run_arguments(p, parity_steps=0, repeats=False)


def main(args) -> int:
    from runner.experiments import tune
    from runner.jobs.trial import parse_pruner
    from runner.records import collection
    from runner.report import views

    if args.trials < 1:
        raise UserError(f"--trials must be >= 1, got {args.trials}")
    if args.timeout is not None and not args.timeout > 0:
        raise UserError(f"--timeout must be > 0 seconds, got {args.timeout}")
    if args.top < 1:
        raise UserError(f"--top must be >= 1, got {args.top}")
    if args.launcher == "torchrun":
        raise UserError("tune runs each trial in one process (the pruner stops it after an epoch):"
                        " --launcher process or container")
    pruner = parse_pruner(args.pruner)
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise UserError("tune needs Optuna: pip install 'dlbench[tune]'") from None
    work = workload.resolve(args)
    overrides = workload.overrides(args)
    tune.check_base(args.preset, overrides)
    sampling, out = run.run_settings(args)
    tune.check_study_name(args.study, out)
    search = tune.Search(study=args.study, trials=args.trials, timeout_s=args.timeout, pruner=pruner,
                         preset=args.preset, overrides=overrides)
    kwargs = dict(data_dir=args.data_dir, command=args.command_line, parity_steps=args.parity_steps, sampling=sampling)
    outcomes, interrupted = [], False
    with tune.study_lock(out, args.study) as held:
        # every framework's study checked (its base spec) before the first trial runs
        studies = {f: tune.open_study(search, f, out, reap=held) for f in work.frameworks}
        for framework in work.frameworks:
            mine, interrupted = tune.run_study(search, framework, studies[framework], work, out, kwargs)
            outcomes += mine
            if interrupted:
                break
    if not args.no_table:
        recs, _ = collection.load([out])
        print(views.render("tune", recs, views.Settings(id=args.study, top=args.top)))
    if interrupted:
        return EXIT_INTERRUPTED
    # A diverged trial is an answer about its hyperparameters; a failed, unavailable or interrupted one
    # (a signal from outside: the study stopped there) is not.
    return EXIT_FAILED if any(o.status in ("failed", "unavailable", "interrupted") for o in outcomes) else 0
