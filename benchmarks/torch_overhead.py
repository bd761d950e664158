"""Is the runner's PyTorch timing the framework's, not the harness'? One process, four loops.

    python benchmarks/torch_overhead.py                     # full MNIST, 1 warm-up + 3 measured epochs
    python benchmarks/torch_overhead.py --epochs 6 --workers 2
    python benchmarks/torch_overhead.py --limit-train 12800 --block 50

The loops take turns in blocks of ~100 steps (benchmarks/paired.py: the order rotating every block, so
the drift of a shared machine hits all of them alike; each ratio is the median of per-block ratios
[min-max], and the epoch times are sums of blocks). The first epoch is warm-up. Loops, all LeNet-5,
Adam 1e-3, batch 64, same initial weights:
  runner  dlbench's TorchBackend.train_epoch on the block's batches, synchronized, loss read back
  bare    a hand-written loop over the same on-device tensors and the same batches
  loader  the tutorial way: DataLoader(shuffle=True) over uint8 images, a per-sample transform
          (ToTensor + Normalize, written out: there is no CPU torchvision here)
  input   the same DataLoader iterated alone, no model: the input cost the loader loop adds
On our 2-core CPU, nothing else running (2026-12-06, load 1.3-1.9: its own threads), --epochs 6 (full
MNIST, 50 blocks of 100 steps): runner/bare 0.997 [0.87-1.25], loader/runner 1.24, input share 0.17. With
--limit-train 12800 --block 50 the 12 blocks read 1.06 [0.68-1.48]: too few blocks to read.
Goals: runner/bare <= 1.05 and loader/runner >= 2. The second is bounded by (compute + input) /
compute: on a CPU, where a LeNet-5 step costs several ms, the per-sample input cost cannot double it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import paired  # noqa: E402
from runner.workload import reference  # noqa: E402
from runner.backends.torch_backend import TorchBackend, build_model, load_reference  # noqa: E402
from runner.data import store  # noqa: E402


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
    paired.add_args(ap)
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers (tutorial default 0)")
    args = ap.parse_args()

    spec, folder, data = paired.load(args)
    raw = store.load(spec.dataset, folder, spec.limit_train, spec.limit_test)
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
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {spec.steps_per_epoch} steps/epoch in"
          f" blocks of {args.block}, {args.epochs} epochs (first is warm-up), DataLoader workers {args.workers}")
    t = paired.interleave(loops, spec, args.epochs, args.block,
                          fresh=lambda: {"loader": make_loader(), "input": make_loader()},
                          log=lambda line: print(line, flush=True))
    print()
    for name in loops:
        print(f"{name:6} median steady epoch {t.ms_per_step(name) * t.steps / 1000:6.2f}s"
              f"  ({t.ms_per_step(name):.2f} ms/step)")
    print(t.line("runner", "bare"))
    print(t.line("loader", "runner", ">= 2"))
    print(f"input share of a loader step = {t.ratio('input', 'loader')[0]:.2f}")


if __name__ == "__main__":
    main()
