"""The GPU counterpart of torch_overhead.py: is the runner's torch step, eager and as a CUDA graph,
as fast as a bare loop written the way the PyTorch docs write it? One process, loops alternating.

    python benchmarks/torch_step_overhead.py                         # cuda: eager and graph pairs
    python benchmarks/torch_step_overhead.py --device cpu            # eager only (the CPU runs no graph)
    python benchmarks/torch_step_overhead.py --modes graph --epochs 6

Why in one process: on a lent H200 two whole-process runs of the same command differed by up to 15 %,
so only blocks of the same batches taken in turn (benchmarks/paired.py) can show <= 1.05. Pairs, all
LeNet-5, Adam 1e-3, batch 64, the same initial weights, data resident on the device:
  runner-eager  TorchBackend(step=eager).train_epoch, synchronized, loss read back (as the harness)
  bare-eager    model(x[idx]); cross_entropy; zero_grad; backward; Adam.step(), synchronized per block
  runner-graph  TorchBackend(step=graph): the fused step captured once, replayed per batch
  bare-graph    the docs' whole-network capture: static x/y filled from the resident data per step,
                forward, backward and Adam(capturable=True) captured in one torch.cuda.CUDAGraph
Goal: runner/bare <= 1.05 in each mode. Not measured on our CPU-only machines (no GPU lent yet).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import paired  # noqa: E402
from runner.backends.torch_backend import TorchBackend, build_model, load_reference  # noqa: E402
from runner.workload import reference  # noqa: E402


def bare_eager(spec, dev, x, y):
    model = build_model(torch, spec.model)
    load_reference(torch, model, reference.initial_params(spec))
    model.to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=spec.learning_rate, betas=(spec.beta1, spec.beta2), eps=spec.eps)

    def block(rows, _):
        for idx in torch.from_numpy(rows).to(dev):
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sync(dev)
    return block


def bare_graph(spec, dev, x, y, first_rows):
    """https://pytorch.org/docs/stable/notes/cuda.html#whole-network-capture, on the resident data."""
    model = build_model(torch, spec.model)
    load_reference(torch, model, reference.initial_params(spec))
    model.to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=spec.learning_rate, betas=(spec.beta1, spec.beta2), eps=spec.eps,
                           capturable=True)
    idx0 = torch.from_numpy(first_rows[0]).to(dev)
    static_x, static_y = x[idx0].clone(), y[idx0].clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(static_x), static_y).backward()
            opt.step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        loss = torch.nn.functional.cross_entropy(model(static_x), static_y)
        loss.backward()
        opt.step()

    def block(rows, _):
        for idx in torch.from_numpy(rows).to(dev):
            static_x.copy_(x[idx])
            static_y.copy_(y[idx])
            graph.replay()
        sync(dev)
    return block


def sync(dev) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    paired.add_args(ap)
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help="default cuda")
    ap.add_argument("--modes", default=None, help="eager,graph (default: both on cuda, eager on the cpu)")
    args = ap.parse_args()
    modes = (args.modes or ("eager,graph" if args.device == "cuda" else "eager")).split(",")
    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"--device cuda: torch {torch.__version__} sees no CUDA GPU here (--device cpu for the eager pair)",
              file=sys.stderr)
        raise SystemExit(2)
    if "graph" in modes and args.device != "cuda":
        print("--modes graph needs --device cuda (a CUDA graph)", file=sys.stderr)
        raise SystemExit(2)
    if set(modes) - {"eager", "graph"}:
        print(f"--modes {args.modes}: choose from eager, graph", file=sys.stderr)
        raise SystemExit(2)

    spec, _, data = paired.load(args)
    dev = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # as the runner
    x = torch.from_numpy(data.train_x[:, None]).to(dev)
    y = torch.from_numpy(data.train_y.astype(np.int64)).to(dev)
    loops = {}
    for mode in modes:
        loops[f"runner-{mode}"] = paired.runner_block(TorchBackend, spec, data, {"step": mode}, args.device)
        loops[f"bare-{mode}"] = (bare_eager(spec, dev, x, y) if mode == "eager"
                                 else bare_graph(spec, dev, x, y, reference.epoch_order(spec, 0)))
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(f"torch {torch.__version__} on {name}, {spec.steps_per_epoch} steps/epoch in blocks of {args.block},"
          f" {args.epochs} epochs (first is warm-up)")
    t = paired.interleave(loops, spec, args.epochs, args.block, log=lambda line: print(line, flush=True))
    paired.print_modes(t, modes)


if __name__ == "__main__":
    main()
