"""The parity gate: does this framework train the same function, from the same start, on the same batches?

    python -m runner verify [--framework torch,tensorflow,jax] [--steps 50]   # the table, exit 1 on a failure
    python -m runner run ...        # every completed run checks itself too: the record's `parity`
    python -m runner.launch.child REQUEST.json   # job "parity": one framework, in a process of its own

A backend starts from the reference weights and takes the first K steps of epoch 0. Step 1's loss,
logits and gradient, the weights after step 1 and the loss of every step are compared with the same
computation in float64 NumPy (runner.parity.float64), not with another framework: a shared float64 yardstick
makes every framework's distance its own float32 error, and two frameworks that agree with it agree
with each other.
"""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path

import numpy as np

from runner.parity import float64
from runner.workload import reference
from runner.errors import reason
from runner.workload.spec import Spec

DEFAULT_STEPS = 50

# Why these numbers. float32 rounds at u = 6e-8; LeNet-5's longest sums have 400 terms, so honest
# float32 results (any summation order, oneDNN/cuDNN/Eigen kernels) sit within ~n*u = 2.4e-5 of
# float64 at worst and within ~1e-7 in practice (measured: 5e-8 loss, 3e-8 logits, 2e-7 gradient on
# CPU for torch, tensorflow and jax). The limits leave room for that worst case, and no more:
# TF32 (10-bit mantissa, u = 5e-4), bfloat16, a wrong layout, a different eps or a different loss
# reduction all land orders of magnitude above them. The trajectory limit is looser because float32
# differences grow step by step through Adam's update (measured growth: ~1e-6 after 50 steps).
TOLERANCES = {
    "loss_rel_diff": 1e-5,        # |loss1 - ref| / |ref|, step 1
    "logits_max_diff": 1e-5,      # max |logits1 - ref| / max(1, max |ref|), step 1
    "grad_rel_diff": 1e-4,        # ||g1 - g_ref|| / ||g_ref||, all parameters together
    "weights_rel_diff": 1e-5,     # ||w after step 1 - ref|| / ||ref||
    "trajectory_max_diff": 1e-3,  # max over K steps of |loss_k - ref_k| / max(1, |ref_k|)
}


def _norm_diff(a: dict, b: dict) -> float:
    num = sum(float(((np.asarray(a[k], np.float64) - b[k]) ** 2).sum()) for k in b)
    den = sum(float((b[k] ** 2).sum()) for k in b)
    return (num / den) ** 0.5 if den else float(num > 0)


def framework_trace(backend, spec: Spec, steps: int) -> dict:
    """The first `steps` steps of epoch 0 on a freshly set-up backend, through its timed code path
    (train_epoch, one batch at a time) after an untimed probe of step 1's gradient."""
    order = reference.epoch_order(spec, 0)[:steps]
    loss1, logits, grads = backend.probe_step(order[0])
    losses, after1 = [], None
    for i, row in enumerate(order):
        stats = backend.train_epoch(row[None])
        backend.synchronize()
        losses.append(float(stats.loss_sum))
        if i == 0:
            after1 = backend.parameters()
    return {"loss1": loss1, "logits": logits, "grads": grads, "params": after1, "losses": losses}


def reference_trace(spec: Spec, train_x, train_y, data_sha: str, steps: int) -> dict:
    """float64.trace for the spec's first `steps` steps, cached on disk (a few seconds to compute)."""
    from runner import atomic
    from runner.data.store import cache_root

    path = cache_root() / "parity" / f"{spec.hash[:16]}-{data_sha[:16]}-{steps}.npz"
    names = list(reference.initial_params(spec))
    try:
        with np.load(path) as z:
            return {"losses": list(z["losses"]), "logits": z["logits"],
                    "grads": {n: z["g:" + n] for n in names}, "params": {n: z["p:" + n] for n in names}}
    except (OSError, KeyError, ValueError):
        pass  # not there yet, or unreadable: compute it again
    order = reference.epoch_order(spec, 0)[:steps]
    ref = float64.trace(spec, reference.initial_params(spec), train_x, train_y, order)
    buf = io.BytesIO()
    np.savez(buf, losses=np.array(ref["losses"]), logits=ref["logits"],
             **{"g:" + n: ref["grads"][n] for n in names}, **{"p:" + n: ref["params"][n] for n in names})
    atomic.write_bytes(path, buf.getvalue(), replace=True)
    return ref


def measure(fw: dict, ref: dict) -> dict:
    """The five distances between a framework trace and the reference trace."""
    ref_losses = np.array(ref["losses"])
    n = min(len(fw["losses"]), len(ref_losses))
    traj = np.abs(np.array(fw["losses"][:n]) - ref_losses[:n]) / np.maximum(1.0, np.abs(ref_losses[:n]))
    return {
        "loss_rel_diff": abs(fw["loss1"] - ref["losses"][0]) / max(abs(ref["losses"][0]), 1e-30),
        "logits_max_diff": float(np.abs(fw["logits"] - ref["logits"]).max() / max(1.0, np.abs(ref["logits"]).max())),
        "grad_rel_diff": _norm_diff(fw["grads"], ref["grads"]),
        "weights_rel_diff": _norm_diff(fw["params"], ref["params"]),
        "trajectory_max_diff": float(traj.max()) if n else None,
    }


def judge(diffs: dict, steps: int, seconds: float | None = None) -> dict:
    """The record's `parity` object: distances, limits, and pass/fail (NaN fails)."""
    failed = [k for k, limit in TOLERANCES.items() if not (diffs[k] is not None and diffs[k] <= limit)]
    return {"status": "fail" if failed else "pass", "reference": "numpy-float64", "steps": steps,
            **{k: (None if v is None or not np.isfinite(v) else float(v)) for k, v in diffs.items()},
            "tolerances": dict(TOLERANCES), "failed": failed, "error": None, "seconds": seconds}


def error_result(steps: int, message: str) -> dict:
    return {"status": "error", "reference": "numpy-float64", "steps": steps,
            **{k: None for k in TOLERANCES}, "tolerances": dict(TOLERANCES), "failed": [],
            "error": message, "seconds": None}


def check(make_backend, spec: Spec, data, steps: int) -> dict:
    """Set up a fresh backend (make_backend()), trace it and judge it against the reference."""
    steps = min(steps, spec.steps_per_epoch)
    t0 = time.perf_counter()
    ref = reference_trace(spec, data.train_x, data.train_y, data.sha256.get("train-images-idx3-ubyte", ""), steps)
    backend = make_backend()
    backend.setup(reference.initial_params(spec), data.train_x, data.train_y, data.test_x, data.test_y)
    fw = framework_trace(backend, spec, steps)
    return judge(measure(fw, ref), steps, seconds=time.perf_counter() - t0)


def after_training(make_backend, spec: Spec, data, steps: int) -> dict:
    """The gate as every completed run takes it (runner.launch.worker): a failure or an error is
    reported and returned, never raised: it marks the record, it does not fail the run."""
    import traceback

    from runner import console

    print(f"parity: checking the first {min(steps, spec.steps_per_epoch)} steps against the float64 reference",
          file=sys.stderr)
    try:
        result = check(make_backend, spec, data, steps)
    except Exception as e:
        console.log_only(traceback.format_exc())
        result = error_result(steps, reason(e))
    if result["status"] != "pass":
        print(f"parity: {result['status'].upper()} {', '.join(result['failed'])} {result['error'] or ''}",
              file=sys.stderr)
    return result


def run_job(req, started: float) -> int:
    """The "parity" job (python -m runner verify starts one child per framework): the gate alone,
    its result written to req.result_path for the parent's table."""
    from runner import atomic, backends
    from runner.backends.base import FrameworkUnavailable
    from runner.data import store

    steps, info = req.parity_steps, {}
    try:
        data = store.load_for(req.spec, Path(req.data_dir))

        def make():
            backend = backends.create(req.framework, req.spec, req.device, req.options)
            info.update(backend.info())
            return backend

        result = check(make, req.spec, data, steps)
    except FrameworkUnavailable as e:
        result = {**error_result(steps, str(e)), "status": "unavailable"}
    except Exception as e:  # reported in the table, not a crash of verify
        result = error_result(steps, reason(e))
    out = {"framework": req.framework, "parity": result, **info}
    from runner.workload import ranks

    if ranks.is_writer():  # data-parallel: every rank took the gate together, rank 0 reports it
        atomic.write_bytes(req.result_path, json.dumps(out, allow_nan=False).encode(), replace=True)
    return 0
