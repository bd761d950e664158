"""Paired, interleaved timing of training loops in one process: the core of benchmarks/*_overhead.py.

The loops take turns in blocks of ~`block` steps of each epoch's batch order, the order of the loops
rotating every block, so the drift of a shared machine hits all of them alike. Epoch 0 is warm-up
(tracing, compilation, first touches; every block shape occurs in it) and is not kept. A ratio of
two loops is the median of their per-block ratios (paired: the same batches, the same moment), with
its min-max; an epoch's time is the sum of its blocks.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Callable


def models_without_bn() -> tuple[str, ...]:
    """The spec models a bare loop without batch-norm statistics can train (lenet5 first)."""
    from runner.workload import models

    return tuple(m for m in models.MODELS if not models.buffers(m))


def add_args(ap: argparse.ArgumentParser, epochs: int = 4, models=("lenet5",)) -> None:
    """The options every overhead benchmark shares; `models` the spec models its loops can build."""
    ap.add_argument("--epochs", type=int, default=epochs, help=f"epochs including the warm-up epoch (default {epochs})")
    ap.add_argument("--block", type=int, default=100, help="steps per block (default 100)")
    ap.add_argument("--limit-train", type=int, help="first N training samples (default: all 60,000)")
    ap.add_argument("--dataset", default="mnist", help="mnist (default), fashion, or synthetic (tests)")
    ap.add_argument("--data-dir")
    if len(models) > 1:  # a cheaper step (mlp) shows a per-step overhead that LeNet-5's compute hides
        ap.add_argument("--model", choices=models, default=models[0], help=f"default {models[0]}")


def load(args):
    """(spec, dataset folder, normalized data) for the shared options; the store fetches or falls back
    offline as `python -m runner data` does."""
    from runner.data import store
    from runner.workload.spec import make_spec

    if args.epochs < 2 or args.block < 1:
        print("--epochs must be >= 2 (the first is warm-up) and --block >= 1", file=sys.stderr)
        raise SystemExit(2)
    spec = make_spec(model=getattr(args, "model", "lenet5"), dataset=args.dataset, limit_train=args.limit_train,
                     limit_test=1000)
    folder = store.ensure(args.dataset, args.data_dir)
    return spec, folder, store.load_for(spec, folder)


@dataclass
class Timings:
    steps: int                                                   # steps per epoch
    blocks: dict[str, list[float]] = field(default_factory=dict)  # seconds per block, steady epochs
    epochs: dict[str, list[float]] = field(default_factory=dict)  # seconds per steady epoch

    def ms_per_step(self, name: str) -> float:
        return 1000 * statistics.median(self.epochs[name]) / self.steps

    def ratio(self, a: str, b: str) -> tuple[float, float, float]:
        """(median, min, max) of the per-block ratios a / b."""
        r = [x / y for x, y in zip(self.blocks[a], self.blocks[b])]
        return statistics.median(r), min(r), max(r)

    def line(self, a: str, b: str, goal: str = "<= 1.05") -> str:
        med, lo, hi = self.ratio(a, b)
        return (f"{a} / {b} = {med:.3f} [{lo:.3f}-{hi:.3f}]  median of {len(self.blocks[a])} per-block ratios"
                f" ({statistics.median(self.epochs[a]) / statistics.median(self.epochs[b]):.3f} of epoch"
                f" medians)  goal {goal}")


def runner_block(backend_cls, spec, data, options: dict, device: str = "cpu") -> Callable:
    """The runner's side of a pair: the backend set up on the real initial weights, one block = its
    train_epoch over the block's batches, synchronized and its loss read back, as the harness does."""
    from runner.workload import reference

    b = backend_cls(spec, device, options)
    b.setup(reference.initial_params(spec), data.train_x, data.train_y, data.test_x, data.test_y)

    def block(rows, _):
        stats = b.train_epoch(rows)
        b.synchronize()
        float(stats.loss_sum)
    return block


def interleave(loops: dict[str, Callable], spec, epochs: int, block: int,
               fresh: Callable[[], dict] = dict, log=print) -> Timings:
    """Run every loop over every block of `epochs` epochs of the spec's batch order, rotating.

    loops: {name: fn(block_rows, state)} where block_rows is a (steps, batch) slice of the epoch's
    order and state is fresh()'s value for that name (e.g. a DataLoader iterator), new each epoch.
    Each fn must return only once its work is done (synchronized, as the runner's harness does)."""
    from runner.workload import reference

    names = list(loops)
    out = Timings(spec.steps_per_epoch, {k: [] for k in names}, {k: [] for k in names})
    for epoch in range(epochs):
        order = reference.epoch_order(spec, epoch)
        state = fresh()
        spent = dict.fromkeys(names, 0.0)
        for i, start in enumerate(range(0, len(order), block)):
            rows = order[start:start + block]
            k = i % len(names)
            for name in names[k:] + names[:k]:
                t0 = time.perf_counter()
                loops[name](rows, state.get(name))
                dt = time.perf_counter() - t0
                spent[name] += dt
                if epoch:
                    out.blocks[name].append(dt)
        log(f"epoch {epoch} " + "  ".join(f"{k} {v:.2f}s" for k, v in spent.items())
            + ("  (warm-up)" if epoch == 0 else ""))
        if epoch:
            for k, v in spent.items():
                out.epochs[k].append(v)
    return out


def print_modes(t: Timings, modes) -> None:
    """Per loop mode: runner and bare ms/step, and the paired ratio runner/bare."""
    print()
    for mode in modes:
        r, b = f"runner-{mode}", f"bare-{mode}"
        print(f"{mode:6} runner {t.ms_per_step(r):7.2f} ms/step  bare {t.ms_per_step(b):7.2f} ms/step")
        print(f"{mode:6} {t.line(r, b)}")
