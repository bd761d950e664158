"""The sweep table: per sweep and framework, one row per grid point. Pure functions over records.

    python -m runner sweep ...                                   # printed at the end
    python -m runner compare results/sweep [--id sweep-1a2b3c4d5e6f] [--format markdown|csv|json]

Columns (the seed study's, from the same records; each the median over the point's completed runs):
the point's values; best training accuracy; best test accuracy; data s, the total time the training
loop waited for batches (sum of timing.epoch_data_s, loader mode only; "resident" where the data sits
on the device); train s, the total epoch training time (sum of epoch_train_s); train fn s, the whole
training function (train_fn_s: training, evaluation and the loop between); mean loss (the mean of the
per-epoch training losses); s/epoch, the steady epoch (median of epochs 2..); s to target with the
epoch it was reached; img/s; parity, the gate's verdict over the point's runs (compare's: fail if any
run failed it); runs (completed/all, with the other statuses).

A grid that varies a field that changes the math (every spec field but eval_batch_size and
target_accuracy; backend options never do) gets a note: its points do not do the same work per epoch,
so time to target is the comparison that means something.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict

from runner.records import COMPLETED
from runner.report.compare import parity_verdict
from runner.report.tables import csv_text, json_text, markdown, markdown_cell, median, num, time_to_target

# Spec fields a sweep may vary without changing what training computes.
SAME_MATH = ("eval_batch_size", "target_accuracy")
RESIDENT = "resident"


def sweep_records(recs: list[dict], sweep_id: str | None = None) -> list[dict]:
    return [r for r in recs if (r.get("experiment") or {}).get("kind") == "sweep"
            and (sweep_id is None or r["experiment"]["id"] == sweep_id)]


def _data_s(rec: dict):
    waits = rec["timing"].get("epoch_data_s")
    return None if waits is None else sum(waits)


def _row(group: list[dict]) -> dict:
    first, done = group[0], [r for r in group if r["status"] in COMPLETED]
    m = lambda key: median(r["metrics"].get(key) for r in done)  # noqa: E731
    t = lambda key: median(r["timing"].get(key) for r in done)  # noqa: E731
    waits = [_data_s(r) for r in done]
    return {
        "sweep": first["experiment"]["id"],
        "framework": first["framework"]["name"],
        "version": first["framework"].get("version"),
        "device": first["device"].get("kind") or first["device"].get("requested"),
        "index": first["experiment"]["index"],
        "size": first["experiment"]["size"],
        "point": dict(first["experiment"]["point"]),
        "spec_hash": first["spec_hash"],
        "best_train_accuracy": m("best_train_accuracy"),
        "best_test_accuracy": m("best_test_accuracy"),
        # None: no completed run; RESIDENT: every run had its data on the device (no loader to wait for)
        "data_s": (RESIDENT if done and all(w is None for w in waits) else median(waits)),
        "train_s": median(sum(r["timing"]["epoch_train_s"]) for r in done),
        "train_fn_s": t("train_fn_s"),
        "mean_train_loss": m("mean_train_loss"),
        "steady_epoch_s": t("steady_epoch_s"),
        "time_to_target_s": m("time_to_target_s"),
        "target_epoch": m("target_epoch"),
        "target_reached": sum(r["metrics"].get("time_to_target_s") is not None for r in done),
        "target_accuracy": first["spec"].get("target_accuracy"),
        "images_per_s": m("images_per_s"),
        "parity": parity_verdict(group),
        "n": len(done),
        "runs": len(group),
        "statuses": dict(sorted(Counter(r["status"] for r in group).items())),
    }


def rows(recs: list[dict], sweep_id: str | None = None) -> list[dict]:
    """One row per sweep x framework x point (x device), in sweep, framework, grid order."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for rec in sweep_records(recs, sweep_id):
        exp = rec["experiment"]
        groups[(exp["id"], rec["framework"]["name"], rec["device"].get("kind") or rec["device"].get("requested"),
                json.dumps(exp["point"], sort_keys=True), rec["spec_hash"])].append(rec)
    table = [_row(g) for g in groups.values()]
    return sorted(table, key=lambda r: (r["sweep"], r["framework"], r["device"], r["index"] if r["index"] is not None
                                        else -1))


def axes(table: list[dict]) -> list[str]:
    """The axis names of these rows, in the order the points list them."""
    return list(dict.fromkeys(k for r in table for k in r["point"]))


def notes(table: list[dict]) -> list[str]:
    """The note lines of one sweep's rows: which axes change the math, and what to compare then."""
    changing = [a for a in axes(table) if "." not in a and a not in SAME_MATH]
    if not changing:
        return []
    verb = "changes" if len(changing) == 1 else "change"
    targets = {r["target_accuracy"] for r in table}
    target = targets.pop() if len(targets) == 1 else None
    compare = (f"compare time to target ({100 * target:g} %)" if target is not None else
               "compare accuracy; a time to target needs --target-accuracy")
    return [f"{', '.join(changing)} {verb} the math: per-epoch times are not the same work; {compare}"]


def _value(value) -> str:
    return format(value, "g") if isinstance(value, float) else str(value)


def _cells(row: dict, names: list[str]) -> dict:
    pct = lambda v: num(None if v is None else 100 * v, ".2f")  # noqa: E731
    target = row["target_accuracy"]
    if target is None or (row["time_to_target_s"] is None and not row["n"]):
        ttt = "-"
    else:
        ttt = time_to_target(row["time_to_target_s"], row["target_epoch"], row["target_reached"], row["n"])
    runs = f"{row['n']}/{row['runs']}"
    others = {k: v for k, v in row["statuses"].items() if k not in COMPLETED}
    if others:
        runs += " (" + ", ".join(f"{v} {k}" for k, v in others.items()) + ")"
    data = row["data_s"] if row["data_s"] == RESIDENT else num(row["data_s"], ".2f")
    return {
        "framework": f"{row['framework']} {row['version'] or ''}".strip() + f" ({row['device']})",
        **{name: _value(row["point"][name]) if name in row["point"] else "-" for name in names},
        "best train acc %": pct(row["best_train_accuracy"]),
        "best test acc %": pct(row["best_test_accuracy"]),
        "data s": data,
        "train s": num(row["train_s"], ".2f"),
        "train fn s": num(row["train_fn_s"], ".2f"),
        "mean loss": num(row["mean_train_loss"], ".4f"),
        "s/epoch": num(row["steady_epoch_s"], ".3f"),
        ("s to target" if target is None else f"s to {100 * target:g}% (epoch)"): ttt,
        "img/s": num(row["images_per_s"], ",.0f"),
        "parity": row["parity"],
        "runs ok": runs,
    }


def render(table: list[dict], fmt: str = "markdown") -> str:
    """markdown (one table per sweep, its notes below), csv (the point's values as columns) or json."""
    if fmt == "json":
        return json_text(table)
    if fmt == "csv":
        if not table:
            return ""
        base = [k for k in table[0] if k != "point"]
        at = base.index("size") + 1
        flat = [{**{k: v for k, v in r.items() if k != "point"}, **r["point"], "statuses": json.dumps(r["statuses"])}
                for r in table]
        return csv_text(flat, base[:at] + axes(table) + base[at:])
    blocks = []
    for sweep in dict.fromkeys(r["sweep"] for r in table):
        mine = [r for r in table if r["sweep"] == sweep]
        names = axes(mine)
        head = f"### {markdown_cell(sweep)}: {markdown_cell(' x '.join(names))} ({mine[0]['size']} points)"
        body = markdown([_cells(r, names) for r in mine])
        blocks.append("\n\n".join([head, body, *(f"note: {markdown_cell(n)}" for n in notes(mine))]))
    return "\n\n".join(blocks) if blocks else "(no sweep records)"
