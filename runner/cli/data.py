"""`data`: get the dataset bytes and check them against the pinned SHA-256.

    python -m runner data fetch --dataset mnist      # cache/folder, public mirrors, offline sources
    python -m runner data verify --dataset fashion --data-dir DIR
"""

from __future__ import annotations

import sys

from runner.cli import EXIT_FAILED, SUMMARIES


def add_parser(sub) -> None:
    from runner.data.catalog import DATASETS

    p = sub.add_parser("data", help=SUMMARIES["data"],
                       description="Get the dataset bytes (cache/folder, public mirrors, offline"
                                   " sources) and check them against the pinned SHA-256.")
    p.add_argument("action", choices=("fetch", "verify"))
    p.add_argument("--dataset", choices=list(DATASETS), default="mnist")
    p.add_argument("--data-dir", metavar="DIR", help="keep the dataset in DIR/DATASET/ (default: $DLBENCH_DATA_DIR,"
                                                     " else the user cache); see docs/data.md")


def main(args) -> int:
    from runner.data import store

    if args.action == "fetch":
        folder = store.ensure(args.dataset, args.data_dir)
        print(f"{args.dataset}: all files verified in {folder}")
        return 0
    folder, states = store.find(args.dataset, args.data_dir)
    bad = 0
    for s in states:
        bad += s.state != "ok"
        detail = "" if s.state == "ok" else f" (expected {s.file.sha256}, got {s.actual or 'no file'})"
        print(f"{s.state:8} {folder / s.file.name}{detail}")
    if bad:
        print(f"dlbench: error: {bad} file(s) missing or not matching their pins; run: python -m runner"
              f" data fetch --dataset {args.dataset}", file=sys.stderr)
    return EXIT_FAILED if bad else 0
