"""The micro-benchmarks' tables: records of kind ensemble / per_sample_grads -> rows -> markdown, CSV or JSON.

    python -m runner ensemble ...                       # printed at the end of the run
    python -m runner ensemble --table results/          # from records already written (any machines)
    python -m runner per-sample-grads --table results/ --format csv
    python -m runner compare results/                   # after the training tables (markdown)

Pure functions over records (runner.micro writes them). A study record is one framework on one
machine; its rows are its operations: one per (N, op) for the ensemble, one per batch size for
per-sample gradients (vmap and loop side by side). Runs are not merged: two runs of the same study
are two sets of rows. Records that measured nothing (unavailable, failed) become a note under the
table with their reason. Text is escaped as `compare` escapes it.
"""

from __future__ import annotations


from runner.report.compare import hardware_label
from runner.report.tables import csv_text, json_text, markdown, markdown_cell, num

KINDS = ("ensemble", "per_sample_grads")
TITLES = {"ensemble": "ensemble: N models stepped together",
          "per_sample_grads": "per-sample gradients: vectorized vs a loop"}


def of_kind(records: list[dict], kind: str) -> list[dict]:
    return [r for r in records if r.get("kind", "train") == kind]


def _who(rec: dict) -> dict:
    fw, dev = rec["framework"], rec["device"]
    return {"framework": fw["name"], "version": fw.get("version"), "device": dev.get("kind") or dev.get("requested"),
            "hardware": hardware_label(rec), "platform": rec["platform"]["name"], "run_id": rec["run_id"]}


def _checks(rec: dict, size=None, against=None) -> list[dict]:
    return [c for c in rec["study"]["checks"]
            if (size is None or c.get("size") == size) and (against is None or c.get("against") == against)]


def _verdict(found: list[dict]) -> str | None:
    if not found:
        return None
    return "pass" if all(c["passed"] for c in found) else "FAIL"


def _worst(found: list[dict], of: str):
    values = [c["value"] for c in found if c.get("of") == of and c["value"] is not None]
    return max(values) if values else None


def ensemble_rows(records: list[dict]) -> list[dict]:
    """One row per (record, N, op), sorted by arch, batch, framework, device, N, op."""
    out = []
    for rec in of_kind(records, "ensemble"):
        if not rec["study"]:
            continue
        for op in rec["study"]["operations"]:
            mine = _checks(rec, size=op["size"])
            out.append({**_who(rec), "arch": rec["spec"]["model"], "batch": op.get("batch", rec["spec"]["batch_size"]),
                        "models": op["size"], "op": op["op"], "n": op["n"], "mean_s": op["mean_s"],
                        "std_s": op["std_s"], "min_s": op["min_s"], "max_s": op["max_s"], "first_s": op.get("first_s"),
                        "per_model_s": op.get("per_model_s"), "samples_per_s_total": op.get("samples_per_s_total"),
                        "samples_per_s_per_model": op.get("samples_per_s_per_model"),
                        "check": _verdict(mine), "logits_vs_alone": _worst(mine, "logits"),
                        "gradients_vs_alone": _worst(mine, "gradients")})
    return sorted(out, key=lambda r: (r["arch"], r["batch"], r["framework"], r["device"], r["run_id"], r["models"],
                                      r["op"] != "fprop"))


def per_sample_rows(records: list[dict]) -> list[dict]:
    """One row per (record, batch size): the vmap and loop timings, the speed-up, the checks."""
    out = []
    for rec in of_kind(records, "per_sample_grads"):
        if not rec["study"]:
            continue
        ops = {(o["op"], o["size"]): o for o in rec["study"]["operations"]}
        for b in sorted({size for _, size in ops}):
            vmap, loop = ops.get(("vmap", b)), ops.get(("loop", b))
            mine = _checks(rec, size=b)
            speedup = loop["mean_s"] / vmap["mean_s"] if vmap and loop and vmap["mean_s"] else None
            out.append({**_who(rec), "model": rec["spec"]["model"], "batch": b,
                        "vmap_mean_s": vmap and vmap["mean_s"], "vmap_std_s": vmap and vmap["std_s"],
                        "loop_mean_s": loop and loop["mean_s"], "loop_std_s": loop and loop["std_s"],
                        "n": vmap and vmap["n"], "speedup": speedup, "check": _verdict(mine),
                        "vs_loop": _worst(_checks(rec, size=b, against="loop"), "gradients"),
                        "vs_float64": _worst(_checks(rec, size=b, against="float64"), "gradients")})
    return sorted(out, key=lambda r: (r["model"], r["framework"], r["device"], r["run_id"], r["batch"]))


ROWS = {"ensemble": ensemble_rows, "per_sample_grads": per_sample_rows}


def notes(records: list[dict], kind: str) -> list[str]:
    """Lines under a table: each record's checks that no row shows (ensemble: model 0 vs float64)
    and every record that measured nothing, with its reason."""
    lines = []
    for rec in of_kind(records, kind):
        who = _who(rec)
        label = f"{who['framework']} {who['version'] or ''}".strip() + f" on {who['device']} ({who['hardware']})"
        if not rec["study"] or not rec["study"]["operations"]:
            lines.append(f"{label}: {rec['status']}: {rec['error'] or 'nothing measured'}")
            continue
        if rec["status"] != "ok":
            lines.append(f"{label}: {rec['status']}: {rec['error']} (the rows are what it measured)")
        apart = [c for c in rec["study"]["checks"] if c.get("size") is None]
        if apart:
            lines.append(f"{label}, {rec['spec']['model']}: " + "; ".join(
                f"{c['name']} {num(c['value'], '.1e')} (limit {c['limit']:.0e}) {'pass' if c['passed'] else 'FAIL'}"
                for c in apart))
    return lines


def _ms(seconds, fmt: str = ".2f") -> str:
    return num(None if seconds is None else 1e3 * seconds, fmt)


def _fw(row: dict) -> str:
    return f"{row['framework']} {row['version'] or ''}".strip()


def _check_cell(verdict, *values) -> str:
    if verdict is None:
        return "-"
    shown = " / ".join(num(v, ".1e") for v in values)
    return f"{verdict} ({shown})"


def _display_ensemble(row: dict) -> dict:
    return {"framework": _fw(row), "device": row["device"], "arch": row["arch"], "batch": str(row["batch"]),
            "N": str(row["models"]), "op": row["op"], "n": str(row["n"]), "mean ms": _ms(row["mean_s"]),
            "std ms": _ms(row["std_s"]), "min ms": _ms(row["min_s"]), "max ms": _ms(row["max_s"]),
            "1st call ms": _ms(row["first_s"], ".0f"), "per-model ms": _ms(row["per_model_s"]),
            "samples/s total": num(row["samples_per_s_total"], ",.0f"),
            "samples/s per model": num(row["samples_per_s_per_model"], ",.0f"),
            "check (logits / grads vs alone)": _check_cell(row["check"], row["logits_vs_alone"],
                                                           row["gradients_vs_alone"])}


def _display_per_sample(row: dict) -> dict:
    with_std = lambda mean, std: "-" if mean is None else f"{_ms(mean)} ± {_ms(std)}"  # noqa: E731
    return {"framework": _fw(row), "device": row["device"], "model": row["model"], "batch": str(row["batch"]),
            "n": num(row["n"], "d"), "vmap ms": with_std(row["vmap_mean_s"], row["vmap_std_s"]),
            "loop ms": with_std(row["loop_mean_s"], row["loop_std_s"]),
            "speedup": "-" if row["speedup"] is None else f"{row['speedup']:.1f}x",
            "max rel diff vs loop": num(row["vs_loop"], ".1e"), "vs float64": num(row["vs_float64"], ".1e"),
            "check": row["check"] or "-"}


DISPLAY = {"ensemble": _display_ensemble, "per_sample_grads": _display_per_sample}


def render(records: list[dict], kind: str, fmt: str = "markdown") -> str:
    """The table of one study kind: markdown (title, table, notes), CSV or JSON rows."""
    rows = ROWS[kind](records)
    if fmt == "json":
        return json_text(rows)
    if fmt == "csv":
        return csv_text(rows)
    cells = [DISPLAY[kind](r) for r in rows]
    text = f"### {TITLES[kind]}\n\n" + (markdown(cells) if cells else "(no operations measured)")
    lines = notes(records, kind)
    return text + ("\n\n" + "\n".join(f"- {markdown_cell(line)}" for line in lines) if lines else "")


def render_all(records: list[dict]) -> str:
    """Every study kind present in `records`, one markdown block each ('' if there is none)."""
    return "\n\n".join(render(records, kind) for kind in KINDS if of_kind(records, kind))
