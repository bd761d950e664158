"""Records -> one self-contained HTML page: the comparison table, figures, resources, cost, machines.

    python -m runner report results/ [more/ ...] [-o report.html] [--price cuda=2.49]

The page needs nothing but itself: figures are inline SVG data URIs, the style is inline, there is no
script, and a Content-Security-Policy forbids fetching anything. Every value from a record goes
through Jinja2's autoescaping, so a framework called "<script>" shows as that text, and, before it,
through tables.neutral, so a NUL or a U+202E in it shows as a space, as in compare's table.
"""

from __future__ import annotations

import base64
from pathlib import Path

import jinja2
import markupsafe

from runner.report import compare, sections
from runner.report.tables import neutral, num

TEMPLATES = Path(__file__).parent / "templates"
MIME = {"svg": "image/svg+xml", "png": "image/png"}
SVG_DPI = 96  # CSS pixels per inch: the <img> box matches the figure's size in inches
NUMERIC = ("n", "s/epoch (median [95% CI])", "CV %", "s/epoch × baseline", "1st epoch s", "compile s", "img/s",
           "final acc %", "best acc %", "train energy J", "GFLOP/s", "% of peak FP32", "J/image")
# The efficiency columns every page shows (compare shows them on --columns): how far from the peak, energy per image.
PAGE_COLUMNS = ("gflops", "peak", "j_image")
CAPTIONS = {
    "time-to-accuracy": "Time to accuracy: test accuracy after each epoch against cumulative training time"
                        " (evaluation excluded), the median over each row's runs; the dashed line is the"
                        " spec's target and × marks the median time to it.",
    "epoch-times": "Steady seconds per epoch (median over runs; whiskers: 95 % bootstrap CI, none for a single"
                   " run) and, apart, the first epoch and the compile time (the first epoch's surplus over a"
                   " steady one). Hatched: parity FAIL, not comparable.",
    "platforms": "Platforms: each row's whole training time for the spec's epochs (median over runs) on its"
                 " platform and hardware, with its final test accuracy.",
}


def _size(n) -> str:
    if n is None:
        return "-"
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def _usd(v) -> str:
    return "-" if v is None else (f"{v:.4f}" if v < 0.01 else f"{v:,.2f}")


def _finalize(value):
    """Every {{ value }}, before autoescaping: text without control or bidi-override characters (escaping
    keeps them, and a U+202E in a framework's name would reverse the rest of its line on the page)."""
    if isinstance(value, markupsafe.Markup):
        return markupsafe.Markup(neutral(value))
    return neutral(value) if isinstance(value, str) else value


def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, finalize=_finalize,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters |= {"num": num, "size": _size, "usd": _usd,
                    "pct": lambda v: num(None if v is None else 100 * v, "g")}
    return env


def figures(view: dict) -> dict[str, dict]:
    """{spec_hash: {name: Figure}} for every spec block of sections.build's view."""
    from runner.report import plots

    return {spec["spec_hash"]: plots.spec_figures(spec["items"], spec["target"]) for spec in view["specs"]}


def _image(fig, name: str) -> dict:
    from runner.report import plots

    data = plots.render(fig, "svg")
    width, height = fig.get_size_inches()
    return {"src": f"data:{MIME['svg']};base64,{base64.b64encode(data).decode('ascii')}",
            "width": round(width * SVG_DPI), "height": round(height * SVG_DPI), "caption": CAPTIONS[name]}


def _table(rows: list[dict], all_rows: list[dict]) -> list[dict]:
    """compare's markdown cells for these rows; the optional columns decided over all rows, as there."""
    with_baseline = any(r["baseline"] for r in all_rows)
    with_energy = any(r["energy_j"] is not None for r in all_rows)
    return [{"parity": r["parity"], "cells": compare._display(r, with_baseline, with_energy, columns=PAGE_COLUMNS)}
            for r in rows]


def html(records: list[dict], rows: list[dict], prices: dict, skipped=(), command: str = "",
         title: str = "dlbench report") -> str:
    """The page, from loaded records and compare.rows(records, ...)."""
    from runner import __version__

    view = sections.build(records, rows, prices)
    figs = figures(view)
    for spec in view["specs"]:
        spec["table"] = _table(spec["rows"], rows)
        spec["figures"] = {name: _image(fig, name) for name, fig in figs[spec["spec_hash"]].items()}
    created = sorted(r["created_utc"] for r in records if r.get("created_utc"))
    return environment().get_template("report.html.j2").render(
        title=title, version=__version__, command=command, skipped=list(skipped), numeric=NUMERIC,
        first_created=created[0] if created else None, last_created=created[-1] if created else None, **view)
