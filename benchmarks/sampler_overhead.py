"""What does the resource sampler cost the timed training? One process, PyTorch on the CPU.

    python benchmarks/sampler_overhead.py                   # full MNIST, 1 warm-up + 2 measured epochs
    python benchmarks/sampler_overhead.py --epochs 2 --limit-train 20000

Three loops over the same batches with the runner's TorchBackend take turns in blocks of ~200 steps
(order rotating every block): no sampler; the sampler at its default interval (1 s); the sampler at
0.1 s (10x as many readings, to make any cost visible). The sampler is started before and stopped
after each block, outside the timed region, as the worker does around the whole training loop.
Ratios are medians of per-block ratios against the no-sampler loop. Goal: <= 1.01 at 1 s.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from runner.workload import reference
from runner.backends.torch_backend import TorchBackend
from runner.data import store
from runner.measure.sampler import Sampler
from runner.workload.spec import make_spec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=3, help="epochs including the warm-up epoch (default 3)")
    ap.add_argument("--block", type=int, default=200, help="steps per block (default 200)")
    ap.add_argument("--limit-train", type=int, help="first N training samples (default: all 60,000)")
    ap.add_argument("--data-dir")
    args = ap.parse_args()

    spec = make_spec(limit_train=args.limit_train, limit_test=1000)
    data = store.load_for(spec, store.ensure("mnist", args.data_dir))
    variants = {"off": None, "1.0 s": 1.0, "0.1 s": 0.1}
    backends = {}
    for name in variants:  # one model each: same weights and batches, independent optimizer state
        b = TorchBackend(spec, "cpu")
        b.setup(reference.initial_params(spec), data.train_x, data.train_y, data.test_x, data.test_y)
        backends[name] = b
    blocks = {k: [] for k in variants}
    samples = {k: 0 for k in variants}
    names = list(variants)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {spec.steps_per_epoch} steps/epoch in"
          f" blocks of {args.block}, {args.epochs} epochs (first is warm-up)")
    for epoch in range(args.epochs):
        order = reference.epoch_order(spec, epoch)
        for i, start in enumerate(range(0, len(order), args.block)):
            block = order[start:start + args.block]
            for name in names[i % len(names):] + names[:i % len(names)]:
                sampler = Sampler(variants[name]).start() if variants[name] else None
                b = backends[name]
                b.synchronize()
                t0 = time.perf_counter()
                float(b.train_epoch(block).loss_sum)
                dt = time.perf_counter() - t0
                if sampler:
                    samples[name] += len(sampler.stop())
                if epoch:
                    blocks[name].append(dt)
        print(f"epoch {epoch} done" + ("  (warm-up)" if epoch == 0 else ""), flush=True)
    print()
    for name in names:
        ms = 1000 * statistics.median(blocks[name]) / args.block
        ratio = statistics.median(x / y for x, y in zip(blocks[name], blocks["off"]))
        print(f"sampler {name:6} {ms:6.2f} ms/step  / off = {ratio:.3f}  ({samples[name]} samples,"
              f" median of {len(blocks[name])} per-block ratios)")


if __name__ == "__main__":
    main()
