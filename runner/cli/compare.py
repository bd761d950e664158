"""`compare`: records from any number of machines -> one table per spec.

    python -m runner compare results/ other-machine/records/ --format markdown|csv|json
    python -m runner compare results/ --baseline framework=torch,device=cpu

Study records (ensemble, per-sample gradients) are not training rows: in markdown their tables follow
the training tables; for CSV / JSON a line on stderr names the command that prints them.
"""

from __future__ import annotations

import sys

from runner.cli import SUMMARIES, arguments
from runner.errors import UserError


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help=SUMMARIES["compare"],
                       description="Merge records (files or folders) into one table per spec.")
    p.add_argument("paths", nargs="+", metavar="PATH")
    arguments.add_table(p)
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
    from runner.report import compare

    from runner.report import studies

    columns = compare.parse_columns(args.columns)
    records, _ = load(args)
    train, others = compare.training(records), [r for r in records if r.get("kind", "train") != "train"]
    if train or not others:
        print(compare.render(compare.rows(train, baseline=args.baseline, noisy_cv=args.noisy_cv), args.format,
                             columns))
    if others and args.format == "markdown":
        print(("\n" if train else "") + studies.render_all(others))
    elif others:
        kinds = sorted({r["kind"] for r in others})
        commands = " / ".join(f"python -m runner {k.replace('_', '-')} --table PATH --format {args.format}" for k in kinds)
        print(f"dlbench: {len(others)} study record(s) ({', '.join(kinds)}) are not training runs and not in this"
              f" table; theirs: {commands}", file=sys.stderr)
    return 0


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
