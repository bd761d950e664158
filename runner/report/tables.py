"""How every table over records is written: the cells, their escaping, and the three formats.

    python -m runner compare results/ [--view ...] [--format markdown|csv|json]   # every view, the report

One module for what the tables share, so that a number, a time to target or a hostile string in a
record reads the same in every table: `num` and `time_to_target` (the cells), `neutral`,
`markdown_cell`, `csv_cell` (escaping), `markdown`, `csv_text`, `json_text` (the formats).
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
import unicodedata

# Markdown: entities for what splits a cell (|), escapes it (\) or is HTML (< > &); renderers pass raw
# HTML through, a terminal shows the entities for what they are.
_MARKDOWN = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "|": "&#124;", "\\": "&#92;"})
_FORMULA = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet may run as a formula (OWASP CSV injection)


def num(value, fmt: str = ".2f") -> str:
    """A number as `fmt` formats it; "-" for a value not measured."""
    return "-" if value is None else format(value, fmt)


def median(values):
    """The median of the values measured (None left out); None if there is none."""
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def time_to_target(seconds, epoch, reached: int | None = None, of: int | None = None) -> str:
    """"32.00 (ep 6.5)", with ", 2/3 runs" where not every run reached the target; "not reached"."""
    if seconds is None:
        return "not reached"
    runs = "" if reached is None or reached == of else f", {reached}/{of} runs"
    return f"{seconds:.2f} (ep {epoch:g}{runs})"


def neutral(text, keep: str = "") -> str:
    """`text` with line breaks, control and bidi-override characters (but those in `keep`) as spaces:
    a NUL or an ESC would end a row, rewrite a terminal or make an SVG invalid XML, and U+202E would
    show the rest of a line reversed. HTML and markdown escaping leave them all as they are."""
    return "".join(" " if c not in keep and (unicodedata.category(c) in ("Cc", "Zl", "Zp")
                                             or "\u202a" <= c <= "\u202e" or "\u2066" <= c <= "\u2069")
                   else c for c in str(text))


def markdown_cell(text) -> str:
    """One table cell: neutral() (a line break would end the row), then the entities above."""
    return neutral(text).translate(_MARKDOWN)


def csv_cell(value):
    """A string a spreadsheet would run as a formula, quoted with a leading apostrophe."""
    return "'" + value if isinstance(value, str) and value.startswith(_FORMULA) else value


def finite(value):
    """JSON has no NaN or Infinity: a statistic that overflowed (a ratio to a baseline of ~0 s) is null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    return value


def markdown(cells: list[dict]) -> str:
    """A pipe table of display cells (strings), headers and cells escaped."""
    from tabulate import tabulate

    cells = [{markdown_cell(k): markdown_cell(v) for k, v in c.items()} for c in cells]
    return tabulate(cells, headers="keys", tablefmt="pipe", disable_numparse=True)


def csv_text(rows: list[dict], fieldnames: list[str] | None = None) -> str:
    """The rows as CSV (header: `fieldnames`, else the first row's keys; a missing field is empty),
    each cell through csv_cell; no rows: the header alone, or '' where there are no fieldnames."""
    if not rows and not fieldnames:
        return ""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fieldnames or list(rows[0]), lineterminator="\n", restval="")
    writer.writeheader()
    writer.writerows({k: csv_cell(v) for k, v in r.items()} for r in rows)
    return buf.getvalue()


def json_text(rows: list[dict]) -> str:
    return json.dumps([finite(r) for r in rows], indent=1, allow_nan=False)
