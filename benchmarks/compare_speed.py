"""How fast is `compare` over many records? Target (issue 20): 1,000 records in <= 1 s.

    python benchmarks/compare_speed.py                      # 1,000 records in 20 rows, 5 timed runs
    python benchmarks/compare_speed.py --records 2000 --rows 40 --repeats 3

Builds N records in a temp dir (the committed smoke record, made 50-epoch sized, spread over R rows
= framework x machine groups, steady times drawn with a fixed seed, hashes recomputed), then in one
run: `python -m runner compare DIR` as a user runs it (a fresh process: imports included), its wall
time (median of the repeats) and its CPU time (user + sys, median), each with its ratio to the target
(N/1000 s); the imports alone the same way; the same work in-process, in CPU seconds (best of the
repeats), split into load (read + validate every file), rows (grouping, bootstrap CIs) and render;
and schema validation of the N records by jsonschema-rs (what runner.records uses) against the
pure-Python jsonschema it replaced. On a shared machine wall time follows the other tenants: read
the CPU time (and `uptime`'s load, printed) first.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from runner import records
from runner.records import collection
from runner.report import compare
from runner.workload.spec import hash_of, make_spec

ROOT = Path(__file__).resolve().parent.parent
FRAMEWORKS = ("torch", "tensorflow", "jax", "flux")


def build(folder: Path, n: int, n_rows: int, seed: int = 0) -> None:
    base = records.upgrade(json.loads((ROOT / "tests" / "fixtures" / "record_smoke.json").read_text()))
    base["spec"] = make_spec().to_dict()  # the standard 50-epoch spec
    base["spec_hash"] = hash_of(base["spec"])
    rng = random.Random(seed)
    epochs = base["spec"]["epochs"]
    for i in range(n):
        row = i % n_rows
        r = copy.deepcopy(base)
        r["run_id"] = f"{rng.getrandbits(128):032x}"
        r["framework"]["name"] = FRAMEWORKS[row % len(FRAMEWORKS)]
        r["hardware"]["cpu"]["brand"] = f"machine {row // len(FRAMEWORKS)}"
        steady = 2.0 + row * 0.1 + rng.gauss(0, 0.05)
        times = [steady * 1.5] + [steady + rng.gauss(0, 0.02) for _ in range(epochs - 1)]
        acc = [min(1.0, 0.95 + 0.001 * e) for e in range(epochs)]
        r["timing"].update(epoch_train_s=times, eval_s=[0.1] * epochs, first_epoch_s=times[0], steady_epoch_s=steady,
                           total_train_s=sum(times))
        r["metrics"].update(epochs_completed=epochs, train_loss=[0.1] * epochs, train_accuracy=acc, test_accuracy=acc,
                            best_test_accuracy=max(acc), final_test_accuracy=acc[-1])
        records.write(r, folder)


def _process(cmd: list[str], repeats: int) -> tuple[float, float]:
    """Median wall and median CPU (user + sys) seconds of a fresh process running `cmd`."""
    walls, cpus = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def _cpu(fn, repeats: int) -> float:
    """Best CPU seconds of `fn` in this process."""
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=1000)
    ap.add_argument("--rows", type=int, default=20, help="framework x machine groups (default 20)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    target = args.records / 1000  # seconds: 1 s per 1,000 records

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        build(folder, args.records, args.rows)
        size = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
        print(f"{args.records} records ({size:.1f} MB) in {args.rows} rows, median of {args.repeats} runs")

        cmd = [sys.executable, "-m", "runner", "compare", str(folder)]
        cli_wall, cli_cpu = _process(cmd, args.repeats)
        imports = "import runner.cli, runner.report.compare, runner.records, numpy, scipy.stats, tabulate, jsonschema_rs"
        imp_wall, imp_cpu = _process([sys.executable, "-c", imports], args.repeats)

        compare.rows(collection.load([folder])[0][:50])  # warm: imports and compiled validator
        found = collection.load([folder])[0]
        load = _cpu(lambda: collection.load([folder]), args.repeats)
        table = compare.rows(found)
        rows = _cpu(lambda: compare.rows(found), args.repeats)
        render = _cpu(lambda: compare.render(table), args.repeats)

        import jsonschema
        from importlib import resources

        schema = json.loads(resources.files("runner.records").joinpath("schemas/record.v4.json").read_text())
        slow_validator, fast_validator = jsonschema.Draft202012Validator(schema), records._validator()
        slow = _cpu(lambda: [slow_validator.is_valid(r) for r in found], max(1, args.repeats // 2))
        fast = _cpu(lambda: [fast_validator.is_valid(r) for r in found], args.repeats)

    verdict = lambda t: "meets" if t <= target else "misses"  # noqa: E731
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    print(f"python -m runner compare DIR: wall {cli_wall:.3f} s (ratio to target {cli_wall / target:.2f},"
          f" {verdict(cli_wall)}), CPU {cli_cpu:.3f} s (ratio {cli_cpu / target:.2f}, {verdict(cli_cpu)})"
          f"; target {target:.2f} s")
    print(f"  imports alone (runner, numpy, scipy.stats, tabulate, jsonschema_rs): wall {imp_wall:.3f} s,"
          f" CPU {imp_cpu:.3f} s")
    print(f"  in-process CPU: load {load:.3f} s, rows {rows:.3f} s, render {render:.3f} s")
    print(f"validation of {len(found)} records (CPU): jsonschema-rs {fast:.4f} s, jsonschema {slow:.3f} s"
          f" ({slow / fast:.0f}x)")


if __name__ == "__main__":
    main()
