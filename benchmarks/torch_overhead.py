"""Is the runner's PyTorch timing the framework's, not the harness'? One process, four loops.

    python benchmarks/torch_overhead.py                     # full MNIST, 1 warm-up + 3 measured epochs
    python benchmarks/torch_overhead.py --epochs 6 --workers 2

The loops take turns in blocks of ~100 steps (the order rotating every block), so the drift of a
shared machine hits all of them alike; each ratio is the median of per-block ratios, and the epoch
times are sums of blocks. The first epoch is warm-up. Loops, all LeNet-5, Adam 1e-3, batch 64, same
initial weights:
  runner  dlbench's TorchBackend.train_epoch on the block's batches, synchronized, loss read back
  bare    a hand-written loop over the same on-device tensors and the same batches
  loader  the tutorial way: DataLoader(shuffle=True) over uint8 images, a per-sample transform
          (ToTensor + Normalize, written out: there is no CPU torchvision here)
  input   the same DataLoader iterated alone, no model: the input cost the loader loop adds
Goals: runner/bare <= 1.05 and loader/runner >= 2. The second is bounded by (compute + input) /
compute: on a CPU, where a LeNet-5 step costs several ms, the per-sample input cost cannot double it.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from runner.workload import reference
from runner.backends.torch_backend import TorchBackend, build_model, load_reference
from runner.data import store
from runner.workload.spec import make_spec


class PerSampleMNIST(torch.utils.data.Dataset):
    def __init__(self, images: np.ndarray, labels: np.ndarray, mean: float, std: float):
        self.images, self.labels, self.mean, self.std = images, labels, mean, std

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        x = torch.from_numpy(self.images[i]).float().div(255).unsqueeze(0)  # ToTensor
        return (x - self.mean) / self.std, int(self.labels[i])              # Normalize


def fresh_model(spec):
    model = build_model(torch, spec.model)
    load_reference(torch, model, reference.initial_params(spec))
    opt = torch.optim.Adam(model.parameters(), lr=spec.learning_rate, betas=(spec.beta1, spec.beta2), eps=spec.eps)
    return model, opt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=4, help="epochs including the warm-up epoch (default 4)")
    ap.add_argument("--block", type=int, default=100, help="steps per block (default 100)")
    ap.add_argument("--limit-train", type=int, help="first N training samples (default: all 60,000)")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers (tutorial default 0)")
    ap.add_argument("--data-dir")
    args = ap.parse_args()

    spec = make_spec(limit_train=args.limit_train, limit_test=1000)
    folder = store.ensure("mnist", args.data_dir)
    data = store.load_for(spec, folder)
    raw = store.load("mnist", folder, spec.limit_train, spec.limit_test)
    images = raw.train_x.copy()  # writable, as a tutorial's decoded dataset would be

    runner = TorchBackend(spec, "cpu")
    runner.setup(reference.initial_params(spec), data.train_x, data.train_y, data.test_x, data.test_y)
    bare_model, bare_opt = fresh_model(spec)
    x, y = torch.from_numpy(data.train_x[:, None]), torch.from_numpy(data.train_y.astype(np.int64))
    loader_model, loader_opt = fresh_model(spec)
    dataset = PerSampleMNIST(images, raw.train_y, spec.norm_mean, spec.norm_std)
    make_loader = lambda: iter(torch.utils.data.DataLoader(  # noqa: E731
        dataset, batch_size=spec.batch_size, shuffle=True, drop_last=True, num_workers=args.workers))

    def step(model, opt, xb, yb):
        loss = torch.nn.functional.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def runner_block(block, _it):
        stats = runner.train_epoch(block)
        runner.synchronize()
        float(stats.loss_sum)

    def bare_block(block, _it):
        for idx in torch.from_numpy(block):
            step(bare_model, bare_opt, x[idx], y[idx])

    def loader_block(block, it):
        for _ in range(len(block)):
            step(loader_model, loader_opt, *next(it))

    def input_block(block, it):
        for _ in range(len(block)):
            next(it)

    loops = {"runner": runner_block, "bare": bare_block, "loader": loader_block, "input": input_block}
    names = list(loops)
    blocks: dict[str, list[float]] = {k: [] for k in loops}
    epochs: dict[str, list[float]] = {k: [] for k in loops}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {spec.steps_per_epoch} steps/epoch in"
          f" blocks of {args.block}, {args.epochs} epochs (first is warm-up), DataLoader workers {args.workers}")
    for epoch in range(args.epochs):
        order = reference.epoch_order(spec, epoch)
        iters = {"loader": make_loader(), "input": make_loader()}
        spent = dict.fromkeys(loops, 0.0)
        for i, start in enumerate(range(0, len(order), args.block)):
            block = order[start:start + args.block]
            for name in names[i % 4:] + names[:i % 4]:
                t0 = time.perf_counter()
                loops[name](block, iters.get(name))
                dt = time.perf_counter() - t0
                spent[name] += dt
                if epoch:
                    blocks[name].append(dt)
        print(f"epoch {epoch} " + "  ".join(f"{k} {v:.2f}s" for k, v in spent.items())
              + ("  (warm-up)" if epoch == 0 else ""), flush=True)
        if epoch:
            for k, v in spent.items():
                epochs[k].append(v)

    med = {k: statistics.median(v) for k, v in epochs.items()}
    print()
    for name in loops:
        print(f"{name:6} median steady epoch {med[name]:6.2f}s  ({1000 * med[name] / spec.steps_per_epoch:.2f} ms/step)")
    paired = lambda a, b: statistics.median(x / y for x, y in zip(blocks[a], blocks[b]))  # noqa: E731
    print(f"runner / bare   = {paired('runner', 'bare'):.3f}  median of {len(blocks['bare'])} per-block ratios"
          f" ({med['runner'] / med['bare']:.3f} of epoch medians)  goal <= 1.05")
    print(f"loader / runner = {paired('loader', 'runner'):.2f}   median of per-block ratios"
          f" ({med['loader'] / med['runner']:.2f} of epoch medians)  goal >= 2")
    print(f"input share of a loader step = {paired('input', 'loader'):.2f}")


if __name__ == "__main__":
    main()
