"""`tune-table`: the tuning result table again, from the trials' records.

    python -m runner tune-table results/tune [--study NAME] [--top 5] [--format markdown|csv|json]
"""

from __future__ import annotations


from runner.cli import SUMMARIES, arguments
from runner.errors import UserError


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
    from runner.report import tune_table

    if args.top < 1:
        raise UserError(f"--top must be >= 1, got {args.top}")
    if args.study is not None and not args.study.strip():  # '' would match no study, not every study
        raise UserError(f"--study {args.study!r}: give a study's name (tune's --study), or leave --study out"
                        f" for every study")
    from runner.cli.compare import read

    recs, _ = read(args.paths)
    table = tune_table.rows(recs, args.study, top=args.top)
    if not table:
        which = f" of study {args.study}" if args.study else ""
        raise UserError(f"no tuning records{which} under {', '.join(args.paths)}")
    print(tune_table.render(table, args.format).rstrip("\n"))
    return 0
