"""Steady ms/step and compile time of every framework backend, measured in one run.

    python benchmarks/frameworks.py                       # torch, tensorflow (+ options), jax (+ options)
    python benchmarks/frameworks.py --variants torch,jax --windows 7 --rounds 3

Each variant (a framework, or framework:key=value for a backend option) runs in a process of its
own, through the real backend (same data on the device, same batches, same Adam): the first step is
timed alone (tracing/compilation + one step), then `windows` windows of `steps` steps each. The
whole set of variants runs `rounds` times in rotating order so that a drifting, shared host hurts
them all alike. Prints the median ms/step over all windows with [min-max], the ratio to the fastest
and the first step's surplus (the compile estimate).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DEFAULT = "torch,tensorflow,tensorflow:loop=step,tensorflow:jit_compile=on,jax,jax:loop=scan"


def measure_one(variant: str, steps: int, windows: int) -> dict:
    from runner import backends
    from runner.workload import reference
    from runner.data import store
    from runner.workload.spec import make_spec

    name, _, opt = variant.partition(":")
    options = dict([opt.split("=", 1)]) if opt else {}
    spec = make_spec("standard")
    data = store.load_for(spec, store.ensure(spec.dataset, None, log=lambda m: None))
    b = backends.load(name)(spec, "cpu", options)
    b.setup(reference.initial_params(spec), data.train_x, data.train_y, data.test_x, data.test_y)
    order = reference.epoch_order(spec, 0)
    b.synchronize()
    t0 = time.perf_counter()
    b.train_epoch(order[:steps])  # the first window pays tracing/compilation for this shape
    b.synchronize()
    first = time.perf_counter() - t0
    per_step = []
    for w in range(windows):
        rows = order[(w + 1) * steps % (len(order) - steps):][:steps]
        b.synchronize()
        t0 = time.perf_counter()
        b.train_epoch(rows)
        b.synchronize()
        per_step.append(1000 * (time.perf_counter() - t0) / steps)
    return {"variant": variant, "first_window_s": first, "ms_per_step": per_step,
            "version": b.info()["framework"]["version"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", default=DEFAULT)
    p.add_argument("--steps", type=int, default=100, help="steps per window (default 100)")
    p.add_argument("--windows", type=int, default=5, help="timed windows per process (default 5)")
    p.add_argument("--rounds", type=int, default=2, help="processes per variant, in rotating order (default 2)")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(measure_one(args.one, args.steps, args.windows)))
        return 0
    variants = args.variants.split(",")
    results: dict[str, list[dict]] = {v: [] for v in variants}
    for r in range(args.rounds):
        for v in variants[r % len(variants):] + variants[:r % len(variants)]:
            out = subprocess.run([sys.executable, __file__, "--one", v, "--steps", str(args.steps),
                                  "--windows", str(args.windows)], capture_output=True, text=True)
            if out.returncode:
                print(f"{v}: failed\n{out.stderr[-1500:]}", file=sys.stderr)
                continue
            results[v].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"round {r + 1}: {v} done", file=sys.stderr)
    rows = []
    for v, runs in results.items():
        if not runs:
            continue
        steps = [x for run in runs for x in run["ms_per_step"]]
        med = statistics.median(steps)
        firsts = [run["first_window_s"] for run in runs]
        # compile estimate: the first window's surplus over a steady window of the same length
        compile_s = statistics.median(f - med * args.steps / 1000 for f in firsts)
        rows.append((v, runs[0]["version"], med, min(steps), max(steps), statistics.median(firsts), compile_s))
    fastest = min(r[2] for r in rows)
    print(f"\nsteady ms/step: median of {args.windows} windows x {args.rounds} processes of {args.steps} steps;"
          f" LeNet-5, batch 64, full MNIST on the device\n")
    print(f"{'variant':28} {'version':12} {'ms/step':>8} {'[min-max]':>15} {'x fastest':>9}"
          f" {'1st window s':>12} {'compile s':>9}")
    for v, ver, med, lo, hi, first, comp in sorted(rows, key=lambda r: r[2]):
        print(f"{v:28} {ver:12} {med:8.2f} {f'[{lo:.2f}-{hi:.2f}]':>15} {med / fastest:9.2f} {first:12.2f}"
              f" {comp:9.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
