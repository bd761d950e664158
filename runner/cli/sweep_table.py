"""`sweep-table`: the sweep table again, from the records (per framework, one row per grid point).

    python -m runner sweep-table results/sweep [more/ ...] [--id sweep-1a2b3c4d5e6f] [--format markdown|csv|json]
"""

from __future__ import annotations


from runner.cli import SUMMARIES, arguments
from runner.errors import UserError


def add_parser(sub) -> None:
    p = sub.add_parser("sweep-table", help=SUMMARIES["sweep-table"],
                       description="One table per sweep: per framework, one row per grid point (columns:"
                                   " README.md, 'Experiments: sweeps and tuning').")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--id", metavar="SWEEP_ID", help="only this sweep (the id the sweep printed)")
    arguments.add_table(p)


def main(args) -> int:
    from runner.report import sweep_table

    from runner.cli.compare import read

    if args.id is not None and not args.id.strip():  # '' would match no sweep, not every sweep
        raise UserError(f"--id {args.id!r}: give a sweep id (the sweep-... the sweep printed), or leave --id out"
                        f" for every sweep")
    recs, _ = read(args.paths)
    table = sweep_table.rows(recs, args.id)
    if not table:
        raise UserError(f"no sweep records{f' of {args.id}' if args.id else ''} under {', '.join(args.paths)}")
    print(sweep_table.render(table, args.format).rstrip("\n"))
    return 0
