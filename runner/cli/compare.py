"""`compare`: records from any number of machines -> the tables they need.

    python -m runner compare results/ other-machine/records/ --format markdown|csv|json
    python -m runner compare results/ --baseline framework=torch,device=cpu
    python -m runner compare results/ --view sweep --id sweep-1a2b3c4d5e6f

Every table over records is a view of compare (runner.report.views): runs (one table per spec), sweep,
tune, ensemble, per-sample-grads. By default compare prints each view the records need (in markdown;
CSV and JSON print the first and name the others on stderr); --view picks one. sweep-table,
tune-table and the studies' --table are the same views under their old names, kept for one release.
"""

from __future__ import annotations

import sys

from runner.cli import SUMMARIES, arguments
from runner.errors import UserError


def add_parser(sub) -> None:
    from runner.report.views import VIEWS

    p = sub.add_parser("compare", help=SUMMARIES["compare"],
                       description="Merge records (files or folders) into the tables they need: training runs"
                                   " (one table per spec), sweeps, tuning studies, micro-benchmarks.")
    p.add_argument("paths", nargs="+", metavar="PATH")
    arguments.add_table(p)
    p.add_argument("--view", choices=("auto",) + VIEWS, default="auto",
                   help="auto (default): every table the records need, a sweep's and a tuning study's runs in"
                        " their own; runs: every training run as a row; sweep, tune, ensemble, per-sample-grads:"
                        " that table alone")
    p.add_argument("--id", metavar="ID", help="sweep and tune views: only this sweep (the id the sweep printed) or"
                                               " tuning study (tune's --study)")
    p.add_argument("--top", type=int, default=5, metavar="K",
                   help="tune view: the best K completed trials per framework (default 5)")
    p.add_argument("--baseline", metavar="KEY=VALUE[,KEY=VALUE...]",
                   help="the row the others are divided by (s/epoch ratio with a 95%% CI), in each spec's"
                        " table; keys: framework, device, platform, hardware (a substring), version,"
                        " options, devices (data-parallel: 2, 4...); e.g. framework=torch,device=cpu")
    p.add_argument("--noisy-cv", type=float, metavar="CV",
                   help="mark rows whose steady s/epoch varies more than this over runs (default 0.05)")
    p.add_argument("--columns", metavar="KEY[,KEY...]",
                   help="extra markdown columns: gflops (achieved GFLOP/s), peak (%% of the device's peak"
                        " FP32), flops (MFLOP per image), j_image (J/image), j_target (J to the target"
                        " accuracy), or all; CSV and JSON always carry them")


def main(args) -> int:
    from runner.report import compare, views

    check_id(args.id, "--id")  # every flag is checked before a file is read
    check_top(args.top)
    columns = compare.parse_columns(args.columns)
    records, _ = load(args)
    settings = views.Settings(fmt=args.format, id=args.id, top=args.top, baseline=args.baseline,
                              noisy_cv=args.noisy_cv, columns=columns)
    print_views(records, args.view, settings, args.paths)
    return 0


def print_views(records: list[dict], view: str, settings, paths) -> None:
    """The tables --view asks for (auto: those the records need) on stdout; in CSV or JSON only the
    first, the others named on stderr."""
    from runner.report import views

    chosen = views.choose(records, view, settings, ", ".join(map(str, paths)))
    if settings.fmt != "markdown" and len(chosen) > 1:
        print(f"dlbench: these records need {len(chosen)} tables ({', '.join(chosen)}); --format {settings.fmt}"
              f" prints one, the {chosen[0]} table; the others: " + ", ".join(f"--view {v}" for v in chosen[1:]),
              file=sys.stderr)
        chosen = chosen[:1]
    print("\n\n".join(views.render(v, records, settings, every_run=view != "auto") for v in chosen))


def renamed(old: str, new: str) -> None:
    """The note an old table command prints: it still works, for one release."""
    print(f"dlbench: note: `{old}` is now `{new}`; the old name goes in the next release", file=sys.stderr)


def check_id(value: str | None, flag: str = "--id") -> str | None:
    if value is not None and not value.strip():  # '' would match no sweep or study, not every one
        what = ("a study's name (tune's --study), or leave --study out for every study" if flag == "--study" else
                "a sweep id (the sweep-... the sweep printed) or a tuning study's name, or leave --id out for all")
        raise UserError(f"{flag} {value!r}: give {what}")
    return value


def check_top(top: int) -> int:
    if top < 1:
        raise UserError(f"--top must be >= 1, got {top}")
    return top


def load(args, check=lambda: None) -> tuple[list[dict], list]:
    """The records under args.paths for `compare` and `report`: --noisy-cv and --baseline (and
    `check`, the caller's own arguments) are checked before any file is read; every skipped file is
    named on one line. Sets args.noisy_cv to its default if it was not given."""
    from runner.report import compare

    if args.noisy_cv is None:
        args.noisy_cv = compare.NOISY_CV
    if not args.noisy_cv >= 0:
        raise UserError(f"--noisy-cv must be >= 0, got {args.noisy_cv}")
    if args.baseline is not None:
        compare.parse_baseline(args.baseline)
    check()
    records, skipped = read(args.paths)
    if skipped:
        print(f"dlbench: {len(records)} record(s) read, {len(skipped)} file(s) skipped", file=sys.stderr)
    return records, skipped


def read(paths) -> tuple[list[dict], list]:
    """The records under `paths` for every table command: a missing path is a one-line error, every
    skipped file is named on one line."""
    from runner.records import collection

    try:
        records, skipped = collection.load(paths)
    except FileNotFoundError as e:
        raise UserError(str(e)) from None
    for path, reason in skipped:
        print(f"dlbench: skipped {path}: {reason}", file=sys.stderr)
    return records, skipped
