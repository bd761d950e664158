"""What the report shows, as plain data: pure functions over records and compare's rows.

    python -m runner report results/ [-o report.html]      # page.py renders these, plots.py draws them

The table rows come from runner.report.compare (`rows`, the same aggregation `compare` prints); this
module only adds what a page shows beyond the table: each row's runs (matched by compare's group
key), its time-to-accuracy curve, resources, energy, cost, the machines' probe summaries and each
record's command and commit.
"""

from __future__ import annotations

import statistics
from collections import defaultdict

from runner.records import COMPLETED
from runner.report import compare
from runner.report.prices import FREE
from runner.report.tables import median


def runs_by_row(records: list[dict], rows: list[dict]) -> list[list[dict]]:
    """Each row's records, grouped exactly as compare groups them (orphan repeats included). Rows that
    differ only in the device's name, which a row does not show, share their runs here (and their
    label)."""
    by_key: dict[tuple, list[dict]] = defaultdict(list)
    for row, runs in compare.grouped(records):
        by_key[compare.row_key(row)].extend(runs)
    return [by_key[compare.row_key(r)] for r in rows]


def label(row: dict, with_hardware: bool = False) -> str:
    """A short name for a row in figure legends: framework (options) on device @ platform."""
    options = f" ({row['options']})" if row["options"] else ""
    text = f"{row['framework']}{options} · {row['device']} @ {row['platform']}"
    return f"{text} · {row['hardware']}" if with_hardware else text


def _done(runs: list[dict]) -> list[dict]:
    return [r for r in runs if r["status"] in COMPLETED]


def curve(runs: list[dict]) -> tuple[list[float], list[float]]:
    """Test accuracy against cumulative training time (evaluation excluded, as time_to_target_s counts
    it), epoch by epoch; the median over the completed runs that reached each epoch."""
    times, accs = [], []
    done = _done(runs)
    for i in range(max((len(r["timing"]["epoch_train_s"]) for r in done), default=0)):
        t, a = [], []
        for r in done:
            epochs, acc = r["timing"]["epoch_train_s"], r["metrics"]["test_accuracy"]
            if i < len(epochs) and i < len(acc) and acc[i] is not None and None not in epochs[:i + 1]:
                t.append(sum(epochs[:i + 1]))
                a.append(acc[i])
        if t:
            times.append(statistics.median(t))
            accs.append(statistics.median(a))
    return times, accs


def _trained_images(rec: dict) -> int | None:
    """Images the training loop went through: full batches (drop_last) x completed epochs."""
    n, batch = (rec.get("data") or {}).get("n_train"), rec["spec"]["batch_size"]
    return None if not n else (n // batch) * batch * rec["metrics"]["epochs_completed"]


def _gpu_mean(rec: dict, key: str, combine) -> float | None:
    gpus = [g.get(key) for g in ((rec.get("resources") or {}).get("gpus") or [])]
    gpus = [g for g in gpus if g is not None]
    return combine(gpus) if gpus else None


def resources(row: dict, runs: list[dict]) -> dict:
    """Medians over the row's completed runs; None where nothing was recorded, with the reasons."""
    done = _done(runs)
    res = [r.get("resources") or {} for r in done]
    energy = [r for r in done if (r.get("energy") or {}).get("joules")]
    per_joule = [_trained_images(r) / r["energy"]["joules"] for r in energy if _trained_images(r)]
    why = {}
    for r in done:
        for part in ("resources", "energy"):
            for key, reason in ((r.get(part) or {}).get("errors") or {}).items():
                why.setdefault(f"{part}.{key}", reason)
    return {
        "peak_rss_bytes": row["peak_rss_bytes"],
        "process_cpu_percent": median((x.get("host") or {}).get("process_cpu_percent_mean") for x in res),
        # other processes' share of all cores (runner.measure.noise), and how many runs it made noisy
        "other_cpu_percent": median((x.get("host") or {}).get("other_cpu_percent_mean") for x in res),
        "noisy_host_runs": row["noisy_host_runs"],
        "device_peak_memory_bytes": row["device_peak_memory_bytes"],
        "device_peak_memory_source": " | ".join(dict.fromkeys(
            x["device_peak_memory_source"] for x in res if x.get("device_peak_memory_source"))) or None,
        "gpu_util_percent": median(_gpu_mean(r, "util_percent_mean", statistics.fmean) for r in done),
        "gpu_power_w": median(_gpu_mean(r, "power_w_mean", sum) for r in done),  # all the run's GPUs
        "energy_j": row["energy_j"],
        "energy_runs": row["energy_runs"],
        "energy_method": row["energy_method"],
        "energy_scope": " | ".join(dict.fromkeys(r["energy"]["scope"] for r in energy)) or None,
        "images_per_joule": median(per_joule),
        "why_not": why if not energy or row["peak_rss_bytes"] is None else {},
    }


def cost(row: dict, runs: list[dict], prices: dict) -> dict:
    """Dollars at the platform's hourly price: for one run's training time (the spec's epochs, setup
    and evaluation excluded), for the training time to the target, and for the run's wall time (what a
    billed machine also pays: data loading, setup, evaluation, the parity check)."""
    price = prices.get(row["platform"])
    wall = median(r["timing"].get("wall_s") for r in _done(runs))
    out = {"price": price, "wall_s": wall, "train_usd": None, "target_usd": None, "wall_usd": None}
    if isinstance(price, (int, float)):
        usd = lambda s: None if s is None else price * s / 3600  # noqa: E731
        out |= {"train_usd": usd(row["total_train_s"]), "target_usd": usd(row["time_to_target_s"]),
                "wall_usd": usd(wall)}
    return out


def _machine_key(rec: dict) -> tuple:
    env, hw = rec.get("environment") or {}, rec["hardware"]
    return (env.get("hostname"), compare.hardware_label(rec), hw.get("memory_bytes"), rec["platform"]["name"])


def _gib(n) -> str | None:
    return None if n is None else f"{n / 2**30:.1f} GiB"


def _cpu(cpu: dict) -> str:
    parts = [cpu.get("brand") or "unknown CPU"]
    cores = [f"{cpu[k]} {k.split('_')[0]}" for k in ("physical_cores", "logical_cores", "usable_cores")
             if cpu.get(k) is not None]
    if cores:
        parts.append(", ".join(cores) + " cores")
    if cpu.get("arch"):
        parts.append(cpu["arch"])
    flags = [k for k, v in (cpu.get("flags") or {}).items() if v]
    if flags:
        parts.append(" ".join(flags))
    freq = (cpu.get("freq_mhz") or {}).get("current")
    if freq:
        parts.append(f"{freq:.0f} MHz")
    return "; ".join(parts)


def _gpu(g: dict) -> str:
    bits = [g.get("name") or "GPU", _gib(g.get("memory_total_bytes")),
            g.get("driver_version") and f"driver {g['driver_version']}",
            g.get("cuda_driver_version") and f"CUDA {g['cuda_driver_version']}",
            g.get("compute_capability") and f"cc {g['compute_capability']}"]
    return ", ".join(b for b in bits if b)


def _kind(value) -> str | None:
    if isinstance(value, dict):
        return value.get("kind") or value.get("name") or ", ".join(f"{k}={v}" for k, v in value.items() if v) or None
    return value


def machines(records: list[dict]) -> list[dict]:
    """One probe summary per machine (host, hardware, memory, platform), from its newest record."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for rec in records:
        groups[_machine_key(rec)].append(rec)
    out = []
    for recs in groups.values():
        rec = max(recs, key=lambda r: r.get("created_utc") or "")
        env, hw, sw = rec.get("environment") or {}, rec["hardware"], rec.get("software") or {}
        os_ = env.get("os") or {}
        frameworks = {}
        for r in recs:
            fw = r["framework"]
            build = fw.get("build") or {}
            extra = ", ".join(f"{k} {build.get(k) or fw.get(k)}" for k in ("cuda", "cudnn", "hip")
                              if build.get(k) or fw.get(k))
            frameworks[fw["name"]] = f"{fw.get('version') or '?'}" + (f" ({extra})" if extra else "")
        errors = {**{f"hardware.{k}": v for k, v in (hw.get("errors") or {}).items()},
                  **{f"environment.{k}": v for k, v in (env.get("errors") or {}).items()}}
        out.append({
            "title": f"{rec['platform']['name']}: {compare.hardware_label(rec)}"
                     + (f" on {env['hostname']}" if env.get("hostname") else ""),
            "records": len(recs),
            "fields": [
                ("platform", f"{rec['platform']['name']} ({rec['platform'].get('source')})"),
                ("CPU", _cpu(hw.get("cpu") or {})),
                ("memory", _gib(hw.get("memory_bytes"))),
                ("GPUs", "; ".join(_gpu(g) for g in hw["gpus"]) if hw.get("gpus") else
                 ("none" if hw.get("gpus") == [] else None)),
                ("OS", " ".join(str(x) for x in (os_.get("distro"), os_.get("system"), os_.get("release")) if x)
                 or None),
                ("container", _kind(env.get("container"))),
                ("notebook", _kind(env.get("notebook"))),
                ("scheduler", _kind(env.get("scheduler"))),
                ("cloud", _kind(env.get("cloud"))),
                ("Python", sw.get("python")),
                ("frameworks", "; ".join(f"{k} {v}" for k, v in sorted(frameworks.items()))),
                ("dlbench", sw.get("runner_version")),
            ],
            "errors": errors,
        })
    return out


def reproduce(records: list[dict]) -> list[dict]:
    """Each record's command, commit and identity, newest first."""
    return [{"created": r.get("created_utc"), "run_id": r["run_id"], "status": r["status"],
             "framework": r["framework"]["name"], "device": compare.group_key(r)[6],
             "platform": r["platform"]["name"], "spec": r["spec_hash"][:12], "command": r.get("command"),
             "commit": (r.get("software") or {}).get("runner_git_sha"),
             "launcher": (r.get("launcher") or {}).get("name"), "error": r.get("error")}
            for r in sorted(records, key=lambda r: r.get("created_utc") or "", reverse=True)]


def standard_first(blocks: list[dict], records: list[dict]) -> list[dict]:
    """The page opens with the standard workload (the default Spec: 50 epochs of LeNet-5 on MNIST),
    then the other plain runs' specs, then the specs only sweeps and tuning trials ran (an
    `experiment` record); in each group, the order compare gave them."""
    from runner.workload.spec import Spec

    standard = Spec().hash
    plain = {r["spec_hash"] for r in records if not r.get("experiment")}
    return sorted(blocks, key=lambda b: (b["spec_hash"] != standard, b["spec_hash"] not in plain))


def build(records: list[dict], rows: list[dict], prices: dict) -> dict:
    """Everything page.py and plots.py need, in one place."""
    with_hw = len({r["hardware"] for r in rows}) > 1
    specs: dict[str, dict] = {}
    for row, runs in zip(rows, runs_by_row(records, rows)):
        block = specs.setdefault(row["spec_hash"], {
            "spec_hash": row["spec_hash"], "label": row["spec"], "target": row["target_accuracy"],
            "rows": [], "items": []})
        block["rows"].append(row)
        block["items"].append({
            "row": row, "index": len(block["items"]), "label": label(row, with_hw),
            "epochs": runs[0]["spec"]["epochs"], "curve": curve(runs),
            "resources": resources(row, runs), "cost": cost(row, runs, prices)})
    items = [it for b in specs.values() for it in b["items"]]
    return {"specs": standard_first(list(specs.values()), records), "machines": machines(records), "records": reproduce(records),
            "priced": any(isinstance(it["cost"]["price"], (int, float)) or it["cost"]["price"] == FREE
                          for it in items)}
