"""What the parity gate compares a framework with, computed once per (spec, data, K) and cached on disk.

    python -m runner verify          # computes it once in the parent; each framework's process reads it
    python -m runner run             # the parity check after training reads it too

Three things, all from runner.workload.reference's weights and epoch-0 batches:
  * the float64 trajectory: the loss of each of the first K steps (runner.parity.float64);
  * at a few checked steps k: the float64 state (weights, Adam moments) rounded to float32, and the
    float64 result of one step *from that rounded state*: loss, logits, gradient, weight update.
    A framework loaded with the same float32 state must reproduce that step to float32 accuracy,
    however chaotic the trajectory around it (runner.parity.gate);
  * the float32 envelope: REPLICAS float32 replicas of the reference (runner.parity.npfloat32), each
    started from the initial weights moved by +-1 float32 ulp, elementwise at random; how far their
    losses stray from the float64 trajectory is what honest float32 arithmetic does on this spec;
  * the float32 gradient noise at each checked step: REPLICAS float32 gradients from that step's
    state moved +-1 ulp, against the float64 gradient. A ReLU whose input lies within float32 noise
    of zero flips, and one flip moves the gradient by ~1/sqrt(positions feeding a weight) of its
    norm: rare in LeNet-5 (measured ~1e-7), but ResNet-18 has ~20M ReLU inputs a batch of 64, a
    dozen within float32 noise of zero, and honest float32 gradients stray ~1e-3 (float64 moved by
    1e-9 of each weight: 8e-9, by 1e-7: 1.5e-3, from one flip in layer3). The gate's gradient limit
    grows with it (runner.parity.gate);
  * the float32 update noise at each checked step: the same replicas' gradients, each taken through
    one float64 Adam step from that step's state, against the reference update, by the gate's own
    update error (update_errors, update_p99). Adam divides by sqrt(v): a gradient component that
    cancels to within float32 noise still moves its weight by up to a whole step, and a large
    batch has many of them (measured on MNIST at batch 8192: 4.2e-4, where JAX read 4.1e-4 and
    torch, in another run, 4.2e-4, against the fixed 1e-4 limit; at batch 64 it is below 1e-5). The
    gate's update limit grows with it as the gradient limit does;
  * models with batch norm: the running statistics along the trajectory, rounded to float32 at each
    checked step ("r"), and the batch statistics of the float64 step from there ("bs", the mean and
    unbiased variance that the running-statistics rule takes), under the buffers' names.

An entry is keyed by the spec, the data, K and a fingerprint of the code that computes it (the
modules below, byte for byte): a change to the reference's math never meets an entry the old math
wrote. (The user cache is shared by every checkout and outlives upgrades: the likely cause of a torch
x cnn gradient read 1.3e-4 off that a fresh cache reads 2.4e-6.)

The cache is a best effort: a write that fails (read-only or full disk) warns and the result is used
anyway; an entry that cannot be read back completely (truncated, corrupt, another layout) is deleted
with a warning and computed again.
"""

from __future__ import annotations

import functools
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

from runner.parity import float64
from runner.workload import reference
from runner.workload.spec import Spec

REPLICAS = 8
MAX_CHECKED = 10            # steps checked from the reference's state, at most ...
CHECK_BUDGET = 2_500_000    # ... and at most this many parameter values over all of them (cache size)
CACHE_LAYOUT = 4            # bump when the cached arrays change: old entries are then simply not read


def checked_steps(spec: Spec, steps: int) -> list[int]:
    """0-based steps checked from the reference's state: spread evenly over the K steps, step 0 first."""
    from runner.workload import models

    n = max(1, min(MAX_CHECKED, steps, CHECK_BUDGET // models.n_params(spec.model)))
    return sorted({int(round(i)) for i in np.linspace(0, steps - 1, n)})


def _f32(d: dict) -> dict:
    return {k: np.asarray(a, np.float32) for k, a in d.items()}


def _f64(d: dict) -> dict:
    return {k: np.asarray(a, np.float64) for k, a in d.items()}


def compute(spec: Spec, train_x, train_y, steps: int, replicas: int = REPLICAS) -> dict:
    """The yardstick (see the module docstring) for the first `steps` steps of epoch 0, on one BLAS
    thread: its matrices are small, and OpenBLAS' threads spin-wait when the host is busy (measured
    on a loaded 2-core host: 7.7 s per float64 step with 2 threads, 0.6 s with one)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _compute(spec, train_x, train_y, steps, replicas)


def _compute(spec: Spec, train_x, train_y, steps: int, replicas: int) -> dict:
    if spec.optimizer != "adam" or spec.loss != "softmax_cross_entropy":
        raise ValueError(f"the NumPy reference knows adam + softmax_cross_entropy only, not"
                         f" {spec.optimizer} + {spec.loss}")
    order = reference.epoch_order(spec, 0)[:steps]
    init = reference.initial_params(spec)
    checked = checked_steps(spec, len(order))
    p, buffers = _f64(init), _f64(reference.initial_buffers(spec.model))
    opt, losses, at = float64.Adam(spec, p), [], []
    for k, idx in enumerate(order):
        x, y = train_x[idx], train_y[idx]
        if k in checked:
            w32, m32, v32, r32 = _f32(p), _f32(opt.m), _f32(opt.v), _f32(buffers)
            stats = {}
            loss, logits, grads = float64.forward_backward(spec.model, _f64(w32), x, y, stats)
            dw = _f32(one_step(spec, w32, m32, v32, k, grads))
            grad_noise, update_noise = float32_noise(spec, w32, m32, v32, x, y, grads, dw, k, replicas)
            at.append({"w": w32, "m": m32, "v": v32, "loss": loss, "logits": logits, "g": _f32(grads),
                       "dw": dw, "r": r32,
                       "bs": {f"{n}.{key}": s for n, pair in stats.items()
                              for key, s in zip(("running_mean", "running_var"), pair)},
                       "grad_noise": grad_noise, "update_noise": update_noise})
        stats = {}
        loss, _, grads = float64.forward_backward(spec.model, p, x, y, stats)
        p = opt.step(p, grads)
        buffers = float64.update_buffers(spec.model, buffers, stats)
        losses.append(loss)
    return {"losses": np.array(losses), "checked": np.array(checked), "at": at,
            "replica_losses": replica_losses(spec, init, train_x, train_y, order, replicas)}


def one_step(spec: Spec, w32: dict, m32: dict, v32: dict, step: int, grads: dict) -> dict:
    """The float64 weight update of one Adam step from the float32 state (w32, m32, v32) after
    `step` steps, with gradient `grads`: {name: new weight - w32}."""
    one = float64.Adam(spec, w32)
    one.m, one.v, one.t = _f64(m32), _f64(v32), step
    after = one.step(_f64(w32), _f64(grads))
    return {n: after[n] - w32[n] for n in w32}


def ulp(w: np.ndarray) -> np.ndarray:
    """The float32 ulp at each |w|, as float64."""
    w = np.asarray(w, np.float32)
    return (np.nextafter(np.abs(w), np.float32(np.inf)) - np.abs(w)).astype(np.float64)


def update_errors(ref_dw: dict, got_dw: dict, w: dict) -> np.ndarray:
    """Elementwise update errors over all parameters: max(|dw - dw_ref| - ulp/2, 0) / (|dw_ref| + ulp),
    ulp that of the old or the new weight, the coarser. Half an ulp of the new weight is the rounding
    every float32 program must make: not an error (runner.parity.gate, CHECK 4)."""
    errs = []
    for n, ref in ref_dw.items():
        ref, got = np.asarray(ref, np.float64), np.asarray(got_dw[n], np.float64)
        u = np.maximum(ulp(w[n]), ulp(w[n] + ref))
        errs.append((np.maximum(np.abs(got - ref) - u / 2, 0) / (np.abs(ref) + u)).ravel())
    return np.concatenate(errs) if errs else np.zeros(0)


def update_p99(errors: np.ndarray) -> float:
    """What the gate's update check reads from update_errors: their 99th percentile."""
    return float(np.quantile(errors, 0.99)) if errors.size else 0.0


def float32_noise(spec: Spec, w32: dict, m32: dict, v32: dict, x, y, g64: dict, dw: dict, step: int,
                  replicas: int) -> tuple[float, float]:
    """(gradient noise, update noise) at one checked step: the widest relative distance (norm over
    all parameters) of `replicas` float32 gradients, each from w32 moved +-1 ulp elementwise at
    random, from the float64 gradient g64 at w32; and the widest p99 update error of those
    gradients each taken through one Adam step from (w32, m32, v32), against the reference update dw."""
    ref = np.sqrt(sum(float((g ** 2).sum()) for g in g64.values())) or 1.0
    grad_noise = update_noise = 0.0
    for r in range(replicas):
        rng = np.random.default_rng([spec.seed, 0x4E4F4953, step, r])  # "NOIS": a stream of its own
        moved = {k: np.nextafter(a, np.where(rng.random(a.shape) < 0.5, -np.inf, np.inf).astype(np.float32))
                 for k, a in w32.items()}
        g32 = float64.forward_backward(spec.model, moved, x.astype(np.float32), y)[2]
        grad_noise = max(grad_noise, np.sqrt(sum(float(((g32[k] - g64[k]) ** 2).sum()) for k in g64)) / ref)
        got = one_step(spec, w32, m32, v32, step, g32)
        update_noise = max(update_noise, update_p99(update_errors(dw, got, w32)))
    return float(grad_noise), float(update_noise)


def replica_losses(spec: Spec, init: dict, train_x, train_y, order, replicas: int) -> np.ndarray:
    """(replicas, steps) losses of float32 replicas started +-1 ulp away from `init`."""
    from runner.parity.npfloat32 import NumpyFloat32Backend

    out = np.zeros((replicas, len(order)))
    for r in range(replicas):
        rng = np.random.default_rng([spec.seed, 0x554C50, r])  # "ULP": a stream of its own
        start = {k: np.nextafter(a, np.where(rng.random(a.shape) < 0.5, -np.inf, np.inf).astype(np.float32))
                 for k, a in init.items()}
        b = NumpyFloat32Backend(spec)
        b.setup(start, train_x, train_y, train_x[:0], train_y[:0])
        out[r] = [float(b.train_epoch(row[None]).loss_sum) for row in order]
    return out


# -- the on-disk cache ------------------------------------------------------------------------------

# The modules whose code decides the cached numbers: the reference's math, its float32 replicas, the
# initial weights and batch order, the models, the spec's rules (Adam's bias corrections), and this one.
FINGERPRINTED = ("runner.parity.float64", "runner.parity.npfloat32", "runner.parity.yardstick",
                 "runner.workload.reference", "runner.workload.models", "runner.workload.spec")


@functools.cache
def code_fingerprint() -> str:
    """sha256 over the source of FINGERPRINTED, first 12 hex digits."""
    import hashlib
    import importlib

    digest = hashlib.sha256()
    for name in FINGERPRINTED:
        digest.update(Path(importlib.import_module(name).__file__).read_bytes())
    return digest.hexdigest()[:12]


def cache_path(spec: Spec, data_sha: str, steps: int) -> Path:
    from runner.data.store import cache_root

    return (cache_root() / "parity"
            / f"v{CACHE_LAYOUT}-{spec.hash[:16]}-{data_sha[:16]}-{steps}-{code_fingerprint()}.npz")


def _pack(y: dict) -> bytes:
    arrays = {"losses": y["losses"], "checked": y["checked"], "replica_losses": y["replica_losses"]}
    for i, a in enumerate(y["at"]):
        arrays[f"{i}/loss"], arrays[f"{i}/logits"] = np.array(a["loss"]), a["logits"]
        arrays[f"{i}/grad_noise"] = np.array(a["grad_noise"])
        arrays[f"{i}/update_noise"] = np.array(a["update_noise"])
        for part in PARTS + BUFFER_PARTS:
            arrays.update({f"{i}/{part}/{n}": v for n, v in a[part].items()})
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


PARTS = ("w", "m", "v", "g", "dw")   # per checked step, one array per parameter
BUFFER_PARTS = ("r", "bs")           # ... and one per buffer (models with batch norm)


def _unpack(z, names: list[str], steps: int, buffer_names: list[str] = ()) -> dict:
    """Everything read eagerly, so a truncated member fails here and not later; KeyError or
    ValueError if the entry is incomplete or shaped for another spec."""
    losses, checked = np.asarray(z["losses"], np.float64), np.asarray(z["checked"])
    if losses.shape != (steps,):
        raise ValueError(f"{len(losses)} losses, expected {steps}")
    at = []
    for i in range(len(checked)):
        a = {"loss": float(z[f"{i}/loss"]), "logits": np.asarray(z[f"{i}/logits"]),
             "grad_noise": float(z[f"{i}/grad_noise"]), "update_noise": float(z[f"{i}/update_noise"])}
        for part in PARTS:
            a[part] = {n: np.asarray(z[f"{i}/{part}/{n}"]) for n in names}
        for part in BUFFER_PARTS:
            a[part] = {n: np.asarray(z[f"{i}/{part}/{n}"]) for n in buffer_names}
        at.append(a)
    return {"losses": losses, "checked": checked, "at": at, "replica_losses": np.asarray(z["replica_losses"])}


def _warn(message: str) -> None:
    print(f"parity: warning: {message}", file=sys.stderr)


def load_or_compute(spec: Spec, train_x, train_y, data_sha: str, steps: int) -> dict:
    """compute(), read from the cache if a good entry is there, else computed and (best effort) stored."""
    from runner import atomic

    steps = min(steps, spec.steps_per_epoch)
    path = cache_path(spec, data_sha, steps)
    names = list(reference.initial_params(spec))
    buffer_names = list(reference.initial_buffers(spec.model))
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as z:
                return _unpack(z, names, steps, buffer_names)
        except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as e:
            _warn(f"the cached reference {path} is unreadable ({type(e).__name__}: {e}); deleting it and"
                  f" computing it again")
            try:
                path.unlink()
            except OSError as e2:
                _warn(f"could not delete {path} ({type(e2).__name__}: {e2})")
    y = compute(spec, train_x, train_y, steps)
    try:
        atomic.write_bytes(path, _pack(y), replace=True)
    except OSError as e:  # a cache, not a result: the check goes on without it
        _warn(f"could not cache the reference at {path} ({type(e).__name__}: {e}); it will be computed"
              f" again next time")
    return y
