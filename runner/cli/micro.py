"""The arguments and the flow the micro-benchmarks share (runner.cli.ensemble, .per_sample_grads).

    python -m runner ensemble --framework torch,jax --device cuda --out dlbench-results/micro
    python -m runner compare dlbench-results/micro --view per-sample-grads --format csv   # records already written

Where each framework runs (--device, --platform, --launcher with its settings), which data (--dataset,
--data-dir, --seed), where the records go (--out) and how the table is printed (--format, --no-table),
or, with --table PATH (the old name of `compare --view ensemble|per-sample-grads PATH`), no run at all:
the table of the micro-benchmark records found under PATH.
"""

from __future__ import annotations

import sys

from runner.errors import UserError


def add_arguments(p, frameworks: tuple[str, ...]) -> None:
    from runner.cli import arguments
    from runner.data.catalog import DATASETS

    p.add_argument("--framework", default=",".join(frameworks),
                   help=f"comma-separated, from {', '.join(frameworks)}; or 'all' (the installed ones);"
                        f" default {','.join(frameworks)}")
    p.add_argument("--dataset", choices=list(DATASETS), default="mnist",
                   help="the images the models read (default mnist; synthetic: generated, no download)")
    arguments.add_data_dir(p)
    p.add_argument("--seed", type=int, default=42, help="the reference weights' and batch order's seed (default 42)")
    arguments.add_placement(p, torchrun=False)
    arguments.add_out(p)
    arguments.add_table(p, no_table=True)
    p.add_argument("--table", nargs="+", metavar="PATH",
                   help="run nothing: print the table of the study's records under these files or folders")


def print_table(paths, kind: str, fmt: str) -> int:
    """--table: the study's records under `paths` -> its table (bad files skipped and named, as compare
    does); the old name of `compare --view ensemble|per-sample-grads`, kept for one release."""
    from runner.cli.compare import read, renamed
    from runner.report import views

    view = kind.replace("_", "-")
    records, _ = read(paths)
    note = left_out(records, kind)
    if note:
        print(note, file=sys.stderr)
    print(views.render(view, records, views.Settings(fmt=fmt)))
    renamed(f"{view} --table PATH", f"compare --view {view} PATH")  # after the table: an error stays one line
    return 0


def left_out(records: list[dict], kind: str) -> str | None:
    """One line on the records under the paths that are not this study's (training runs, the other
    study), which its table leaves out: an empty table should not look like an empty folder."""
    from collections import Counter

    others = Counter(r.get("kind", "train") for r in records if r.get("kind", "train") != kind)
    if not others:
        return None
    command = kind.replace("_", "-")
    theirs = "; ".join(f"{n} {k}: python -m runner compare " + ("PATH" if k == "train" else
                                                                 f"--view {k.replace('_', '-')} PATH")
                       for k, n in sorted(others.items()))
    return (f"dlbench: {sum(others.values())} record(s) left out of the {command} table, not {command} records"
            f" ({theirs})")


def run(args, job: str, spec, settings: dict, frameworks: list[str]) -> int:
    """Every framework's child, then the table; the exit code (runner.micro.parent.exit_code)."""
    from runner.cli.run import out_dir
    from runner.micro import parent
    from runner.launch import launchers
    from runner.machine import platforms
    from runner.records import collection
    from runner.report import views

    platform = platforms.resolve(args.platform)
    device = platforms.device_for(platform["name"], args.device)
    launcher = launchers.from_args(args.launcher, args.launcher_setting)
    parent.check_launcher(launcher)
    out = out_dir(args.out)
    print(f"dlbench {job}: {', '.join(frameworks)}, {spec.model} on {spec.dataset}, device {device},"
          f" platform {platform['name']} ({platform['source']})", file=sys.stderr)
    command = args.command_line
    outcomes, interrupted = parent.run(job, spec, frameworks, settings, device, platform, args.data_dir, out,
                                       command, launcher)
    for o in outcomes:
        verdict = "" if o.checks_passed is None else f", checks {'pass' if o.checks_passed else 'FAIL'}"
        print(f"{o.framework}: {o.status}{verdict} -> {o.path}", file=sys.stderr)
    if not args.no_table:
        records, _ = collection.load([o.path for o in outcomes])
        print(views.render(job.replace("_", "-"), records, views.Settings(fmt=args.format)))
    return parent.exit_code(outcomes, interrupted)
