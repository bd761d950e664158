"""What does feeding LeNet-5 from a DataLoader cost, against the data resident in memory? PyTorch, CPU.

    python benchmarks/loader_overhead.py                           # MNIST, first 16,384 samples, 1 + 3 epochs
    python benchmarks/loader_overhead.py --limit-train 4096 --epochs 8   # more, shorter rounds on a noisy host
    python benchmarks/loader_overhead.py --limit-train 60000 --workers 0 2 4 8 --epochs 3

One process, one TorchBackend per variant (the runner's own, so the same code the records time):
resident (torch.loader=resident) and torch.loader=dataloader at each --workers count. Epochs take
turns across the variants (the order rotating each round) so a noisy neighbour hits all alike; epoch 1
is warm-up (worker start, allocator) and is left out. Per variant: the median steady s/epoch, its ratio
to resident's, and the share of the epoch spent waiting for batches (EpochStats.data_s / epoch s;
runner.backends.loaders says what is timed). Every variant trains the same batches and, as
tests/test_loader.py proves, to bitwise-identical weights: the final weights are checked here too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

from runner.backends import loaders
from runner.backends.torch_backend import TorchBackend
from runner.data import store
from runner.workload import reference
from runner.workload.spec import make_spec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=4, help="epochs including the warm-up epoch (default 4)")
    ap.add_argument("--limit-train", type=int, default=16384, help="first N training samples (default 16384)")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2, 4], help="DataLoader workers (default 0 2 4)")
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--data-dir")
    args = ap.parse_args()

    spec = make_spec(dataset=args.dataset, limit_train=args.limit_train, limit_test=1000)
    data = store.load_for(spec, store.ensure(args.dataset, args.data_dir))
    variants = {"resident": {}, **{f"dataloader w={w}": {"loader": "dataloader", "workers": str(w)}
                                   for w in args.workers}}
    backends = {}
    for name, options in variants.items():
        b = TorchBackend(spec, "cpu", options)
        b.setup(reference.initial_params(spec), data.train_x, data.train_y, data.test_x, data.test_y)
        backends[name] = b
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {loaders.usable_cores()} usable cores,"
          f" load average {os.getloadavg()[0]:.2f}; {spec.dataset} first {spec.n_train}, {spec.steps_per_epoch}"
          f" steps/epoch, {args.epochs} epochs (first is warm-up)")
    epoch_s = {k: [] for k in variants}
    wait_s = {k: [] for k in variants}
    names = list(variants)
    for epoch in range(args.epochs):
        order = reference.epoch_order(spec, epoch)
        for name in names[epoch % len(names):] + names[:epoch % len(names)]:
            b = backends[name]
            b.synchronize()
            t0 = time.perf_counter()
            stats = b.train_epoch(order)
            float(stats.loss_sum)  # the host read every clock waits for
            epoch_s[name].append(time.perf_counter() - t0)
            wait_s[name].append(stats.data_s or 0.0)
    final = {k: b.parameters() for k, b in backends.items()}
    same = all(np.array_equal(final[k][p], final["resident"][p]) for k in final for p in final[k])
    base = statistics.median(epoch_s["resident"][1:])
    print(f"{'variant':<16} {'steady s/epoch':>14} {'vs resident':>11} {'data wait':>10} {'rest s':>8}"
          f"  first epoch s  (steady: median of {args.epochs - 1}; rest = epoch - wait)")
    for name in names:
        steady = statistics.median(epoch_s[name][1:])
        share = statistics.median(w / e for w, e in zip(wait_s[name][1:], epoch_s[name][1:]))
        rest = statistics.median(e - w for w, e in zip(wait_s[name][1:], epoch_s[name][1:]))
        print(f"{name:<16} {steady:>14.3f} {steady / base:>10.2f}x {share:>9.1%} {rest:>8.3f}  {epoch_s[name][0]:.3f}")
    print(f"final weights bitwise identical across variants: {same}; load average now {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
