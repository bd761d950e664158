"""`sweep`: a grid over spec fields and backend options, one run per point and framework, then its table.

    python -m runner sweep --framework torch,jax --set batch_size=32,64,128,512 --out results/sweep
    python -m runner sweep --framework torch --set batch_size=64,128 --set learning_rate=1e-3,2e-3 --epochs 5
    python -m runner sweep --framework jax --option jax.loop=step,scan --preset smoke --repeats 3

A comma in a --set or --option value makes an axis; a single value is a fixed override, as in `run`.
Every `run` flag applies to each point. Re-running the same command skips what this machine has done
(resume: runner.experiments.resume); a second sweep into the same --out stops while the first runs.
"""

from __future__ import annotations

import sys

from runner.cli import EXIT_FAILED, EXIT_INTERRUPTED, SUMMARIES, run, workload
from runner.errors import UserError


def add_parser(sub) -> None:
    p = sub.add_parser("sweep", help=SUMMARIES["sweep"],
                       description="Run the cartesian grid of the axes: a comma-separated list in a --set"
                                   " or --option value is an axis (--set batch_size=32,64,128), a single value"
                                   " a fixed override. One record per point, framework and repeat, each with"
                                   " its experiment block; the same command again skips the points already"
                                   " done in --out. Prints the sweep table (also: compare OUT).")
    workload.add_arguments(p)
    run.add_run_arguments(p)
    axes = {"set": "a spec field: FIELD=VALUE fixes it, FIELD=V1,V2,... is an axis, e.g. --set batch_size=32,64,128"
                   " (repeatable: the grid is the product of the axes)",
            "option": "a backend option: FRAMEWORK.KEY=VALUE fixes it, FRAMEWORK.KEY=V1,V2,... is an axis of that"
                      " framework's runs, e.g. --option jax.loop=step,scan (repeatable)"}
    for action in p._actions:  # the shared flags, said the way a sweep reads them
        action.help = axes.get(action.dest, action.help)


def main(args) -> int:
    from runner.experiments import sweep
    from runner.launch import orchestrate
    from runner.report import views

    fixed_set, fixed_options, axes = sweep.split(args.set, args.option)
    if not axes:
        raise UserError("sweep needs at least one axis: a comma-separated list, e.g. --set batch_size=32,64"
                        " or --option jax.loop=step,scan")
    args.set, args.option = fixed_set, fixed_options
    work = workload.resolve(args)
    overrides = workload.overrides(args)
    flagged = {name for name in overrides if hasattr(args, f"spec_{name}")}
    sweep.check_axes(axes, flagged, work.frameworks, work.options)
    plan = sweep.plan(args.preset, overrides, work.options, axes, work.frameworks)
    if hasattr(work.launcher, "check"):  # torchrun: every point's batch must split over the ranks
        for point in plan.runs:
            work.launcher.check(point.spec)
    repeats = run.repeats_policy(args)
    sampling, out = run.run_settings(args)
    outcomes, interrupted = sweep.execute(
        plan, work, out, repeats, dict(data_dir=args.data_dir, command=args.command_line,
                                       parity_steps=args.parity_steps, sampling=sampling))
    if not args.no_table:
        # this machine's records in --out, those resume counts: another machine's are another measurement
        print(views.render("sweep", sweep.own_records(out, work), views.Settings(id=plan.id)))
    if interrupted:
        return EXIT_INTERRUPTED
    unsaved = [o for o in outcomes if o.path.parent != out]
    for o in unsaved:
        print(f"dlbench: error: the {o.framework} record could not be written to {out}; it is at {o.path}",
              file=sys.stderr)
    failed = any(o.status in orchestrate.FAILING for o in outcomes)
    return EXIT_FAILED if failed or unsaved else 0
