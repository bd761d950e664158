"""`slurm`: the run matrix as one Slurm job array (runner.launch.slurm), its state, its missing tasks.

    python -m runner slurm submit --framework all --models lenet5,mlp --repeats 3 --out /shared/run1 \
        [--partition gpu] [--gpus-per-task 1] [--time 01:00:00] [--container dlbench.sif] [--dry-run]
        [--sbatch=--account=abc] [--max-array-size 1001]   # every value is checked before anything is written
    python -m runner slurm submit --framework torch --launcher torchrun --nproc 4 --nnodes 2 --out /shared/ddp
    python -m runner slurm submit --framework torch,jax --set batch_size=32,64,128 --out /shared/sweep   # a sweep
    python -m runner slurm status /shared/run1
    python -m runner slurm wait /shared/run1 [--timeout 3600]
    python -m runner slurm resubmit /shared/run1 [--dry-run]
    python -m runner slurm task /shared/run1/slurm/requests/task-000.request   # what each array task runs
"""

from __future__ import annotations

import sys
from pathlib import Path

from runner import lists
from runner.cli import EXIT_FAILED, SUMMARIES, workload
from runner.errors import UserError


def add_parser(sub) -> None:
    p = sub.add_parser("slurm", help=SUMMARIES["slurm"],
                       description="One Slurm job array, one task per framework x model x repeat, every record"
                                   " in one shared folder (merge with: python -m runner compare FOLDER).")
    actions = p.add_subparsers(dest="action", metavar="{submit,status,wait,resubmit,task}", required=True)
    s = actions.add_parser("submit", help="write the run requests and the sbatch script, submit the array")
    workload.add_arguments(s)
    s.add_argument("--models", metavar="A,B", help="several models, one task each (default: --model's, lenet5)")
    # A comma list in --set / --option makes a sweep axis, as for `sweep` (runner.experiments.sweep): one
    # task per grid point x framework x repeat, each record with its experiment block (compare's sweep view reads them).
    s.add_argument("--repeats", type=int, default=1, help="runs per framework and model, one task each (default 1)")
    s.add_argument("--partition", help="Slurm partition (default: the cluster's)")
    s.add_argument("--gpus-per-task", type=int, metavar="G", help="GPUs for each task (default: none asked)")
    s.add_argument("--cpus-per-task", type=int, metavar="C")
    s.add_argument("--time", metavar="D-HH:MM:SS", help="time limit per task (SIGTERM 60 s before it)")
    s.add_argument("--container", metavar="IMAGE|SIF",
                   help="run each task in this Apptainer image (apptainer exec [--nv]); it must hold dlbench")
    s.add_argument("--sbatch", action="append", default=[], metavar="OPTION",
                   help="another sbatch option, e.g. --sbatch=--account=abc (repeatable)")
    s.add_argument("--python", default=sys.executable,
                   help="the interpreter with dlbench on the compute nodes (default: this one)")
    s.add_argument("--max-array-size", type=int, default=None, metavar="N",
                   help="the cluster's MaxArraySize (scontrol show config): more tasks are refused before"
                        " anything is written (default: Slurm's default, 1001)")
    s.add_argument("--parity-steps", type=int, default=50, metavar="K", help="as for run (default 50)")
    s.add_argument("--out", required=True, help="the shared folder every node sees: requests, script, records")
    s.add_argument("--dry-run", action="store_true", help="print the sbatch script; write and submit nothing")
    for name, text in (("status", "each task's state: its record's status, or Slurm's, or missing"),
                       ("wait", "poll squeue until no task is pending or running, then show status"),
                       ("resubmit", "submit again only the tasks without a result (missing, failed, interrupted)")):
        a = actions.add_parser(name, help=text)
        a.add_argument("shared", help="the submission's --out folder")
        if name == "wait":
            a.add_argument("--timeout", type=float, metavar="S", help="give up after S seconds (exit 1)")
            a.add_argument("--poll", type=float, default=2.0, metavar="S", help="seconds between polls (default 2)")
        if name == "resubmit":
            a.add_argument("--dry-run", action="store_true", help="print the sbatch command only")
    t = actions.add_parser("task", help="(what each array task runs) one run request, its record whatever happens")
    t.add_argument("request")


def main(args) -> int:
    from runner.launch import slurm

    if args.action == "task":
        return slurm.task(Path(args.request))
    if args.action == "submit":
        return _submit(args)
    if args.action == "resubmit":
        job_id, tasks = slurm.resubmit(Path(args.shared), dry_run=args.dry_run)
        if not tasks:
            print("slurm: every task has a result; nothing to resubmit")
        elif job_id:
            print(f"slurm: resubmitted task(s) {','.join(map(str, tasks))} as job {job_id}")
        return 0
    rows = (slurm.wait(Path(args.shared), args.timeout, args.poll) if args.action == "wait"
            else slurm.status(Path(args.shared)))
    print(slurm.render(rows))
    missing = [r for r in rows if r["state"] not in slurm.DONE and r["state"] not in slurm.ACTIVE]
    if missing and args.action == "wait":
        print(f"slurm: {len(missing)} task(s) without a result; rerun them: python -m runner slurm resubmit"
              f" {args.shared}", file=sys.stderr)
    return EXIT_FAILED if missing and args.action == "wait" else 0


def _submit(args) -> int:

    from runner.data import store
    from runner.launch import orchestrate, slurm
    from runner.request import RunRequest
    from runner.workload.spec import MODELS

    from runner.experiments import sweep

    args.set, args.option, axes = sweep.split(args.set, args.option)
    work = workload.resolve(args)
    models = lists.items("--models", args.models) if args.models is not None else [work.spec.model]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise UserError(f"--models: unknown {', '.join(unknown)} (choose from {', '.join(MODELS)})")
    if args.repeats < 1:
        raise UserError(f"--repeats must be >= 1, got {args.repeats}")
    runs = _grid(args, work, models, axes)
    nodes = getattr(work.launcher, "nnodes", 1)
    job = slurm.JobSettings(partition=args.partition, gpus_per_task=args.gpus_per_task,
                            cpus_per_task=args.cpus_per_task, time=args.time, container=args.container,
                            nodes=nodes, extra=tuple(args.sbatch), python=args.python,
                            max_array_size=(slurm.MAX_ARRAY_SIZE if args.max_array_size is None
                                            else args.max_array_size))
    # Every value that goes into the sbatch script, and sbatch itself, before the dataset is fetched or
    # anything is written (slurm.submit checks the script again with the dataset's folder).
    slurm.check(args.out, len(runs) * args.repeats, job, args.data_dir)
    if not args.dry_run:
        slurm.require_sbatch()
    shared = Path(args.out).expanduser().resolve()
    platform = ({"name": args.platform, "source": "flag"} if args.platform else {"name": "slurm", "source": "detected"})
    # The same path on every node: a shared folder (the user cache is one where home is shared).
    folder = Path(args.data_dir or ".") if args.dry_run else store.ensure(work.spec.dataset, args.data_dir)
    command = args.command_line
    requests = []
    for spec, name, options, experiment in runs:
        for i in range(args.repeats):
            requests.append(RunRequest(
                job="train", spec=spec, framework=name, device=work.device,
                data_dir=str(folder), out_dir=str(shared), options=options,
                platform=platform, data_source=orchestrate.data_source(args.data_dir), command=command,
                repeat=orchestrate.Repeats(minimum=args.repeats).repeat(i), parity_steps=args.parity_steps,
                launcher=work.launcher.describe(), experiment=experiment))  # no probe: each node probes itself
    job_id = slurm.submit(shared, requests, job, dry_run=args.dry_run)
    sweep_id = next((r.experiment["id"] for r in requests if r.experiment), None)
    if job_id:
        print(f"slurm: job {job_id}, {len(requests)} task(s); records go to {shared}\n"
              f"  python -m runner slurm wait {shared}\n  python -m runner compare {shared}"
              + (f"\n  python -m runner compare {shared} --id {sweep_id}" if sweep_id else ""))
    return 0


def _grid(args, work, models: list[str], axes: list) -> list[tuple]:
    """(spec, framework, options, experiment) per task before repeats: framework x model without
    axes (no experiment block, as ever); with axes, the sweep's grid (runner.experiments.sweep), several
    --models joining it as one more axis."""
    from dataclasses import replace

    from runner.experiments import sweep

    if not axes:
        return [(replace(work.spec, model=model), name, work.options.get(name, {}), None)
                for name in work.frameworks for model in models]
    overrides = workload.overrides(args)
    if len(models) > 1:
        if "model" in overrides:
            raise UserError("--models and --model together: give the models once, with --models")
        axes = [sweep.Axis("model", tuple(models)), *axes]
    elif models != [work.spec.model]:
        overrides["model"] = models[0]
    sweep.check_axes(axes, {n for n in overrides if hasattr(args, f"spec_{n}")}, work.frameworks, work.options)
    plan = sweep.plan(args.preset, overrides, work.options, axes, work.frameworks)
    if hasattr(work.launcher, "check"):  # torchrun: every point's batch must split over the ranks
        for run in plan.runs:
            work.launcher.check(run.spec)
    return [(run.spec, run.framework, run.options, plan.experiment(run)) for run in plan.runs]
