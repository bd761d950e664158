"""N independent models of one architecture stepped together, timed per N: the child's job "ensemble".

    python -m runner ensemble --framework torch,jax --models 1,2,4,8 --arch mlp4|cnn4 [--batch 64]
    python -m runner.launch.child REQUEST.json      # job "ensemble" -> run_job (runner.launch.child)

The architectures are runner.workload.models' "mlp4" (784-512-512-512-10, ReLU) and "cnn4" (conv
1->16 3x3 pad 1, ReLU, max-pool 2; conv 16->32 3x3 pad 1, ReLU, max-pool 2; fc 1568->128, ReLU; fc
128->10). Model i starts from the reference initializer (runner.workload.reference) with seed
spec.seed + i, in every framework, so torch's model i and JAX's are the same function; it reads
batch i of epoch 0's order of the spec's dataset (real images; `--dataset synthetic` needs no
download), so the input is N x B x 1 x 28 x 28.

Two operations per N (runner.micro.torch_ops / jax_ops say how each framework batches them):
  fprop: every model's forward and mean cross-entropy on its batch, no gradient;
  bprop: every model's gradient of that loss: the forward again plus the backward (torch.func.grad,
         jax.grad), no optimizer update.
Each is timed over `iterations` calls after `warmup` untimed ones, the device synchronized before
every clock read (runner.micro.timing).

Checks (runner.micro.checks), per N: each of the N models' logits and gradients in the batched
computation against that model run alone (no vmap, the way training runs it); and once, model 0
alone against the float64 NumPy reference (runner.parity.float64) on the same batch.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from runner.micro import FRAMEWORKS, checks, job, timing

OPS = ("fprop", "bprop")
DEFINITIONS = {
    "fprop": "every model's forward and mean cross-entropy on its own batch, no gradient",
    "bprop": "every model's gradient of that loss: the forward again plus the backward, no optimizer update",
    "inputs": "model i reads batch i of epoch 0's order of the spec's dataset",
    "weights": "model i: the reference initializer with seed spec.seed + i",
}


def initial_params(spec, index: int) -> dict:
    """Model `index`'s starting weights: the reference initializer at seed spec.seed + index."""
    from runner.workload import reference

    return reference.initial_params(dataclasses.replace(spec, seed=spec.seed + index))


def compare(n: int, logits: np.ndarray, grads: list[dict], alone: list[tuple]) -> list[dict]:
    """The checks for N = n: every model's batched logits (n, B, 10) and gradients against its own
    run alone (alone[i] = (logits, gradients)); the worst model's distance."""
    logit_diff = max(checks.scaled_max_diff(logits[i], alone[i][0]) for i in range(n))
    grad_diff = max(checks.grad_rel_diff(grads[i], alone[i][1]) for i in range(n))
    return [checks.check(f"N={n}: logits vs each model alone", logit_diff, checks.LOGITS_LIMIT, size=n,
                         of="logits", against="alone"),
            checks.check(f"N={n}: gradients vs each model alone", grad_diff, checks.GRAD_LIMIT, size=n,
                         of="gradients", against="alone")]


def versus_float64(arch: str, params: dict, x: np.ndarray, y: np.ndarray, alone: tuple) -> list[dict]:
    """Model alone (its logits, gradients) against the float64 reference on the same batch."""
    from runner.parity import float64

    _, logits, grads = float64.forward_backward(arch, {k: v.astype(np.float64) for k, v in params.items()}, x, y)
    return [checks.check("model 0 alone vs float64: logits", checks.scaled_max_diff(alone[0], logits),
                         checks.LOGITS_LIMIT, of="logits", against="float64"),
            checks.check("model 0 alone vs float64: gradients", checks.grad_rel_diff(alone[1], grads),
                         checks.GRAD_LIMIT, of="gradients", against="float64")]


def measure(req, backend, data, study: dict, say) -> None:
    """Fill `study` (operations, checks) for every N in the settings, smallest first."""
    settings = study["settings"]
    arch, sizes, spec = req.spec.model, sorted(settings["models"]), req.spec
    ops = job.framework_ops(FRAMEWORKS[req.job], req.framework, req.job)
    settings.update(definitions=DEFINITIONS, params_per_model=_n_params(arch))
    x, y = job.batches(req, data, max(sizes))
    params = [initial_params(spec, i) for i in range(max(sizes))]
    alone = [ops.alone(backend, arch, params[i], x[i], y[i]) for i in range(max(sizes))]
    study["checks"] += versus_float64(arch, params[0], x[0], y[0], alone[0])
    for n in sizes:
        batched = ops.Ensemble(backend, arch, params[:n], x[:n], y[:n])
        outs = {}
        for op in OPS:
            outs[op], row = timing.time_op(getattr(batched, op), batched.sync, settings["iterations"],
                                           settings["warmup"])
            study["operations"].append(operation_row(op, n, spec.batch_size, row))
        found = compare(n, batched.logits(outs["fprop"]), batched.grads(outs["bprop"]), alone)
        study["checks"] += found
        del batched, outs
        times = ", ".join(f"{r['op']} {1e3 * r['mean_s']:.2f} ms" for r in study["operations"][-len(OPS):])
        say(f"{arch} N={n}: {times}; checks {'pass' if all(c['passed'] for c in found) else 'FAIL'}")


def operation_row(op: str, n: int, batch: int, row: dict) -> dict:
    """The record's row: the timing plus what it means per model."""
    mean = row["mean_s"]
    return {"op": op, "size": n, **row, "batch": batch, "per_model_s": mean / n,
            "samples_per_s_total": n * batch / mean if mean else None,
            "samples_per_s_per_model": batch / mean if mean else None}


def _n_params(arch: str) -> int:
    from runner.workload import models

    return models.n_params(arch)


def run_job(req, started: float) -> int:
    """The "ensemble" job (runner.launch.child)."""
    return job.run(req, started, measure)
