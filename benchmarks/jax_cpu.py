"""JAX on the CPU: what a JAX expert would try, measured paired and interleaved in one run (issue 19 #6).

    python benchmarks/jax_cpu.py                      # every variant, 7 rounds of 100 steps
    python benchmarks/jax_cpu.py --rounds 11 --steps 200 --variants torch,jax,jax-scan

Each variant lives in a process of its own (XLA flags must be set before jax is imported), sets up
the real backend once on MNIST (compiles once), then waits. Round by round, in a rotating order, each
process is told to train `steps` steps and answers with the seconds; only one runs at a time, so a
shared, drifting machine hurts them all alike. Prints each variant's median ms/step [min-max] and its
median per-round ratio to the `jax` baseline (paired: both measured in the same round).

Variants:
  torch           the torch backend (the yardstick issue 19 compared with)
  jax             the jax backend as shipped: loop=step, NHWC (flax), donated carry
  jax-scan        --option jax.loop=scan: a lax.scan over the whole window of steps
  jax-nodonate    the step without donate_argnums (what donation buys)
  jax-nchw        NCHW/OIHW dimension numbers with lax.conv_general_dilated (no flax, no transposes)
  jax-nothunk     XLA_FLAGS=--xla_cpu_use_thunk_runtime=false (the older, non-thunk CPU runtime)
  jax-1thread     XLA_FLAGS=--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1

Measured 2026-11-30 on the shared 2-core Xeon under load ~12-15 (other sessions' tests), jax 0.10.2,
`--variants jax,jax-scan,jax-nodonate,jax-nchw,jax-nothunk,jax-1thread --rounds 11 --steps 40`: median
paired ratio to jax: scan 5.87 (slower in every round), nodonate 1.01, nchw 0.76, nothunk 0.79,
1thread 1.14; per-round ratios of nchw and nothunk spread 0.2-2.5, and a 5-round run with torch gave
1.20 and 1.14: no change beyond the noise except scan. Rerun on a quiet machine before adopting any.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

FLAGS = {"jax-nothunk": "--xla_cpu_use_thunk_runtime=false",
         "jax-1thread": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}
VARIANTS = ("torch", "jax", "jax-scan", "jax-nodonate", "jax-nchw", "jax-nothunk", "jax-1thread")


def _nchw_backend(JaxBackend):
    """The JAX backend with the model in NCHW / OIHW, written with lax directly (flax's Conv is NHWC)."""
    import jax
    import numpy as np
    from jax import lax

    from runner.workload import layouts, models

    class Model:
        def __init__(self, model):
            self.layers = models.MODELS[model]

        def apply(self, variables, x):
            p, counts, h = variables["params"], {models.Conv: 0, models.Dense: 0}, x
            for layer in self.layers:
                if isinstance(layer, models.Conv):
                    counts[models.Conv] += 1
                    q = p[f"conv{counts[models.Conv]}"]
                    h = lax.conv_general_dilated(h, q["kernel"], (1, 1), [(layer.pad, layer.pad)] * 2,
                                                 dimension_numbers=("NCHW", "OIHW", "NCHW"),
                                                 precision=lax.Precision.HIGHEST) + q["bias"][None, :, None, None]
                elif isinstance(layer, models.Dense):
                    counts[models.Dense] += 1
                    q = p[f"fc{counts[models.Dense]}"]
                    h = jax.numpy.dot(h, q["kernel"].T, precision=lax.Precision.HIGHEST) + q["bias"]
                elif isinstance(layer, models.ReLU):
                    h = jax.nn.relu(h)
                elif isinstance(layer, models.MaxPool):
                    s = layer.size
                    h = lax.reduce_window(h, -np.inf, lax.max, (1, 1, s, s), (1, 1, s, s), "VALID")
                else:
                    h = h.reshape((h.shape[0], -1))
            return h

    class NCHW(JaxBackend):
        def setup(self, params, train_x, train_y, test_x, test_y):
            super().setup(params, train_x, train_y, test_x, test_y)
            put = lambda a: jax.device_put(a, self.device)  # noqa: E731
            tree = layouts.to_tree(params)  # canonical layout as it is
            zeros = jax.tree_util.tree_map(np.zeros_like, tree)
            self.params, self.opt_state = put(tree), put((zeros, zeros))
            self.train_x, self.test_x = put(train_x[:, None]), put(test_x[:, None])
            self.model = Model(self.spec.model)

        def parameters(self):
            return layouts.from_tree(self.spec.model, self.params)

    return NCHW


def serve(variant: str) -> None:
    """Worker: set up once, then for every line on stdin train that many steps, print the seconds."""
    from runner import backends
    from runner.data import store
    from runner.workload import reference
    from runner.workload.spec import make_spec

    spec = make_spec("standard")
    data = store.load_for(spec, store.ensure(spec.dataset, None, log=lambda m: None))
    name = variant.split("-")[0]
    cls = backends.load(name)
    options = {"loop": "scan"} if variant == "jax-scan" else {}
    if variant == "jax-nchw":
        cls = _nchw_backend(cls)
    if variant == "jax-nodonate":
        class NoDonate(cls):
            def _compile(self):
                super()._compile()
                self._step = self.jax.jit(self._step.__wrapped__)
        cls = NoDonate
    b = cls(spec, "cpu", options)
    b.setup(reference.initial_params(spec), data.train_x, data.train_y, data.test_x, data.test_y)
    order, pos = reference.epoch_order(spec, 0), 0
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        steps = int(line)
        if pos + steps > len(order):
            pos = 0
        rows = order[pos:pos + steps]
        pos += steps
        b.synchronize()
        t0 = time.perf_counter()
        b.train_epoch(rows)
        b.synchronize()
        print(json.dumps({"s": time.perf_counter() - t0}), flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--serve", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        serve(args.serve)
        return 0
    variants = [v.strip() for v in args.variants.split(",")]
    procs = {}
    for v in variants:
        env = {**os.environ, "XLA_FLAGS": FLAGS.get(v, os.environ.get("XLA_FLAGS", "")), "TF_CPP_MIN_LOG_LEVEL": "3"}
        procs[v] = subprocess.Popen([sys.executable, __file__, "--serve", v], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    for v, proc in procs.items():
        assert json.loads(proc.stdout.readline())["ready"], v

    def go(v):  # one warm-up window, then timed ones; the first call of a shape compiles
        procs[v].stdin.write(f"{args.steps}\n")
        procs[v].stdin.flush()
        return json.loads(procs[v].stdout.readline())["s"]

    for v in variants:
        go(v)
    ms = {v: [] for v in variants}
    for r in range(args.rounds):
        for v in variants[r % len(variants):] + variants[:r % len(variants)]:
            ms[v].append(1000 * go(v) / args.steps)
        print(f"round {r + 1}: " + ", ".join(f"{v} {ms[v][-1]:.1f}" for v in variants), file=sys.stderr, flush=True)
    for proc in procs.values():
        proc.stdin.close()
        proc.wait(timeout=60)
    base = ms.get("jax")
    print(f"{'variant':14} {'ms/step median [min-max]':>28}   paired ratio to jax (median)")
    for v in variants:
        ratio = statistics.median(a / b for a, b in zip(ms[v], base)) if base else float("nan")
        print(f"{v:14} {statistics.median(ms[v]):10.2f} [{min(ms[v]):.2f}-{max(ms[v]):.2f}]"
              f"{'':8} {ratio:.3f}")
    print(f"({args.rounds} rounds of {args.steps} steps, LeNet-5 batch 64 on MNIST, interleaved)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
