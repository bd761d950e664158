"""The parity gate: does this framework train the same function, from the same start, on the same batches?

    python -m runner verify [--framework torch,tensorflow,jax] [--steps 50]   # the table, exit 1 on a failure
    python -m runner run ...        # every completed run checks itself too: the record's `parity`
    python -m runner.launch.child REQUEST.json   # job "parity": one framework, in a process of its own

The yardstick is float64 NumPy (runner.parity.yardstick), not another framework, so each framework's
distance is its own float32 error. A trajectory after K steps alone is ill-conditioned: as soon as one
ReLU sits within float32 noise of zero, honest float32 runs part ways (issue 19: a learning rate off
by 3e-6 gave the same 1.2e-3 as a real bug). So the gate asks three well-posed questions:

1. Per step, from the reference's state (CHECKS 1-4). At each checked step k the framework is loaded
   with the reference's weights and Adam moments (rounded to float32) and takes one step through its
   timed code path; its loss, logits, gradient and weight update must match the float64 step taken
   from that same state. Elementwise for the update: the 99th percentile over parameters of
   max(|dw - dw_ref| - ulp/2, 0) / (|dw_ref| + ulp), ulp that of the weight: the half ulp is the
   rounding of the new weight that every float32 program must make.
2. Consistent bias (CHECK 5): over every checked step and parameter whose update is well above the
   weight's rounding (|dw_ref| > 64 ulp(w)), the median of dw / dw_ref - 1. Honest float32 rounding is
   unbiased (measured ~1e-8); Adam's bias corrections in float32 shorten every update by ~7e-6.
3. The trajectory (CHECK 6): the loss of each of the K steps, run freely from the initial weights,
   within ENVELOPE_FACTOR (100) x the envelope of float32 replicas of the reference (started +-1 ulp apart),
   measured for this spec and these batches, so a chaotic stretch widens the limit honestly.

The gradient limit is 1e-4 or GRAD_NOISE_FACTOR (10) x the float32 gradient noise measured at the
checked steps (runner.parity.yardstick: ReLU inputs within float32 noise of zero flip), whichever
is larger: 1e-4 for LeNet-5, MLP and the CNN (noise ~1e-7); ~1e-2 for ResNet-18, whose honest
float32 gradients stray ~1e-3 (the limit is in the record with the value). The update limit grows
the same way, to UPDATE_NOISE_FACTOR (10) x the float32 update noise: those gradients taken through
Adam, whose m / sqrt(v) turns a component that cancels to within float32 noise into a whole step.
A large batch has many: at batch 8192 on MNIST (5 steps) the noise reads 4.2e-4 (limit 4.2e-3), where
JAX read 4.1e-4 and torch, in another run, 4.2e-4, against a fixed 1e-4; at batch 32-2048 every
framework reads <= 1.2e-6 and the limit stays 1e-4 (results/sweep-batch-size).

Models with batch norm add CHECK 7, bn_stats_rel_diff: at each checked step the framework is also
loaded with the reference's running statistics; after its step, the batch statistics its running
statistics imply, (running_new - (1 - momentum) * running_old) / momentum, against the float64
step's batch mean and unbiased variance: the relative norm difference over all BN layers, the
larger of means and variances. It catches a biased running variance (1/(n-1): 8e-3 at batch 8 in
layer4, where n = 8*4*4) and Keras'/flax's momentum convention (0.9 for 0.1).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from runner.parity import yardstick
from runner.workload import reference
from runner.errors import reason
from runner.workload.spec import Spec

DEFAULT_STEPS = 50

# Why these numbers. float32 rounds at u = 6e-8; LeNet-5's longest sums have 400 terms, so honest
# float32 results sit within ~n*u = 2.4e-5 of float64 at worst and ~1e-7 in practice. Measured on CPU
# for torch, tensorflow and jax, smoke and default presets, seeds 42, 1234567 and 7 (issue 19):
# loss <= 3.0e-7, logits <= 3.8e-7, gradient <= 1.1e-6, update p99 <= 1.2e-6, update bias 0 (most
# updates agree to the bit: the median ratio is exactly 1). TF32 (u = 5e-4), bfloat16, a wrong layout or
# a summed loss land orders of magnitude above; eps 1e-7 and float32 bias corrections land above the
# bias limit (-1.2e-4 and -6.8e-6).
LIMITS = {
    "loss_rel_diff": 1e-5,        # max over checked steps of |loss - ref| / |ref|
    "logits_max_diff": 1e-5,      # max over checked steps of max |logits - ref| / max(1, max |ref|)
    "grad_rel_diff": 1e-4,        # max over checked steps of ||g - g_ref|| / ||g_ref||, all parameters
    "update_rel_diff": 1e-4,      # max over checked steps of the p99 elementwise update error (above)
    "update_bias": 1e-6,          # |median of dw / dw_ref - 1|
}
# Trajectory limit = ENVELOPE_FACTOR x the float32 replicas' widest stray. The replicas differ only
# in their starting weights; a framework differs in every sum's order, so it strays further (measured:
# up to 6.5x the envelope, torch on smoke seed 7). What only the trajectory can catch (state lost
# between steps, a wrong batch or step count) lands at 1e-2 and above.
ENVELOPE_FACTOR = 100
TRAJECTORY_FLOOR = 1e-6           # ... but never below this (an envelope of ~0 on a tiny spec)
# Gradient limit = max(LIMITS' 1e-4, GRAD_NOISE_FACTOR x the float32 replicas' widest gradient stray
# at the checked steps): a framework's every sum is ordered differently, not just its weights 1 ulp
# off, so it flips a few more ReLUs than a replica (the stray grows as the square root of the flips);
# TF32 or bfloat16 flip hundreds to thousands of times more.
GRAD_NOISE_FACTOR = 10
# Update limit = max(LIMITS' 1e-4, UPDATE_NOISE_FACTOR x the replicas' widest p99 update error): the
# same reasoning, through Adam (runner.parity.yardstick.float32_noise).
UPDATE_NOISE_FACTOR = 10
BN_LIMIT = 1e-4                   # bn_stats_rel_diff (models with batch norm only)
CHECK_NAMES = (*LIMITS, "trajectory_max_diff")
BN_CHECK = "bn_stats_rel_diff"


def _norm(a: dict) -> float:
    return sum(float((np.asarray(v, np.float64) ** 2).sum()) for v in a.values()) ** 0.5


def _norm_diff(a: dict, b: dict) -> float:
    num = sum(float(((np.asarray(a[k], np.float64) - b[k]) ** 2).sum()) for k in b)
    den = sum(float((np.asarray(b[k], np.float64) ** 2).sum()) for k in b)
    return (num / den) ** 0.5 if den else float(num > 0)


def framework_run(backend, spec: Spec, y: dict) -> dict:
    """The framework's side: the free trajectory, then one step from each checked reference state."""
    order = reference.epoch_order(spec, 0)[:len(y["losses"])]
    losses = []
    for row in order:
        stats = backend.train_epoch(row[None])
        backend.synchronize()
        losses.append(float(stats.loss_sum))
    at = []
    for k, a in zip(y["checked"], y["at"]):
        bn = {"buffers": a["r"]} if a.get("r") else {}  # only models with batch norm have buffers
        backend.set_state(a["w"], a["m"], a["v"], int(k), **bn)
        loss, logits, grads = backend.probe_step(order[k])
        backend.train_epoch(order[k][None])
        backend.synchronize()
        after = backend.parameters()
        at.append({"loss": loss, "logits": np.asarray(logits), "g": grads,
                   "dw": {n: np.asarray(after[n], np.float64) - a["w"][n] for n in a["w"]}})
        if bn:
            at[-1]["bs"] = implied_batch_stats(spec.model, a["r"], backend.buffers())
    return {"losses": losses, "at": at}


def implied_batch_stats(model: str, before: dict, after: dict) -> dict:
    """The batch statistics a step's running-statistics update took (models.BatchNorm's rule
    solved for batch_stat), in float64: {buffer name: batch mean or unbiased variance}."""
    from runner.workload import models

    out = {}
    for name, bn in models.batchnorms(model).items():
        for key in ("running_mean", "running_var"):
            b = f"{name}.{key}"
            old, new = np.asarray(before[b], np.float64), np.asarray(after[b], np.float64)
            out[b] = (new - (1 - bn.momentum) * old) / bn.momentum
    return out


def _bn_stats_diff(got: dict, ref: dict) -> float:
    """The larger of the relative norm differences of all BN layers' means and of their variances."""
    diffs = []
    for key in (".running_mean", ".running_var"):
        names = [n for n in ref if n.endswith(key)]
        diffs.append(_norm_diff({n: got[n] for n in names}, {n: np.asarray(ref[n], np.float64) for n in names}))
    return max(diffs)


def measure(fw: dict, y: dict) -> dict:
    """Every check's measured value (see the module docstring), None where not finite."""
    loss, logits, grad, upd, ratios, bn = [], [], [], [], [], []
    # float32 rounds a loss and its gradient at the scale training runs at, not at their own size:
    # softmax's 1 - p comes from p ~ 1, so once the loss collapses (easy data: ~1e5-fold within 30
    # steps of the synthetic set) a plain relative check measures rounding, not correctness (measured:
    # torch, TF and JAX all read ~1e-2 on synthetic mlp and cnn, with logits, updates and trajectory at
    # 1e-7). Both are relative to the largest reference value among the checked states instead: on
    # real data that is step 1's, and every injected fault stays orders of magnitude above the limit.
    loss_scale = max([abs(r["loss"]) for r in y["at"]] + [1e-30])
    grad_scale = max([_norm(r["g"]) for r in y["at"]] + [1e-30])
    for f, r in zip(fw["at"], y["at"]):
        loss.append(abs(f["loss"] - r["loss"]) / max(abs(r["loss"]), loss_scale))
        logits.append(float(np.abs(f["logits"] - r["logits"]).max() / max(1.0, np.abs(r["logits"]).max())))
        grad.append(_norm_diff(f["g"], r["g"]) * _norm(r["g"]) / max(_norm(r["g"]), grad_scale))
        for n, ref_dw in r["dw"].items():
            ref_dw, got, w = np.asarray(ref_dw, np.float64), f["dw"][n], r["w"][n]
            big = np.abs(ref_dw) > 64 * np.maximum(yardstick.ulp(w), yardstick.ulp(w + ref_dw))
            ratios.append((got[big] / ref_dw[big] - 1.0).ravel())
        upd.append(yardstick.update_p99(yardstick.update_errors(r["dw"], f["dw"], r["w"])))
        if r.get("bs"):
            bn.append(_bn_stats_diff(f["bs"], r["bs"]) if "bs" in f else float("nan"))
    ratios = np.concatenate(ratios) if ratios else np.zeros(0)
    ref_losses = np.asarray(y["losses"])
    n = min(len(fw["losses"]), len(ref_losses))
    traj = np.abs(np.asarray(fw["losses"][:n]) - ref_losses[:n]) / np.maximum(1.0, np.abs(ref_losses[:n]))
    values = {"loss_rel_diff": max(loss), "logits_max_diff": max(logits), "grad_rel_diff": max(grad),
              "update_rel_diff": max(upd), "update_bias": float(np.median(ratios)) if len(ratios) else None,
              "trajectory_max_diff": float(traj.max()) if n else None}
    if bn:
        values[BN_CHECK] = max(bn)
    return {k: (None if v is None or not np.isfinite(v) else float(v)) for k, v in values.items()}


def envelope(y: dict) -> float:
    """The widest stray of the float32 replicas from the float64 trajectory (relative, as the check)."""
    ref = np.asarray(y["losses"])
    rep = np.asarray(y["replica_losses"])
    return float((np.abs(rep - ref) / np.maximum(1.0, np.abs(ref))).max()) if rep.size else 0.0


def _widest(y: dict, key: str) -> float:
    """The widest float32 noise of one kind (yardstick: "grad_noise", "update_noise") at the checked steps."""
    return max([float(a.get(key, 0.0)) for a in y["at"]] + [0.0])


def gradient_noise(y: dict) -> float:
    """The float32 replicas' widest relative gradient stray at the checked steps (yardstick)."""
    return _widest(y, "grad_noise")


def update_noise(y: dict) -> float:
    """The float32 replicas' widest p99 update error at the checked steps (yardstick)."""
    return _widest(y, "update_noise")


def limits_for(y: dict) -> dict:
    """Every check's limit for this yardstick: the gradient's, the update's and the trajectory's
    measured, the batch-statistics check only where the model has batch norm."""
    out = {**LIMITS, "grad_rel_diff": max(LIMITS["grad_rel_diff"], GRAD_NOISE_FACTOR * gradient_noise(y)),
           "update_rel_diff": max(LIMITS["update_rel_diff"], UPDATE_NOISE_FACTOR * update_noise(y)),
           "trajectory_max_diff": max(ENVELOPE_FACTOR * envelope(y), TRAJECTORY_FLOOR)}
    if any(a.get("bs") for a in y["at"]):
        out[BN_CHECK] = BN_LIMIT
    return out


def _passes(name: str, value, limit: float) -> bool:
    if value is None:  # NaN or infinite: never a pass
        return False
    return abs(value) <= limit if name == "update_bias" else value <= limit


def judge(values: dict, limits: dict, steps: int, checked=(), envelope_width=None, replicas=0,
          seconds: float | None = None) -> dict:
    """The record's `parity` object: every check's value and limit, and pass/fail (the BN check
    where the limits have one)."""
    names = (*CHECK_NAMES, *([BN_CHECK] if BN_CHECK in limits else []))
    checks = {k: {"value": values.get(k), "limit": float(limits[k])} for k in names}
    failed = [k for k, c in checks.items() if not _passes(k, c["value"], c["limit"])]
    return {"status": "fail" if failed else "pass", "reference": "numpy-float64", "steps": steps,
            "checked_steps": [int(k) + 1 for k in checked], "checks": checks,
            "trajectory_envelope": envelope_width, "replicas": replicas, "failed": failed, "error": None,
            "seconds": seconds}


def error_result(steps: int, message: str, status: str = "error") -> dict:
    return {"status": status, "reference": "numpy-float64", "steps": steps, "checked_steps": [],
            "checks": {k: {"value": None, "limit": LIMITS.get(k)} for k in CHECK_NAMES},
            "trajectory_envelope": None, "replicas": 0, "failed": [], "error": message, "seconds": None}


def _fmt(v) -> str:
    return "not finite" if v is None else f"{v:.1e}"


def describe(result: dict) -> str:
    """One line: 'pass', or every failed check with its measured value and limit, or the error."""
    status = result.get("status") or "unknown"
    if status == "pass":
        return "pass"
    if result.get("error"):
        return f"{status.upper()}: {result['error']}"
    checks = result.get("checks") or {}
    parts = []
    for name in result.get("failed") or []:
        c = checks.get(name) or {}
        value, limit = c.get("value"), c.get("limit")
        limit_s = "?" if limit is None else f"{limit:.1e}"
        if name == "update_bias" and value is not None:
            parts.append(f"{name} {value:+.1e} outside +-{limit_s}")
        else:
            parts.append(f"{name} {_fmt(value)} > {limit_s}")
    return f"{status.upper()}: " + (", ".join(parts) or "no check named")


def check(make_backend, spec: Spec, data, steps: int) -> dict:
    """Set up a fresh backend (make_backend()), run it against the yardstick and judge it."""
    steps = min(steps, spec.steps_per_epoch)
    t0 = time.perf_counter()
    y = yardstick.load_or_compute(spec, data.train_x, data.train_y,
                                  data.sha256.get("train-images-idx3-ubyte", ""), steps)
    backend = make_backend()
    backend.setup(reference.initial_params(spec), data.train_x, data.train_y, data.test_x, data.test_y)
    values = measure(framework_run(backend, spec, y), y)
    return judge(values, limits_for(y), steps, checked=list(y["checked"]), envelope_width=envelope(y),
                 replicas=len(y["replica_losses"]), seconds=time.perf_counter() - t0)


def after_training(make_backend, spec: Spec, data, steps: int) -> dict:
    """The gate as every completed run takes it (runner.jobs.train): a failure or an error is
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
        print(f"parity: {describe(result)}", file=sys.stderr)
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
        result = error_result(steps, str(e), status="unavailable")
    except Exception as e:  # reported in the table, not a crash of verify
        result = error_result(steps, reason(e))
    out = {"framework": req.framework, "parity": result, **info}
    from runner.workload import ranks

    if ranks.is_writer():  # data-parallel: every rank took the gate together, rank 0 reports it
        atomic.write_bytes(req.result_path, json.dumps(out, allow_nan=False).encode(), replace=True)
    return 0
