"""The reference's code in float32 NumPy, as a backend: the parity gate's float32 replicas, and the
framework the gate's fault-injection tests break on purpose.

    python -m runner verify      # the trajectory limit is measured with ~8 of these (runner.parity.gate)
    python -m pytest tests/test_parity_faults.py

It runs runner.parity.float64's forward/backward and Adam on float32 arrays (NumPy keeps float32 when
a float64 Python scalar meets a float32 array, so every constant is rounded to float32 once). It meets
runner.backends.base.Backend, so the gate checks it exactly as it checks a framework.

`faults` switches on one deliberate difference each, the ones the gate exists to catch:
  tf32 / bf16   the forward/backward operands (weights and images) rounded to TF32's 10-bit or
                bfloat16's 7-bit mantissa, as tensor cores and autocast do
  layout        fc1 reads the features in H,W,C order without the permutation (runner.workload.layouts)
  eps           eps 1e-7 (Keras' default) instead of the spec's
  sum_loss      the loss summed over the batch instead of averaged
  c32           Adam's bias corrections computed in float32 (the bug in TF and optax, issue 19)
"""

from __future__ import annotations

import numpy as np

from runner.backends.base import EpochStats
from runner.parity import float64
from runner.workload import models, reference
from runner.workload.spec import Spec

FAULTS = ("tf32", "bf16", "layout", "eps", "sum_loss", "c32")


def round_mantissa(a: np.ndarray, bits: int) -> np.ndarray:
    """float32 values rounded (to nearest, ties away) to `bits` explicit mantissa bits."""
    drop = 23 - bits
    u = np.asarray(a, np.float32).view(np.uint32)
    return ((u + np.uint32(1 << (drop - 1))) & np.uint32((0xFFFFFFFF >> drop) << drop)).view(np.float32)


class NumpyFloat32Backend:
    name = "numpy-float32"
    OPTIONS: dict = {}

    def __init__(self, spec: Spec, device: str = "cpu", options: dict | None = None,
                 faults: tuple[str, ...] = ()):
        unknown = set(faults) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown fault(s) {sorted(unknown)}; choose from {FAULTS}")
        self.spec, self.faults = spec, set(faults)

    def info(self) -> dict:
        return {"framework": {"name": self.name, "version": np.__version__, "faults": sorted(self.faults)},
                "device": {"kind": "cpu", "name": None}}

    def setup(self, params, train_x, train_y, test_x, test_y) -> None:
        self.train_x, self.train_y, self.test_x, self.test_y = train_x, train_y, test_x, test_y
        zeros = {k: np.zeros(v.shape, np.float32) for k, v in params.items()}
        self.set_state(params, zeros, zeros, 0, reference.initial_buffers(self.spec.model))

    # -- the state the gate loads and reads ---------------------------------------------------------
    def set_state(self, params, m, v, t: int, buffers=None) -> None:
        f32 = lambda d: {k: np.array(a, np.float32) for k, a in d.items()}  # noqa: E731
        self.params, self.m, self.v, self.t = f32(params), f32(m), f32(v), int(t)
        if buffers is not None:
            self._buffers = f32(buffers)

    def buffers(self):
        """BN's running statistics ({} without BN)."""
        return {k: a.copy() for k, a in self._buffers.items()}

    def adam_state(self):
        return dict(self.m), dict(self.v), self.t

    def parameters(self):
        return {k: a.copy() for k, a in self.params.items()}

    # -- training -----------------------------------------------------------------------------------
    def _fb(self, idx, stats=None):
        x, p = self.train_x[idx].astype(np.float32), self.params
        bits = 10 if "tf32" in self.faults else 7 if "bf16" in self.faults else None
        if bits:
            x, p = round_mantissa(x, bits), {k: round_mantissa(a, bits) for k, a in p.items()}
        if "layout" in self.faults:
            p = {**p, "fc1.weight": _hwc_columns(self.spec.model, p["fc1.weight"])}
        loss, logits, grads = float64.forward_backward(self.spec.model, p, x, self.train_y[idx], stats)
        if "layout" in self.faults:
            grads["fc1.weight"] = _hwc_columns(self.spec.model, grads["fc1.weight"], inverse=True)
        if "sum_loss" in self.faults:
            loss, grads = loss * len(idx), {k: g * np.float32(len(idx)) for k, g in grads.items()}
        return loss, logits, grads

    def _adam(self, grads):
        s = self.spec
        self.t += 1
        eps = 1e-7 if "eps" in self.faults else s.eps
        c1, c2 = float64.bias_corrections(s, self.t)
        if "c32" in self.faults:
            one, t = np.float32(1), np.float32(self.t)
            c1, c2 = one - np.float32(s.beta1) ** t, one - np.float32(s.beta2) ** t
        for k, p in self.params.items():
            g = grads[k] + s.weight_decay * p if s.weight_decay else grads[k]
            self.m[k] = s.beta1 * self.m[k] + (1 - s.beta1) * g
            self.v[k] = s.beta2 * self.v[k] + (1 - s.beta2) * g * g
            self.params[k] = p - s.learning_rate * (self.m[k] / c1) / (np.sqrt(self.v[k] / c2) + eps)

    def train_epoch(self, order: np.ndarray) -> EpochStats:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):  # see yardstick.compute
            return self._train(order)

    def _train(self, order: np.ndarray) -> EpochStats:
        loss_sum, correct = 0.0, 0
        for idx in order:
            stats = {}
            loss, logits, grads = self._fb(idx, stats)
            self._adam(grads)
            self._buffers = float64.update_buffers(self.spec.model, self._buffers, stats)
            loss_sum += loss
            correct += int((logits.argmax(1) == self.train_y[idx]).sum())
        return EpochStats(np.float32(loss_sum), correct, len(order))

    def probe_step(self, idx):
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            loss, logits, grads = self._fb(np.asarray(idx))
        return float(loss), logits, grads

    def evaluate(self):
        p, bs, correct = self.params, self.spec.eval_batch_size, 0
        for i in range(0, len(self.test_y), bs):
            x, y = self.test_x[i:i + bs], self.test_y[i:i + bs]
            logits = float64.predict(self.spec.model, p, x, self._buffers)  # eval mode: running statistics
            correct += int((logits.argmax(1) == y).sum())
        return correct

    def synchronize(self) -> None:
        pass

    def peak_memory(self):
        return None, "NumPy keeps no device memory counter"


def _hwc_columns(model: str, w: np.ndarray, inverse: bool = False) -> np.ndarray:
    """fc1's input columns reordered from C,H,W to H,W,C (or back): the flatten-order mistake."""
    c, h, wd = models.feature_shape_before_flatten(model)
    if inverse:
        return np.ascontiguousarray(w.reshape(len(w), h, wd, c).transpose(0, 3, 1, 2).reshape(len(w), -1))
    return np.ascontiguousarray(w.reshape(len(w), c, h, wd).transpose(0, 2, 3, 1).reshape(len(w), -1))
