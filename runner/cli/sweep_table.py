"""`sweep-table`: the old name of `compare --view sweep` (kept for one release; it says so on stderr).

    python -m runner sweep-table results/sweep [more/ ...] [--id sweep-1a2b3c4d5e6f] [--format markdown|csv|json]
"""

from __future__ import annotations


from runner.cli import SUMMARIES, arguments


def add_parser(sub) -> None:
    p = sub.add_parser("sweep-table", help=SUMMARIES["sweep-table"],
                       description="One table per sweep: per framework, one row per grid point (columns:"
                                   " README.md, 'Experiments: sweeps and tuning').")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--id", metavar="SWEEP_ID", help="only this sweep (the id the sweep printed)")
    arguments.add_table(p)


def main(args) -> int:
    from runner.cli.compare import check_id, print_views, read, renamed
    from runner.report import views

    check_id(args.id, "--id")
    recs, _ = read(args.paths)
    print_views(recs, "sweep", views.Settings(fmt=args.format, id=args.id), args.paths)
    renamed("sweep-table", "compare --view sweep")  # after the table: an error stays one line
    return 0
