"""Is the runner's PyTorch timing the framework's, not the harness'? One process, three loops.

    python benchmarks/torch_overhead.py                     # full MNIST, 3 measured rounds
    python benchmarks/torch_overhead.py --rounds 5 --workers 2

Each round runs one epoch of each loop, in turn, so drift on a shared machine hits all three alike;
the first round is warm-up and not counted. Loops, all LeNet-5, Adam 1e-3, batch 64, same weights:
  runner  dlbench's TorchBackend.train_epoch under the harness' synchronized clock
  bare    a hand-written loop over the same on-device tensors and the same batches
  loader  the tutorial way: DataLoader(shuffle=True) over uint8 images, a per-sample transform
          (ToTensor + Normalize, written out: there is no CPU torchvision here)
Prints the median steady epoch of each and the ratios runner/bare (goal <= 1.05) and
loader/runner (goal >= 2).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from runner import reference
from runner.backends.torch_backend import TorchBackend, build_model
from runner.data import store
from runner.spec import make_spec


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
    with torch.no_grad():
        for p, ref in zip(model.parameters(), reference.initial_params(spec).values()):
            p.copy_(torch.from_numpy(ref))
    opt = torch.optim.Adam(model.parameters(), lr=spec.learning_rate, betas=(spec.beta1, spec.beta2), eps=spec.eps)
    return model, opt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=4, help="rounds including the warm-up round")
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

    def bare_epoch(order):
        for idx in torch.from_numpy(order):
            loss = torch.nn.functional.cross_entropy(bare_model(x[idx]), y[idx])
            bare_opt.zero_grad(set_to_none=True)
            loss.backward()
            bare_opt.step()
        return loss.item()

    loader_model, loader_opt = fresh_model(spec)
    loader = torch.utils.data.DataLoader(PerSampleMNIST(images, raw.train_y, spec.norm_mean, spec.norm_std),
                                         batch_size=spec.batch_size, shuffle=True, drop_last=True,
                                         num_workers=args.workers)

    def loader_epoch(_order):
        for xb, yb in loader:
            loss = torch.nn.functional.cross_entropy(loader_model(xb), yb)
            loader_opt.zero_grad(set_to_none=True)
            loss.backward()
            loader_opt.step()
        return loss.item()

    def input_only_epoch(_order):
        # The loader's own cost, no model: what the tutorial loop adds on top of the compute.
        for _batch in loader:
            pass
        return float("nan")

    def runner_epoch(order):
        stats = runner.train_epoch(order)
        runner.synchronize()
        return float(stats.loss_sum) / stats.steps

    loops = {"runner": runner_epoch, "bare": bare_epoch, "loader": loader_epoch, "input": input_only_epoch}
    times: dict[str, list[float]] = {k: [] for k in loops}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {spec.steps_per_epoch} steps/epoch,"
          f" {args.rounds} rounds (first is warm-up), DataLoader workers {args.workers}")
    for r in range(args.rounds):
        order = reference.epoch_order(spec, r)
        for name, epoch in loops.items():
            t0 = time.perf_counter()
            loss = epoch(order)
            dt = time.perf_counter() - t0
            shown = "" if loss != loss else f"  loss {loss:.4f}"  # NaN: the input-only loop trains nothing
            print(f"round {r} {name:6} {dt:7.2f}s{shown}{'  (warm-up)' if r == 0 else ''}", flush=True)
            if r:
                times[name].append(dt)

    med = {k: statistics.median(v) for k, v in times.items()}
    ms = {k: 1000 * v / spec.steps_per_epoch for k, v in med.items()}
    print()
    for name in loops:
        print(f"{name:6} median steady epoch {med[name]:6.2f}s  ({ms[name]:.2f} ms/step)")
    # Each round runs the loops back to back, so a per-round ratio cancels most of the host's drift.
    paired = lambda a, b: statistics.median(x / y for x, y in zip(times[a], times[b]))  # noqa: E731
    print(f"runner / bare   = {med['runner'] / med['bare']:.3f} of medians, {paired('runner', 'bare'):.3f}"
          f" median of per-round ratios  (goal <= 1.05)")
    print(f"loader / runner = {med['loader'] / med['runner']:.2f} of medians, {paired('loader', 'runner'):.2f}"
          f" median of per-round ratios   (goal >= 2)")


if __name__ == "__main__":
    main()
