"""Records from many machines -> one comparison table. Pure functions; I/O only in `load`.

    python -m runner compare results/ [more/ file.json ...] [--format markdown|csv|json]

Rows group records by spec_hash x platform x hardware x framework (version, backend options) x
device; repeats aggregate to a median with min-max. The parity column says whether the runs passed
the parity gate (runner.parity): a FAIL row did not train the spec's workload, so its timings are
not comparable with the others. Records with different spec hashes never share a row: each spec
gets a table of its own. Unreadable, foreign or future-schema files are skipped and counted.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections import Counter, defaultdict
from pathlib import Path

from runner.errors import RecordError
from runner.record import COMPLETED


def load(paths) -> tuple[list[dict], list[tuple[str, str]]]:
    """Records under `paths` (files or folders, searched recursively for *.json) and the skipped
    files with their reasons."""
    from runner import record

    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(p.rglob("*.json"))
        elif p.exists():
            files.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    records, skipped = [], []
    for f in files:
        try:
            records.append(record.read(f))
        except RecordError as e:
            skipped.append((str(f), str(e)))
    return records, skipped


def hardware_label(rec: dict) -> str:
    hw = rec["hardware"]
    cpu = f"{hw.get('cpu') or 'unknown CPU'} x{hw.get('cores') or '?'}"
    gpus = Counter(g.get("name", "GPU") for g in hw.get("gpus") or [])
    return " + ".join([cpu] + [f"{n}x {name}" for name, n in gpus.items()])


def spec_label(spec: dict) -> str:
    limits = "".join(f", {k.split('_')[1]} first {spec[k]}" for k in ("limit_train", "limit_test") if spec.get(k))
    return (f"{spec['model']} on {spec['dataset']}{limits}: {spec['epochs']} epoch{'s' * (spec['epochs'] != 1)}, batch {spec['batch_size']},"
            f" {spec['optimizer']} lr {spec['learning_rate']:g}, seed {spec['seed']}")


def options_label(rec: dict) -> str:
    options = rec["framework"].get("options") or {}
    return ", ".join(f"{k}={v}" for k, v in sorted(options.items()))


def group_key(rec: dict) -> tuple:
    fw, dev = rec["framework"], rec["device"]
    return (rec["spec_hash"], rec["platform"]["name"], hardware_label(rec), fw["name"], fw.get("version"),
            options_label(rec), dev.get("kind") or dev.get("requested"), dev.get("name"))


def parity_verdict(group: list[dict]) -> str:
    """fail if any run failed the gate, else error, else pass if any was checked, else unchecked."""
    found = {(r.get("parity") or {}).get("status") for r in group} - {None}
    for verdict in ("fail", "error", "pass"):
        if verdict in found:
            return verdict
    return "unchecked"


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def aggregate(group: list[dict]) -> dict:
    """One table row from the records of one group."""
    first = group[0]
    done = [r for r in group if r["status"] in COMPLETED]
    t = lambda key: [r["timing"][key] for r in done]  # noqa: E731
    m = lambda key: [r["metrics"][key] for r in done]  # noqa: E731
    steady = [v for v in t("steady_epoch_s") if v is not None]
    statuses = Counter(r["status"] for r in group)
    target = first["spec"].get("target_accuracy")
    return {
        "spec_hash": first["spec_hash"],
        "spec": spec_label(first["spec"]),
        "framework": first["framework"]["name"],
        "version": first["framework"].get("version"),
        "options": options_label(first),
        "device": group_key(first)[6],
        "parity": parity_verdict(group),
        "platform": first["platform"]["name"],
        "hardware": hardware_label(first),
        "runs": len(group),
        "completed": len(done),
        "statuses": dict(sorted(statuses.items())),
        "steady_epoch_s": _median(steady),
        "steady_epoch_s_min": min(steady) if steady else None,
        "steady_epoch_s_max": max(steady) if steady else None,
        "first_epoch_s": _median(t("first_epoch_s")),
        "compile_s": _median(t("compile_s")),
        "images_per_s": _median(m("images_per_s")),
        "final_test_accuracy": _median(m("final_test_accuracy")),
        "best_test_accuracy": _median(m("best_test_accuracy")),
        "time_to_target_s": _median(m("time_to_target_s")),
        "target_epoch": _median(m("target_epoch")),
        "target_accuracy": target,
        "below_target": bool(statuses.get("below_target")),
        # The seed-001 table's columns, from the same records:
        "best_train_accuracy": _median(m("best_train_accuracy")),
        "data_load_s": _median(t("data_load_s")),
        "total_train_s": _median(t("total_train_s")),
        "train_fn_s": _median(t("train_fn_s")),
        "mean_train_loss": _median(m("mean_train_loss")),
    }


def rows(records: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for rec in records:
        groups[group_key(rec)].append(rec)
    out = [aggregate(g) for g in groups.values()]
    # Fastest first within a spec; rows without timings last.
    return sorted(out, key=lambda r: (r["spec_hash"], r["steady_epoch_s"] is None, r["steady_epoch_s"] or 0,
                                      r["framework"], r["device"]))


def _num(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _display(row: dict) -> dict:
    steady = _num(row["steady_epoch_s"], ".2f")
    if row["completed"] > 1 and row["steady_epoch_s"] is not None:
        steady += f" [{row['steady_epoch_s_min']:.2f}-{row['steady_epoch_s_max']:.2f}]"
    runs = f"{row['completed']}/{row['runs']}"
    not_ok = {k: v for k, v in row["statuses"].items() if k != "ok"}
    if not_ok:
        runs += " (" + ", ".join(f"{v} {k}" for k, v in not_ok.items()) + ")"
    target = row["target_accuracy"]
    ttt = "-" if target is None else (
        "not reached" if row["time_to_target_s"] is None else
        f"{row['time_to_target_s']:.1f} (ep {row['target_epoch']:g})")
    pct = lambda v: _num(None if v is None else 100 * v, ".2f")  # noqa: E731
    options = f" ({row['options']})" if row["options"] else ""
    parity = {"fail": "FAIL: not comparable", "error": "error"}.get(row["parity"], row["parity"])
    return {
        "framework": f"{row['framework']} {row['version'] or ''}".strip() + options,
        "device": row["device"], "platform": row["platform"], "hardware": row["hardware"],
        "parity": parity, "runs ok": runs, "s/epoch (median [min-max])": steady,
        "1st epoch s": _num(row["first_epoch_s"], ".2f"), "compile s": _num(row["compile_s"], ".2f"),
        "img/s": _num(row["images_per_s"], ",.0f"),
        "final acc %": pct(row["final_test_accuracy"]), "best acc %": pct(row["best_test_accuracy"]),
        ("s to target" if target is None else f"s to {100 * target:g}%"): ttt,
    }


def render(table_rows: list[dict], fmt: str = "markdown") -> str:
    if fmt == "json":
        return json.dumps(table_rows, indent=1)
    if fmt == "csv":
        buf = io.StringIO()
        if table_rows:
            writer = csv.DictWriter(buf, fieldnames=list(table_rows[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows({**r, "statuses": json.dumps(r["statuses"])} for r in table_rows)
        return buf.getvalue()
    from tabulate import tabulate

    blocks = []
    for spec_hash in dict.fromkeys(r["spec_hash"] for r in table_rows):
        mine = [r for r in table_rows if r["spec_hash"] == spec_hash]
        blocks.append(f"### {mine[0]['spec']} (spec {spec_hash[:12]})\n\n"
                      + tabulate([_display(r) for r in mine], headers="keys", tablefmt="pipe",
                                 disable_numparse=True))
    return "\n\n".join(blocks) if blocks else "(no records)"
