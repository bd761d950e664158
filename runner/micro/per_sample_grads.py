"""Per-example gradients of the LeNet-5 loss over a batch, timed per batch size: the child's job
"per_sample_grads".

    python -m runner per-sample-grads --framework torch,jax,tensorflow --batch-sizes 16,64,256
    python -m runner.launch.child REQUEST.json      # job "per_sample_grads" -> run_job (runner.launch.child)

The model is the spec's (lenet5 by default) with the reference initial weights
(runner.workload.reference.initial_params); the examples are the first B of epoch 0's first batch of
the spec's dataset (spec.batch_size is the largest B), so every batch size and every framework
reads the same images. Each example's gradient is that of its own cross-entropy (a batch of one).

Two operations per batch size B (runner.micro.torch_ops / jax_ops / tf_ops say how):
  vmap: the B gradients in one vectorized call (torch.func.vmap(grad), jax.vmap(jax.grad) under jit,
        TF's GradientTape.jacobian with pfor);
  loop: the same B gradients one example at a time from a Python loop, stacked: what vectorizing saves.
Each is timed over `iterations` calls after `warmup` untimed ones, the device synchronized before
every clock read (runner.micro.timing).

Checks (runner.micro.checks), per B: the vectorized gradients against the loop's (same framework),
and against the float64 NumPy reference (runner.parity.float64.forward_backward on one example at a
time): the largest relative distance over the B examples, each example's gradient one vector.
"""

from __future__ import annotations

import numpy as np

from runner.micro import FRAMEWORKS, checks, job, timing

OPS = ("vmap", "loop")


def float64_per_example(model: str, params: dict, x: np.ndarray, y: np.ndarray) -> dict:
    """{canonical name: (B, ...)}: the float64 reference's gradient of each example alone."""
    from runner.parity import float64

    p64 = {k: v.astype(np.float64) for k, v in params.items()}
    each = [float64.forward_backward(model, p64, x[i:i + 1], y[i:i + 1])[2] for i in range(len(x))]
    return {k: np.stack([g[k] for g in each]) for k in p64}


def compare(b: int, vectorized: dict, looped: dict, reference: dict) -> list[dict]:
    """The checks for batch size b: the vectorized per-example gradients against the loop's and the
    float64 reference's (their first b examples)."""
    ref = {k: v[:b] for k, v in reference.items()}
    return [checks.check(f"B={b}: vmap vs loop", checks.per_example_rel_diff(vectorized, looped),
                         checks.GRAD_LIMIT, size=b, of="gradients", against="loop"),
            checks.check(f"B={b}: vmap vs float64", checks.per_example_rel_diff(vectorized, ref),
                         checks.GRAD_LIMIT, size=b, of="gradients", against="float64")]


def measure(req, backend, data, study: dict, say) -> None:
    """Fill `study` (operations, checks) for every batch size in the settings, smallest first."""
    from runner.workload import reference

    settings, spec = study["settings"], req.spec
    sizes = sorted(settings["batch_sizes"])
    ops = job.framework_ops(FRAMEWORKS[req.job], req.framework, req.job)
    x, y = job.batches(req, data, 1)
    x, y = x[0], y[0]  # epoch 0's first batch, of the largest size
    params = reference.initial_params(spec)
    grads = ops.PerSample(backend, spec.model, params, x, y)
    settings.update(vmap=grads.vectorized, loop=grads.looped)
    ref = float64_per_example(spec.model, params, x[:max(sizes)], y[:max(sizes)])
    for b in sizes:
        outs, rows = {}, {}
        for op in OPS:
            outs[op], row = timing.time_op(getattr(grads, op)(b), grads.sync, settings["iterations"],
                                           settings["warmup"])
            rows[op] = {"op": op, "size": b, **row}
        speedup = rows["loop"]["mean_s"] / rows["vmap"]["mean_s"] if rows["vmap"]["mean_s"] else None
        rows["vmap"]["speedup_vs_loop"] = speedup
        study["operations"] += rows.values()
        found = compare(b, grads.numpy(outs["vmap"]), grads.numpy(outs["loop"]), ref)
        study["checks"] += found
        faster = f" ({speedup:.1f}x)" if speedup else ""
        say(f"B={b}: vmap {1e3 * rows['vmap']['mean_s']:.2f} ms, loop {1e3 * rows['loop']['mean_s']:.2f} ms{faster};"
            f" checks {'pass' if all(c['passed'] for c in found) else 'FAIL'}")


def run_job(req, started: float) -> int:
    """The "per_sample_grads" job (runner.launch.child)."""
    return job.run(req, started, measure)
