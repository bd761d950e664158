"""Is the runner's JAX timing the framework's, not the harness'? One process, runner vs a bare loop per mode.

    python benchmarks/jax_overhead.py                      # full MNIST, loop=step and loop=scan, 4 epochs
    python benchmarks/jax_overhead.py --loop scan --limit-train 12800 --block 50

For each loop mode, two loops train LeNet-5 (the spec: Adam 1e-3, batch 64) from the same initial
weights (reference.initial_params) on the same batches, taking turns block by block with the other
mode's pair (benchmarks/paired.py: rotating order, median of per-block ratios, first epoch warm-up):
  runner-M  dlbench's JaxBackend(loop=M).train_epoch on the block's rows, synchronize(), loss read back
  bare-M    what a JAX user would write: the same flax module, optax.adam, a jax.jit step with the
            weights and optimizer state donated, gathering its batch from the resident arrays by a
            row of indices passed from NumPy (step); or one jit'd lax.scan of that step over the
            block's rows (scan); block_until_ready and the last loss read back
Prints each mode's runner and bare ms/step and runner/bare (goal <= 1.05). The bare loops do less than
the runner (no per-step loss sum and training-accuracy count, optax's float32 bias corrections
instead of the spec's float64 ones fed in per step): the ratio charges the runner with all of it.
--model mlp (a cheaper step, where a per-step harness cost would show) or cnn; no batch-norm models.

On our 2-core CPU, nothing else running (2026-12-06, load 0.8-1.9: its own threads), --limit-train 12800
--block 50: runner/bare 0.991 [0.96-1.09] (step) and 1.020 [0.90-1.11] (scan) for lenet5; taken earlier beside
other work (load 2-5): 0.96-0.99 and 1.01, and 1.02 and 1.00 for mlp. On this CPU loop=scan is ~4x slower
than loop=step for lenet5 in the bare loop as much as in the runner: an XLA-CPU matter, not the harness.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import paired  # noqa: E402
from runner.workload import layouts, reference  # noqa: E402

MODES = ("step", "scan")


def runner_loop(spec, data, mode):
    from runner.backends.jax_backend import JaxBackend

    return paired.runner_block(JaxBackend, spec, data, {"loop": mode})


def bare_loop(spec, data, mode):
    import jax
    import jax.numpy as jnp
    import optax
    from flax import linen as nn

    from runner.backends.jax_backend import build_model

    model = build_model(nn, spec.model)  # the runner's flax module: what differs is the loop around it
    tx = optax.adam(spec.learning_rate, b1=spec.beta1, b2=spec.beta2, eps=spec.eps)
    params = jax.device_put(layouts.to_tree(layouts.to_channels_last(spec.model, reference.initial_params(spec))))
    state = {"params": params, "opt": tx.init(params)}
    x, y = jnp.asarray(data.train_x[..., None]), jnp.asarray(data.train_y.astype(np.int32))

    def loss_fn(p, xb, yb):
        logits = model.apply({"params": p}, xb, True)
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    def step(p, o, idx, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(p, x[idx], y[idx])
        updates, o = tx.update(grads, o, p)
        return optax.apply_updates(p, updates), o, loss

    def scan(p, o, rows, x, y):
        def one(carry, idx):
            p, o, loss = step(*carry, idx, x, y)
            return (p, o), loss
        (p, o), losses = jax.lax.scan(one, (p, o), rows)
        return p, o, losses[-1]

    train_step = jax.jit(step, donate_argnums=(0, 1))
    train_scan = jax.jit(scan, donate_argnums=(0, 1))

    def block(rows, _):
        p, o, rows = state["params"], state["opt"], rows.astype(np.int32)
        if mode == "scan":
            p, o, loss = train_scan(p, o, rows, x, y)
        else:
            for idx in rows:
                p, o, loss = train_step(p, o, idx, x, y)
        jax.block_until_ready((p, o))
        float(loss)
        state["params"], state["opt"] = p, o
    return block


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    paired.add_args(ap, models=paired.models_without_bn())
    ap.add_argument("--loop", choices=MODES, action="append", help="loop mode (repeatable; default: all)")
    args = ap.parse_args()
    modes = args.loop or list(MODES)
    spec, _, data = paired.load(args)
    loops = {}
    for mode in modes:
        loops[f"runner-{mode}"] = runner_loop(spec, data, mode)
        loops[f"bare-{mode}"] = bare_loop(spec, data, mode)
    import jax

    print(f"jax {jax.__version__} on {jax.default_backend()}, {spec.model}, {spec.steps_per_epoch} steps/epoch"
          f" in blocks of {args.block}, {args.epochs} epochs (first is warm-up), loop modes {', '.join(modes)}")
    t = paired.interleave(loops, spec, args.epochs, args.block, log=lambda line: print(line, flush=True))
    paired.print_modes(t, modes)


if __name__ == "__main__":
    main()
