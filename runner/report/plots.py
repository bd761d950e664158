"""The report's figures, drawn with matplotlib from sections.build's data.

    python -m runner report results/ -o report.html                 # inline in the page (SVG)
    python -m runner report results/ --plots figures/ --format png  # the figures alone, for papers

Figures are matplotlib.figure.Figure objects saved without pyplot: no global backend or state is
touched, so this works headless (Agg for PNG, the SVG backend for SVG) and inside a notebook alike.
matplotlib is imported here only, and this module only when a report is made.
"""

from __future__ import annotations

import io
import textwrap

from matplotlib.figure import Figure

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf")  # matplotlib's tab10, so a row has the same color in every figure
STYLE = {"svg.fonttype": "path", "font.size": 9}  # text as paths: the SVG needs no fonts to look the same


def color(i: int) -> str:
    return COLORS[i % len(COLORS)]


def _bar_height(n: int) -> float:
    return 1.3 + 0.42 * n


def _flag(row: dict) -> str:
    """What a bar's label must say so a reader never takes a row at face value when it is not."""
    notes = []
    if row["parity"] == "fail":
        notes.append("parity FAIL: not comparable")
    if row["n"] == 1:
        notes.append("n=1")
    if row["noisy"]:
        notes.append(f"noisy, CV {100 * row['steady_epoch_s_cv']:.0f} %")
    if row.get("noisy_host_only"):
        notes.append("noisy host")
    return f" ({'; '.join(notes)})" if notes else ""


def time_to_accuracy(items: list[dict], target) -> Figure | None:
    """Test accuracy against training time, one line per row, the target dashed."""
    drawn = [(it["index"], it) for it in items if it["curve"][0]]
    if not drawn:
        return None
    fig = Figure(figsize=(8, 4.2 + 0.16 * len(drawn)), layout="constrained")
    ax = fig.add_subplot()
    lows = []
    for i, it in drawn:
        t, acc = it["curve"]
        ax.plot(t, [100 * a for a in acc], marker="o", markersize=2.5, linewidth=1.4, color=color(i),
                label=it["label"] + _flag(it["row"]))
        lows.append(min(acc[1:] or acc))  # epoch 1 is often far below: zoom on the rest
        row = it["row"]
        if row["time_to_target_s"] is not None:
            ax.plot([row["time_to_target_s"]], [100 * target], marker="X", markersize=9, color=color(i),
                    markeredgecolor="black", markeredgewidth=0.6, zorder=3)
    if target is not None:
        ax.axhline(100 * target, color="black", linestyle="--", linewidth=0.9,
                   label=f"target {100 * target:g} %")
        lows.append(target)
    low = 100 * min(lows)
    ax.set_ylim(max(0.0, low - max(0.3, 0.15 * (100 - low))), 100.0 if low > 90 else None)
    ax.set_xlabel("training time, s (evaluation excluded; median over runs)")
    ax.set_ylabel("test accuracy, %")
    ax.grid(alpha=0.3)
    fig.legend(fontsize=7, loc="outside lower center", ncols=2 if len(drawn) > 3 else 1)
    return fig


def _wrap(text: str, width: int = 42) -> str:
    """Long row labels on several lines, so the bars keep most of the figure's width. Tick labels are
    made at drawing time, after render's pass over the figure's text: they are neutralised here."""
    from runner.report.tables import neutral

    return "\n".join(textwrap.fill(neutral(part), width) for part in text.split("\n"))


def _labels(items) -> list[str]:
    return [_wrap(it["label"] + _flag(it["row"])) for it in items]


def epoch_times(items: list[dict]) -> Figure | None:
    """Steady s/epoch with its 95 % CI as whiskers; first-epoch and compile time in a panel apart."""
    items = [it for it in items if it["row"]["steady_epoch_s"] is not None or it["row"]["first_epoch_s"] is not None]
    if not items:
        return None
    n = len(items)
    fig = Figure(figsize=(10, _bar_height(n)), layout="constrained")
    steady_ax, first_ax = fig.subplots(1, 2, sharey=True, width_ratios=(3, 2))
    ys = list(range(n))[::-1]  # fastest on top
    for y, it in zip(ys, items):
        row, i = it["row"], it["index"]
        s, lo, hi = row["steady_epoch_s"], row["steady_epoch_s_ci_low"], row["steady_epoch_s_ci_high"]
        hatch = "//" if row["parity"] == "fail" else None
        if s is not None:
            err = None if lo is None else [[s - lo], [hi - s]]
            steady_ax.barh(y, s, color=color(i), hatch=hatch, xerr=err, capsize=3, ecolor="black")
            steady_ax.text(s if hi is None else max(s, hi), y, f" {s:.2f}" + ("" if lo is None else f" [{lo:.2f}-{hi:.2f}]"),
                           va="center", fontsize=7)
        first, comp = row["first_epoch_s"], row["compile_s"]
        if first is not None:
            first_ax.barh(y + 0.18, first, height=0.36, color=color(i), alpha=0.55, hatch=hatch)
            first_ax.text(first, y + 0.18, f" {first:.2f}", va="center", fontsize=7)
        if comp is not None:
            first_ax.barh(y - 0.18, comp, height=0.36, color=color(i), hatch=hatch, edgecolor="black", linewidth=0.6)
            first_ax.text(comp, y - 0.18, f" {comp:.2f}", va="center", fontsize=7)
    steady_ax.set_yticks(ys, _labels(items), fontsize=7)
    steady_ax.set_title("steady s/epoch (median; whiskers: 95 % CI)", fontsize=9)
    first_ax.set_title("first epoch s (light), compile s (outlined)", fontsize=9)
    steady_ax.set_xlabel("s")
    first_ax.set_xlabel("s")
    for ax in (steady_ax, first_ax):
        ax.grid(axis="x", alpha=0.3)
        ax.margins(x=0.25)
    return fig


def platforms(items: list[dict]) -> Figure | None:
    """The seed study's platform table as a chart: each row's whole training time (all the spec's
    epochs), its final test accuracy written on the bar."""
    items = [it for it in items if it["row"]["total_train_s"] is not None]
    if not items:
        return None
    items = sorted(items, key=lambda it: it["row"]["total_train_s"])
    fig = Figure(figsize=(9, _bar_height(len(items))), layout="constrained")
    ax = fig.add_subplot()
    ys = list(range(len(items)))[::-1]
    for y, it in zip(ys, items):
        row = it["row"]
        ax.barh(y, row["total_train_s"], color=color(it["index"]), hatch="//" if row["parity"] == "fail" else None)
        acc = row["final_test_accuracy"]
        ax.text(row["total_train_s"], y, f" {row['total_train_s']:.0f} s"
                + ("" if acc is None else f", final acc {100 * acc:.2f} %"), va="center", fontsize=7)
    ax.set_yticks(ys, [_wrap(it["label"] if it["row"]["hardware"] in it["label"]  # it names the hardware already
                             else f"{it['label']}\n{it['row']['hardware']}", 50) for it in items], fontsize=7)
    epochs = sorted({it["epochs"] for it in items})
    ax.set_xlabel(f"training time for {'/'.join(map(str, epochs))} epoch{'s' * (epochs != [1])}, s (median over runs)")
    ax.grid(axis="x", alpha=0.3)
    ax.margins(x=0.3)
    return fig


def spec_figures(items: list[dict], target) -> dict[str, Figure]:
    """The figures of one spec's block, by name; a figure with nothing to show is left out."""
    import matplotlib

    with matplotlib.rc_context(STYLE):
        figs = {"time-to-accuracy": time_to_accuracy(items, target), "epoch-times": epoch_times(items),
                "platforms": platforms(items)}
    return {k: v for k, v in figs.items() if v is not None}


def render(fig: Figure, fmt: str) -> bytes:
    """The figure as SVG or PNG bytes (no timestamps in the SVG: the same records give the same bytes)."""
    import matplotlib

    from matplotlib.text import Text

    from runner.report.tables import neutral

    for text in fig.findobj(Text):  # a NUL from a record would make the SVG invalid XML: no image at all
        text.set_text(neutral(text.get_text(), keep="\n"))  # labels wrap on purpose
    buf = io.BytesIO()
    with matplotlib.rc_context(STYLE):
        fig.savefig(buf, format=fmt, dpi=110, metadata={"Date": None} if fmt == "svg" else None)
    return buf.getvalue()
