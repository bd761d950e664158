"""`tune-table`: the old name of `compare --view tune` (`--study NAME` is its `--id NAME`; kept for one
release, it says so on stderr).

    python -m runner tune-table results/tune [--study NAME] [--top 5] [--format markdown|csv|json]
"""

from __future__ import annotations


from runner.cli import SUMMARIES, arguments


def add_parser(sub) -> None:
    p = sub.add_parser("tune-table", help=SUMMARIES["tune-table"],
                       description="Per study and framework: trials complete/pruned/failed, wall time (all, and"
                                   " the first N, N the same for every framework), the best K trials.")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--study", metavar="NAME", help="only this study (tune's --study)")
    p.add_argument("--top", type=int, default=5, metavar="K",
                   help="the best K completed trials per framework (default 5)")
    arguments.add_table(p)


def main(args) -> int:
    from runner.cli.compare import check_id, check_top, print_views, read, renamed
    from runner.report import views

    check_top(args.top)
    check_id(args.study, "--study")
    recs, _ = read(args.paths)
    print_views(recs, "tune", views.Settings(fmt=args.format, id=args.study, top=args.top), args.paths)
    renamed("tune-table", "compare --view tune")  # after the table: an error stays one line
    return 0
