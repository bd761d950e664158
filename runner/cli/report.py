"""`report`: records -> one self-contained HTML page, the figures alone, or experiment-tracking runs.

    python -m runner report results/ [more/ ...] [-o report.html]
    python -m runner report results/ --price cuda=2.49 --price m1=0 [--prices prices.json]
    python -m runner report results/ --plots figures/ [--format png|svg]     # the figures alone
    python -m runner report results/ --track mlflow:sqlite:///mlflow.db [--track wandb:PROJECT [--wandb-online]]

The page is written when -o is given, or when neither --plots nor --track is. The figures need the
`report` extra (matplotlib, Jinja2); tracking the `mlflow` / `wandb` extras. Only argparse here: the
parser is built at every `python -m runner --help`.
"""

from __future__ import annotations

import os
from pathlib import Path

from runner.cli import SUMMARIES
from runner.errors import UserError

HINT = "pip install 'dlbench[report]'"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "report", help=SUMMARIES["report"],
        description="Merge records (files or folders) into one HTML page that opens offline: the comparison"
                    " table, time-to-accuracy curves, s/epoch with CIs, platforms, resources and energy, cost,"
                    " each machine's probe and each record's command and commit. Or write the figures alone"
                    " (--plots), or log the records to MLflow / W&B (--track).")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("-o", "--output", metavar="FILE.html", help="the page (default: report.html unless"
                                                               " --plots or --track is given)")
    p.add_argument("--title", default="dlbench report")
    p.add_argument("--price", action="append", default=[], metavar="PLATFORM=USD_PER_HOUR",
                   help="the platform's hourly price (repeatable), or PLATFORM=free; colab and kaggle are free"
                        " tiers unless priced")
    p.add_argument("--prices", metavar="FILE.json", help='prices as JSON: {"cuda": 2.49, "colab": "free"};'
                                                         " --price overrides it")
    p.add_argument("--baseline", metavar="KEY=VALUE[,KEY=VALUE...]", help="as in compare: adds the ratio column")
    p.add_argument("--noisy-cv", type=float, metavar="CV", help="as in compare (default 0.05)")
    p.add_argument("--plots", metavar="DIR", help="write each figure to DIR as SPEC-NAME.FORMAT")
    p.add_argument("--format", choices=("svg", "png"), default="svg", help="--plots' format (default svg)")
    add_track_arguments(p)


def add_track_arguments(p) -> None:
    """--track and --wandb-online, for `report` and `run` (after the run, its records are logged)."""
    p.add_argument("--track", action="append", default=[], metavar="mlflow[:URI]|wandb[:PROJECT]",
                   help="log every record as a run (repeatable): MLflow at URI (default: $MLFLOW_TRACKING_URI)"
                        " or W&B's PROJECT, offline; needs the mlflow / wandb extra")
    p.add_argument("--wandb-online", action="store_true", help="W&B: upload (default: offline, nothing sent)")


def track(records: list[dict], args) -> None:
    """Log `records` to every --track target; one line per record."""
    if args.track:
        from runner.report import export

        for target in args.track:
            for line in export.track(records, target, online=args.wandb_online):
                print(line)


def _load(args):
    from runner.cli import compare as compare_cli
    from runner.report import compare, export, prices

    priced = {}

    def check():  # bad input fails before any file is read
        for target in args.track:
            export.parse_target(target)
        priced.update(prices.resolve(args.price, args.prices))

    records, skipped = compare_cli.load(args, check)
    records = compare.training(records)  # study records have their own tables (runner.report.micro)
    rows = compare.rows(records, baseline=args.baseline, noisy_cv=args.noisy_cv)
    return records, skipped, rows, priced


def _output(args) -> Path | None:
    if args.output is None:
        out = None if args.plots or args.track else Path("report.html")
    else:
        out = Path(args.output)
        if out.suffix.lower() not in (".html", ".htm"):  # never write a page over a record or anything else
            raise UserError(f"-o {out}: the page's name must end in .html")
    if out is not None:
        if out.is_dir():
            raise UserError(f"-o {out}: that is a folder; name the page's file, e.g. {out / 'report.html'}")
        _can_make(f"-o {out}", out.parent)
    if args.plots:
        _can_make(f"--plots {args.plots}", Path(args.plots))
    return out


def _can_make(flag: str, folder: Path) -> None:
    """UserError unless files can be written in `folder` or in the folders that will be made for it:
    checked before the records are read and the figures drawn (minutes for many records), so that a
    typo fails at once, in one line. Nothing is made here."""
    p = folder
    while not p.exists() and p != p.parent:  # exists() is False below a file too
        p = p.parent
    if not p.is_dir():
        raise UserError(f"{flag}: {p} is a file, not a folder")
    if not os.access(p, os.W_OK | os.X_OK):  # False on a read-only file system too
        raise UserError(f"{flag}: cannot write in {p} (not writable)")


def _write(flag: str, path: Path, data: bytes) -> Path:
    """Atomically, readable as any file the user makes (mkstemp's 0600 would hide a page from a web server).
    What _can_make cannot foresee (a full disk, a folder made read-only meanwhile) is one line too."""
    from runner import atomic

    try:
        atomic.write_bytes(path, data, replace=True)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(path, 0o666 & ~mask)
    except OSError as e:
        raise UserError(f"{flag}: cannot write {path} ({e.strerror or e})") from None
    return path


def _write_plots(records, rows, priced, folder: Path, fmt: str) -> list[Path]:
    from runner.report import page, plots, sections

    view = sections.build(records, rows, priced)
    written = []
    for spec_hash, figs in page.figures(view).items():
        for name, fig in figs.items():
            written.append(_write(f"--plots {folder}", folder / f"{spec_hash[:12]}-{name}.{fmt}",
                                  plots.render(fig, fmt)))
    return written


def main(args) -> int:
    out = _output(args)
    records, skipped, rows, priced = _load(args)
    try:
        import jinja2  # noqa: F401
        import matplotlib  # noqa: F401
    except ImportError as e:
        if out is not None or args.plots:
            raise UserError(f"report: {e.name} is not installed; {HINT}") from None
    if args.plots:
        for path in _write_plots(records, rows, priced, Path(args.plots), args.format):
            print(path)
    if out is not None:
        from runner.report import page

        command = args.command_line
        text = page.html(records, rows, priced, skipped, command=command, title=args.title)
        _write(f"-o {out}", out, text.encode("utf-8"))
        print(f"{out}: {len(records)} record(s), {len(text.encode()) / 1024:.0f} KiB")
    track(records, args)
    return 0
