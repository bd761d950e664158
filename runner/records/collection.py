"""Records read from files and folders, for every table: compare, the report, sweep resume, tune.

    python -m runner compare results/          # runner.report.compare over load(["results/"])

load() finds *.json under the paths it is given (but not in an `archive/` below a named folder), reads
each through runner.records.read (validated, upgraded), counts a run once however many copies there
are, and says why it skipped each file it did not use.
"""

from __future__ import annotations

import os
from pathlib import Path

from runner.errors import RecordError
from runner.records import read


def printable(text: str) -> str:
    """`text` on one line: control and line-break characters as escapes (a file name may hold them)."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


# Records of runs whose code has since changed (results/archive/): kept for history, out of the tables
# unless that folder itself is named.
ARCHIVE = "archive"


def load(paths) -> tuple[list[dict], list[tuple[str, str]]]:
    """Records under `paths` (files or folders, searched recursively for *.json, but not in an
    `archive/` below a given folder) and the skipped files with their reasons (both printable on one
    line). A run (run_id) counts once: a file given twice is read once, and a copy of a run already
    read is skipped with a warning."""
    files: list[Path] = []
    archived: list[tuple[str, str]] = []
    for p in map(Path, paths):
        if p.is_dir():
            found_here = sorted(p.rglob("*.json"))
            kept = [f for f in found_here if ARCHIVE not in f.relative_to(p).parts[:-1]]
            files += kept
            if len(kept) < len(found_here):
                archived.append((printable(str(p / ARCHIVE)), f"{len(found_here) - len(kept)} file(s) of superseded runs"
                                 f" not read: name that folder to read them"))
        elif p.exists():
            files.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    found, skipped = [], []
    seen_files: set[str] = set()
    runs: dict[str, tuple[Path, dict]] = {}  # run_id -> the first file and record
    for f in files:
        where, key = printable(str(f)), os.path.abspath(f)  # a symlinked copy is caught by its run_id
        if key in seen_files:
            skipped.append((where, "given more than once: read once"))
            continue
        seen_files.add(key)
        try:
            rec = read(f)
        except RecordError as e:
            skipped.append((where, printable(str(e))))
            continue
        if rec["run_id"] in runs:
            first, kept = runs[rec["run_id"]]
            how = "an identical copy" if rec == kept else "contents differ: the first is kept"
            skipped.append((where, f"same run_id {rec['run_id'][:12]}… as {printable(str(first))} ({how}): counted once"))
            continue
        runs[rec["run_id"]] = (f, rec)
        found.append(rec)
    return found, skipped + archived
