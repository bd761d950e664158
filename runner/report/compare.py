"""Records from many machines -> one comparison table. Pure functions; I/O only in `load`.

    python -m runner compare results/ [more/ file.json ...] [--format markdown|csv|json]
                             [--baseline framework=torch,device=cpu] [--noisy-cv 0.05]

Rows group records by spec_hash x platform x hardware x framework (version, backend options) x
device. The statistical unit is the run (runner.measure.stats): a row's steady s/epoch is the median over its
completed runs with a 95 % bootstrap confidence interval, its CV and n; one run gets no interval and
the notes say so. A row is marked noisy when its CV is above --noisy-cv, and below target when its
median best test accuracy misses the spec's target (the same statistic as its "best acc %" column;
runs that missed it one by one are counted in "runs ok", and "s to target" says how many reached it).
Runs the host disturbed (runner.measure.noise: host_noise verdict noisy, other processes' CPU share, the
load average or other GPU processes beyond their limits) are left out of a row's timings when the row
has quiet runs, and its notes say how many and the worst run's reason ("noisy host: other processes
used 61 % of the CPU"); a row with noisy runs only keeps their timings, is marked, and is ranked after
the quiet rows of its spec. The parity column says whether the runs passed the parity gate (runner.parity.gate): a FAIL row did not
train the spec's workload, so its timings are not comparable with the others. With --baseline, each
spec's table gets the ratio of every row's steady s/epoch to the baseline row's (> 1: slower), with a
bootstrap CI that resamples both rows' runs. Records with different spec hashes never share a row:
each spec gets a table of its own.

Only training records (kind "train") make rows. The studies' records (kind ensemble /
per_sample_grads: runner.micro) time operations, not epochs, and have no training numbers:
`training()` sets them aside, and runner.report.micro makes their own tables (`compare` prints
them after the training tables in markdown; for CSV / JSON it names the command that does).

Bad input never stops the table: a file that is not a good record (runner.records.read says why)
and a second copy of a run already read (same run_id) are skipped, each with one warning line that
names it. Text from records is escaped for the format it lands in: markdown cells get HTML entities
for | \\ < > & and spaces for line breaks and control characters; CSV cells that a spreadsheet would
run as a formula (= + - @ tab CR) get a leading '; JSON output is strict (no NaN / Infinity).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict

from runner.measure import noise, stats
from runner.errors import UserError
from runner.records import COMPLETED
from runner.report.tables import csv_text, json_text, markdown, markdown_cell, median, num, time_to_target

NOISY_CV = 0.05  # CV of steady s/epoch over runs above which a row is marked noisy
BASELINE_KEYS = ("framework", "device", "platform", "hardware", "version", "options", "devices")


def hardware_label(rec: dict) -> str:
    """"AMD EPYC x2 + 2x NVIDIA H100": CPU brand x physical cores, then the GPUs NVML read (none
    listed when it could not read them: gpus is null)."""
    hw = rec["hardware"]
    cpu = hw.get("cpu") or {}
    label = f"{cpu.get('brand') or 'unknown CPU'} x{cpu.get('physical_cores') or '?'}"
    gpus = Counter(str(g.get("name") or "GPU") for g in hw.get("gpus") or [])
    return " + ".join([label] + [f"{n}x {name}" for name, n in gpus.items()])


def spec_label(spec: dict) -> str:
    limits = "".join(f", {k.split('_')[1]} first {spec[k]}" for k in ("limit_train", "limit_test") if spec.get(k))
    return (f"{spec['model']} on {spec['dataset']}{limits}: {spec['epochs']} epoch{'s' * (spec['epochs'] != 1)}, batch {spec['batch_size']},"
            f" {spec['optimizer']} lr {spec['learning_rate']:g}, seed {spec['seed']}")


def options_label(rec: dict) -> str:
    options = rec["framework"].get("options") or {}  # the device count shows in the device column
    if not isinstance(options, dict):  # the schema leaves framework's other keys open
        return str(options)
    hidden = SCALE_OPTIONS + (RESIDENT_OPTIONS if options.get("loader", "resident") == "resident" else ())
    return ", ".join(f"{k}={v}" for k, v in sorted(options.items())
                     if k not in hidden and IMPLICIT_DEFAULTS.get(k) != v)


def group_key(rec: dict) -> tuple:
    fw, dev = rec["framework"], rec["device"]
    return (rec["spec_hash"], rec["platform"]["name"], hardware_label(rec), fw["name"], fw.get("version"),
            options_label(rec), dev.get("kind") or dev.get("requested"), dev.get("name"), *parallel_key(rec))


def parallel_key(rec: dict) -> tuple[int, int]:
    """(world size, devices): a data-parallel run never shares a row with a one-device run."""
    par = rec.get("parallel") or {}
    return par.get("world_size", 1), par.get("devices", 1)


# Options that choose how many devices, not how the framework runs: shown as the device count, not as
# options, so a data-parallel row and its 1-device row differ only in it.
SCALE_OPTIONS = ("devices",)
# The default data path (loader=resident, workers=0: the data on the device) is how every record
# before loader mode ran: shown as no option, so old and new resident runs share a row; a loader run
# (runner.backends.loaders) shows its loader and workers.
RESIDENT_OPTIONS = ("loader", "workers")
# torch's step=eager is how every torch record before step modes ran: shown as no option, so those
# rows merge; step=graph and step=compile show (runner.backends.torch_steps).
IMPLICIT_DEFAULTS = {"step": "eager"}


def _scale_key(row: dict) -> tuple:
    """What a data-parallel row shares with its one-device row: all but the device count."""
    return (row["spec_hash"], row["platform"], row["hardware"], row["framework"], row["version"], row["options"],
            row["device"])


def apply_scaling(table: list[dict]) -> None:
    """speedup = the 1-device row's steady s/epoch / this row's; efficiency = speedup / devices. Only
    where both rows exist and have timings (same spec, machine, framework and version, device kind)."""
    single = {_scale_key(r): r for r in table if r["devices"] == 1 and r["steady_epoch_s"] is not None}
    for row in table:
        base = single.get(_scale_key(row))
        if row["devices"] > 1 and base is not None and row["steady_epoch_s"]:
            row["speedup"] = base["steady_epoch_s"] / row["steady_epoch_s"]
            row["efficiency"] = row["speedup"] / row["devices"]


def _orphan(rec: dict) -> bool:
    """A run that ended before its framework could say its version and device: killed in start-up,
    or the record the parent wrote for a child that died without writing one."""
    return rec["framework"].get("version") is None and rec["device"].get("kind") is None


def _siblings(rec: dict) -> tuple:
    return (rec["spec_hash"], rec["platform"]["name"], hardware_label(rec), rec["framework"]["name"],
            options_label(rec), rec["device"].get("requested"))


def _adopt_orphans(groups: dict[tuple, list[dict]]) -> None:
    """An orphan run joins the row of the runs it was a repeat of (same spec, platform, hardware,
    framework, options and requested device), so it counts against them ("runs ok 2/3") instead of
    standing in a row of its own; with no such row, or more than one, it keeps its own."""
    known: dict[tuple, list[tuple]] = defaultdict(list)
    for key, group in groups.items():
        if not _orphan(group[0]):
            known[_siblings(group[0])].append(key)
    for key in [k for k, g in groups.items() if _orphan(g[0])]:
        homes = known.get(_siblings(groups[key][0]), [])
        if len(homes) == 1:
            groups[homes[0]].extend(groups.pop(key))


def parity_verdict(group: list[dict]) -> str:
    """fail if any run failed the gate, else error, else pass if any was checked, else unchecked."""
    found = {(r.get("parity") or {}).get("status") for r in group} - {None}
    for verdict in ("fail", "error", "pass"):
        if verdict in found:
            return verdict
    return "unchecked"


def _timed(group: list[dict]) -> list[dict]:
    """The completed runs whose times make the row: those the host did not disturb, when one of them
    has a steady time; else all of them (a row of noisy runs only: marked, ranked after quiet rows)."""
    done = [r for r in group if r["status"] in COMPLETED]
    quiet = [r for r in done if not noise.is_noisy(r)]
    return quiet if any(r["timing"]["steady_epoch_s"] is not None for r in quiet) else done


def _host_noise(group: list[dict]) -> dict:
    """The row's host-noise fields: its noisy runs, how many were left out of its times, and the
    worst run's first reason."""
    noisy = sum(noise.is_noisy(r) for r in group)
    done_noisy = sum(noise.is_noisy(r) for r in group if r["status"] in COMPLETED)
    timed_noisy = sum(noise.is_noisy(r) for r in _timed(group))
    return {"noisy_host_runs": noisy, "noisy_host_left_out": done_noisy - timed_noisy,
            "noisy_host_only": timed_noisy > 0, "noisy_host": noise.worst_reason(group)}


def _steady(group: list[dict]) -> list[float]:
    """The row's sample: one steady s/epoch per completed run that has one (quiet runs: `_timed`)."""
    return [r["timing"]["steady_epoch_s"] for r in _timed(group) if r["timing"]["steady_epoch_s"] is not None]


def _below_target(done: list[dict], best, target) -> bool:
    """The row's median best accuracy misses the target; without accuracies or a target, the
    majority of its completed runs' own verdicts (the worker's below_target status)."""
    if target is not None and best is not None:
        return best < target
    return 2 * sum(r["status"] == "below_target" for r in done) > len(done)


def aggregate(group: list[dict], noisy_cv: float = NOISY_CV) -> dict:
    """One table row from the records of one group."""
    first = group[0]
    done = [r for r in group if r["status"] in COMPLETED]
    timed = _timed(group)
    t = lambda key: [r["timing"][key] for r in timed]  # noqa: E731
    m = lambda key: [r["metrics"][key] for r in done]  # noqa: E731
    steady = stats.summary(_steady(group))
    statuses = Counter(r["status"] for r in group)
    target = first["spec"].get("target_accuracy")
    best = median(m("best_test_accuracy"))
    energy = [r for r in done if (r.get("energy") or {}).get("joules") is not None]
    resources = [r.get("resources") or {} for r in done]
    return {
        "spec_hash": first["spec_hash"],
        "spec": spec_label(first["spec"]),
        "framework": first["framework"]["name"],
        "version": first["framework"].get("version"),
        "options": options_label(first),
        "device": group_key(first)[6],
        "world_size": parallel_key(first)[0],
        "devices": parallel_key(first)[1],
        "speedup": None,  # set by apply_scaling, against the 1-device row
        "efficiency": None,
        "parity": parity_verdict(group),
        "platform": first["platform"]["name"],
        "hardware": hardware_label(first),
        "runs": len(group),
        "completed": len(done),
        "statuses": dict(sorted(statuses.items())),
        "n": steady["n"],
        "steady_epoch_s": steady["median"],
        "steady_epoch_s_ci_low": steady["ci_low"],
        "steady_epoch_s_ci_high": steady["ci_high"],
        "steady_epoch_s_cv": steady["cv"],
        "steady_epoch_s_min": steady["min"],
        "steady_epoch_s_max": steady["max"],
        "noisy": steady["cv"] is not None and steady["cv"] > noisy_cv,
        "first_epoch_s": median(t("first_epoch_s")),
        "compile_s": median(t("compile_s")),
        "images_per_s": median(r["metrics"]["images_per_s"] for r in timed),
        "final_test_accuracy": median(m("final_test_accuracy")),
        "best_test_accuracy": best,
        "time_to_target_s": median(m("time_to_target_s")),  # over the runs that reached the target
        "target_epoch": median(m("target_epoch")),
        "target_reached": sum(v is not None for v in m("time_to_target_s")),
        "target_accuracy": target,
        "below_target": _below_target(done, best, target),
        "energy_j": median(r["energy"]["joules"] for r in energy),
        "energy_runs": len(energy),
        "energy_method": " | ".join(dict.fromkeys(r["energy"]["method"] for r in energy)) or None,
        "peak_rss_bytes": median((res.get("host") or {}).get("peak_rss_bytes") for res in resources),
        "device_peak_memory_bytes": median(res.get("device_peak_memory_bytes") for res in resources),
        "baseline": False,  # the --baseline fields, set by rows()
        "ratio_to_baseline": None,
        "ratio_ci_low": None,
        "ratio_ci_high": None,
        # The seed-001 table's columns, from the same records:
        "best_train_accuracy": median(m("best_train_accuracy")),
        "data_load_s": median(t("data_load_s")),
        "total_train_s": median(t("total_train_s")),
        "train_fn_s": median(t("train_fn_s")),
        "mean_train_loss": median(m("mean_train_loss")),
        **_host_noise(group),
        **efficiency_fields(done),
    }


def parse_baseline(text: str) -> dict[str, str]:
    """"framework=torch,device=cpu" -> {"framework": "torch", "device": "cpu"}. An options value may
    hold commas itself (options=jit_compile=off,loop=epoch): pieces after it that are not one of
    BASELINE_KEYS continue it."""
    criteria: dict[str, str] = {}
    for piece in text.split(","):
        key, sep, value = piece.partition("=")
        key = key.strip()
        if sep and key in BASELINE_KEYS and key not in criteria:
            criteria[key] = value.strip()
        elif list(criteria)[-1:] == ["options"] and piece.strip():
            criteria["options"] += "," + piece
        else:
            problem = f"{key} given twice" if key in criteria else f"{piece.strip()!r} is not KEY=VALUE"
            raise UserError(f"--baseline {text!r}: {problem}; expected KEY=VALUE[,KEY=VALUE...] with KEY one of"
                            f" {', '.join(BASELINE_KEYS)}")
    return criteria


def _pairs(options: str | None) -> frozenset:
    return frozenset(p.strip() for p in (options or "").split(",") if p.strip())


def matches(row: dict, criteria: dict[str, str]) -> bool:
    """Every KEY=VALUE holds, case-insensitively: options as a set of pairs in any order, hardware as a
    substring of the label (it is long), the other keys exactly."""
    for key, want in criteria.items():
        have, want = str(row[key] or "").casefold(), want.casefold()
        if key == "options":
            ok = _pairs(have) == _pairs(want)
        elif key == "hardware":
            ok = want in have
        else:
            ok = have == want
        if not ok:
            return False
    return True


def _row_label(row: dict) -> str:
    """The row as --baseline keys, to copy from."""
    return ",".join(f"{k}={row[k] or ''}".replace(", ", ",") for k in BASELINE_KEYS if row[k] or k != "options")


def _apply_baseline(table: list[dict], samples: list[list[float]], text: str) -> None:
    """Set the baseline fields: in each spec's block, the row matching every pair is the baseline."""
    criteria = parse_baseline(text)
    blocks: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(table):
        blocks[row["spec_hash"]].append(i)
    found = False
    for spec_hash, members in blocks.items():
        hits = [i for i in members if matches(table[i], criteria)]
        if len(hits) > 1:
            raise UserError(f"--baseline {text!r} matches {len(hits)} rows of spec {spec_hash[:12]}: "
                            + "; ".join(_row_label(table[i]) for i in hits) + "; add keys to pick one")
        if not hits:
            continue
        found, base = True, hits[0]
        for i in members:
            r = stats.ratio(samples[i], samples[base])
            table[i].update(baseline=i == base, ratio_to_baseline=r["ratio"],
                            ratio_ci_low=None if i == base else r["ci_low"],
                            ratio_ci_high=None if i == base else r["ci_high"])
    if not found:
        raise UserError(f"--baseline {text!r} matches no row; the rows are: "
                        + "; ".join(dict.fromkeys(_row_label(r) for r in table)))


def training(records: list[dict]) -> list[dict]:
    """The training runs among `records` (a study record has no epochs: it is never a row here)."""
    return [r for r in records if r.get("kind", "train") == "train"]


# What tells rows apart, as a row shows it: the group key less the device's name (rows that differ only
# in it share a label, and the report gives them their runs together). One definition, used by the
# table and by the report that matches runs to rows.
ROW_KEY = ("spec_hash", "platform", "hardware", "framework", "version", "options", "device", "world_size",
           "devices")


def row_key(row: dict) -> tuple:
    return tuple(row[k] for k in ROW_KEY)


def grouped(records: list[dict], baseline: str | None = None,
            noisy_cv: float = NOISY_CV) -> list[tuple[dict, list[dict]]]:
    """(row, its runs) for each group of training records (others are set aside), fastest first within
    a spec; `baseline` is --baseline's KEY=VALUE text."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for rec in training(records):
        groups[group_key(rec)].append(rec)
    _adopt_orphans(groups)
    pairs = [(aggregate(g, noisy_cv), g) for g in groups.values()]
    apply_scaling([row for row, _ in pairs])
    if baseline is not None:
        _apply_baseline([row for row, _ in pairs], [_steady(g) for g in groups.values()], baseline)
    # Rows without timings last; before them, rows timed from noisy runs only, never among quiet ones.
    return sorted(pairs, key=lambda p: (p[0]["spec_hash"], p[0]["steady_epoch_s"] is None,
                                        p[0]["noisy_host_only"], p[0]["steady_epoch_s"] or 0,
                                        p[0]["framework"], p[0]["device"], p[0]["devices"]))


def rows(records: list[dict], baseline: str | None = None, noisy_cv: float = NOISY_CV) -> list[dict]:
    """One row per group of training records, as `grouped` orders them."""
    return [row for row, _ in grouped(records, baseline, noisy_cv)]


def _with_ci(value, low, high) -> str:
    """"7.58 [7.10-8.02]"; the bare value where there is no interval."""
    text = num(value, ".2f")
    return text if low is None or value is None else f"{text} [{low:.2f}-{high:.2f}]"


def _notes(row: dict) -> str:
    notes = []
    if row["n"] == 1:
        notes.append("n=1: no CI")
    elif row["n"] == 0 and row["completed"]:
        notes.append("no steady epochs")
    if row["noisy"]:
        notes.append(f"noisy (CV {100 * row['steady_epoch_s_cv']:.1f} %)")
    if row["noisy_host"]:
        notes.append(_noisy_host_note(row))
    if row["below_target"]:
        target = row["target_accuracy"]
        notes.append("below target" + ("" if target is None else f" {100 * target:g} %"))
    return "; ".join(notes)


def _noisy_host_note(row: dict) -> str:
    """"noisy host: other processes used 61 % of the CPU (limit 10 %); 1 of 4 runs left out"."""
    k = row["noisy_host_left_out"]
    how = ("; only noisy runs, ranked after quiet rows" if row["noisy_host_only"] else
           f"; {k} of {row['runs']} runs left out of the times" if k else "")  # else: noisy runs that failed
    return f"noisy host: {row['noisy_host']}{how}"


def _scaling(row: dict) -> str:
    """"1.84x, 92 %" against the 1-device row; "1 device" for that row."""
    if row["speedup"] is None:
        return "1 device" if row["devices"] == 1 else "-"
    return f"{row['speedup']:.2f}x, {100 * row['efficiency']:.0f} %"


def _display(row: dict, with_baseline: bool, with_energy: bool, with_scaling: bool = False,
             columns: tuple = ()) -> dict:
    runs = f"{row['completed']}/{row['runs']}"
    not_ok = {k: v for k, v in row["statuses"].items() if k != "ok"}
    if not_ok:
        runs += " (" + ", ".join(f"{v} {k}" for k, v in not_ok.items()) + ")"
    target = row["target_accuracy"]
    ttt = "-" if target is None else time_to_target(row["time_to_target_s"], row["target_epoch"],
                                                    row["target_reached"], row["completed"])
    pct = lambda v: num(None if v is None else 100 * v, ".2f")  # noqa: E731
    options = f" ({row['options']})" if row["options"] else ""
    parity = {"fail": "FAIL: not comparable", "error": "error"}.get(row["parity"], row["parity"])
    out = {
        "framework": f"{row['framework']} {row['version'] or ''}".strip() + options,
        "device": row["device"] + (f" x{row['devices']}" if row["devices"] > 1 else ""),
        "platform": row["platform"], "hardware": row["hardware"],
        "parity": parity, "runs ok": runs, "n": str(row["n"]),
        "s/epoch (median [95% CI])": _with_ci(row["steady_epoch_s"], row["steady_epoch_s_ci_low"],
                                              row["steady_epoch_s_ci_high"]),
        "CV %": num(None if row["steady_epoch_s_cv"] is None else 100 * row["steady_epoch_s_cv"], ".1f"),
    }
    if with_baseline:
        out["s/epoch × baseline"] = (
            ("1.00 (baseline)" if row["steady_epoch_s"] is not None else "baseline (no time)") if row["baseline"]
            else _with_ci(row["ratio_to_baseline"], row["ratio_ci_low"], row["ratio_ci_high"]))
    out |= {
        "1st epoch s": num(row["first_epoch_s"], ".2f"), "compile s": num(row["compile_s"], ".2f"),
        "img/s": num(row["images_per_s"], ",.0f"),
        "final acc %": pct(row["final_test_accuracy"]), "best acc %": pct(row["best_test_accuracy"]),
        ("s to target" if target is None else f"s to {100 * target:g}%"): ttt,
    }
    if with_scaling:
        out["scaling (speed-up, efficiency)"] = _scaling(row)
    if with_energy:
        out["train energy J"] = ("-" if row["energy_j"] is None
                                 else f"{row['energy_j']:,.0f} ({row['energy_method']})")
    out |= {title: cell(row) for title, cell in (EXTRA_COLUMNS[c] for c in columns)}
    out["notes"] = _notes(row)
    return out


def render(table_rows: list[dict], fmt: str = "markdown", columns: tuple = ()) -> str:
    """The rows as markdown (one table per spec; `columns`: EXTRA_COLUMNS keys the reader asked
    for), or CSV / JSON with every field."""
    if fmt == "json":
        return json_text(table_rows)
    if fmt == "csv":
        return csv_text([{**r, "statuses": json.dumps(r["statuses"])} for r in table_rows])
    blocks = []
    # Optional columns are the same in every block: a block without the baseline shows "-".
    with_baseline = any(r["baseline"] for r in table_rows)
    with_energy = any(r["energy_j"] is not None for r in table_rows)
    with_scaling = any(r["speedup"] is not None for r in table_rows)
    for spec_hash in dict.fromkeys(r["spec_hash"] for r in table_rows):
        mine = [r for r in table_rows if r["spec_hash"] == spec_hash]
        cells = [_display(r, with_baseline, with_energy, with_scaling, columns) for r in mine]
        blocks.append(f"### {markdown_cell(mine[0]['spec'])} (spec {spec_hash[:12]})\n\n" + markdown(cells))
    return "\n\n".join(blocks) if blocks else "(no records)"


# ---- efficiency (runner.records.efficiency): fields of every row, columns on request --------------

EFFICIENCY_FIELDS = ("flops_per_image", "achieved_flops_per_s", "peak_flops_per_s", "percent_of_peak",
                     "joules_per_image", "joules_to_target")


def efficiency_fields(done: list[dict]) -> dict:
    """The median over a row's completed runs of each efficiency number, and the peak's source."""
    blocks = [r.get("efficiency") or {} for r in done]
    out = {key: median(b.get(key) for b in blocks) for key in EFFICIENCY_FIELDS}
    out["peak_source"] = next((b["peak_source"] for b in blocks if b.get("peak_source")), None)
    return out


def _scaled(key: str, factor: float, fmt: str):
    return lambda row: num(None if row[key] is None else row[key] * factor, fmt)


# --columns KEY: (markdown header, cell). CSV and JSON always carry the fields above.
EXTRA_COLUMNS = {
    "gflops": ("GFLOP/s", _scaled("achieved_flops_per_s", 1e-9, ",.2f")),
    "peak": ("% of peak FP32", _scaled("percent_of_peak", 1, ".2f")),
    "flops": ("MFLOP/image", _scaled("flops_per_image", 1e-6, ",.2f")),
    "j_image": ("J/image", _scaled("joules_per_image", 1, ".4g")),
    "j_target": ("J to target", _scaled("joules_to_target", 1, ",.0f")),
}


def parse_columns(text: str | None) -> tuple[str, ...]:
    """"gflops,peak" -> ("gflops", "peak"); "all" -> every key; an unknown key is a UserError."""
    if not text:
        return ()
    keys = tuple(EXTRA_COLUMNS) if text.strip() == "all" else tuple(k.strip() for k in text.split(",") if k.strip())
    wrong = [k for k in keys if k not in EXTRA_COLUMNS]
    if wrong:
        raise UserError(f"--columns: unknown {', '.join(wrong)} (choose from {', '.join(EXTRA_COLUMNS)}, or all)")
    return keys
