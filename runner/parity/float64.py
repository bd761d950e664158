"""The workload written once more, in float64 NumPy: the yardstick of the parity gate.

    python -m runner verify      # every framework's first steps are compared with these

Forward pass, backward pass and Adam for any model of runner.workload.models, in the canonical layout
(NCHW, conv OIHW, dense out x in), written for clarity, not speed: 50 LeNet-5 steps take about a
second. float64 makes its own rounding error ~1e-16, so what the gate measures is the framework's
float32 arithmetic (and any real difference in the math).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from runner.workload import models
from runner.workload.spec import Spec, adam_bias_corrections as bias_corrections


def _patches(x: np.ndarray, k: int) -> np.ndarray:
    """(N, C, H, W) -> (N, H-k+1, W-k+1, C*k*k): every k x k patch as a row (im2col)."""
    win = sliding_window_view(x, (k, k), axis=(2, 3))          # (N, C, Ho, Wo, k, k), a view
    n, c, ho, wo = win.shape[:4]
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(n, ho, wo, c * k * k)


def _correlate(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Stride-1 cross-correlation, no padding: (N, C, H, W) * (O, C, k, k) -> (N, O, Ho, Wo)."""
    return (_patches(x, w.shape[2]) @ w.reshape(len(w), -1).T).transpose(0, 3, 1, 2)


def _pad(x: np.ndarray, p: int) -> np.ndarray:
    return np.pad(x, ((0, 0), (0, 0), (p, p), (p, p))) if p else x


def _conv(x, w, b, pad):
    return _correlate(_pad(x, pad), w) + b[:, None, None]


def _conv_backward(x, w, pad, dout, need_dx=True):
    """Gradients of a stride-1 cross-correlation: (dx, dw, db); dx None unless needed (the first
    layer's input gradient is the costliest correlation and nothing uses it)."""
    k, o = w.shape[2], len(w)
    cols = _patches(_pad(x, pad), k)                             # (N, Ho, Wo, C*k*k)
    dw = (dout.transpose(1, 0, 2, 3).reshape(o, -1) @ cols.reshape(-1, cols.shape[-1])).reshape(w.shape)
    # dx is the full correlation of dout with the kernel flipped (and in/out swapped); then the
    # padding is cut off again.
    if not need_dx:
        return None, dw, dout.sum(axis=(0, 2, 3))
    dxp = _correlate(_pad(dout, k - 1), w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    dx = dxp[:, :, pad:dxp.shape[2] - pad, pad:dxp.shape[3] - pad]
    return dx, dw, dout.sum(axis=(0, 2, 3))


def _pool_blocks(x, s):
    n, c, h, w = x.shape
    ho, wo = h // s, w // s
    blocks = x[:, :, :ho * s, :wo * s].reshape(n, c, ho, s, wo, s).transpose(0, 1, 2, 4, 3, 5)
    return blocks.reshape(n, c, ho, wo, s * s)


def _pool_backward(x, s, dout):
    """The gradient goes to the first maximum of each window, as every framework routes it."""
    blocks = _pool_blocks(x, s)
    n, c, ho, wo, _ = blocks.shape
    onehot = np.eye(s * s)[blocks.argmax(axis=-1)] * dout[..., None]
    dx = np.zeros_like(x)
    dx[:, :, :ho * s, :wo * s] = onehot.reshape(n, c, ho, wo, s, s).transpose(0, 1, 2, 4, 3, 5).reshape(
        n, c, ho * s, wo * s)
    return dx


def forward_backward(model: str, params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray):
    """Mean softmax cross-entropy of `model` on (x (N, 28, 28), y (N,)): (loss, logits, grads), in
    the floating type of `params` (float64 for the reference; float32 for its float32 replicas)."""
    dtype = next(iter(params.values())).dtype
    names, h, tape = iter(params), x[:, None].astype(dtype), []
    for layer, _, _ in models.walk(model):
        w = b = None
        if isinstance(layer, (models.Conv, models.Dense)):
            w, b = next(names), next(names)
        tape.append((layer, h, w, b))
        if isinstance(layer, models.Conv):
            h = _conv(h, params[w], params[b], layer.pad)
        elif isinstance(layer, models.Dense):
            h = h @ params[w].T + params[b]
        elif isinstance(layer, models.ReLU):
            h = np.maximum(h, 0.0)
        elif isinstance(layer, models.MaxPool):
            h = _pool_blocks(h, layer.size).max(axis=-1)
        else:
            h = h.reshape(len(h), -1)
    logits = h
    shifted = logits - logits.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    n = len(y)
    loss = -logp[np.arange(n), y].mean()
    d = np.exp(logp)                     # d loss / d logits = (softmax - onehot) / N
    d[np.arange(n), y] -= 1.0
    d /= n
    grads = {}
    for i, (layer, h_in, w, b) in reversed(list(enumerate(tape))):
        if isinstance(layer, models.Conv):
            d, grads[w], grads[b] = _conv_backward(h_in, params[w], layer.pad, d, need_dx=i > 0)
        elif isinstance(layer, models.Dense):
            grads[w], grads[b], d = d.T @ h_in, d.sum(axis=0), d @ params[w]
        elif isinstance(layer, models.ReLU):
            d = d * (h_in > 0)
        elif isinstance(layer, models.MaxPool):
            d = _pool_backward(h_in, layer.size, d)
        else:
            d = d.reshape(h_in.shape)
    out = {k: grads[k] for k in params}  # canonical order
    return float(loss), logits, out


class Adam:
    """Adam as the spec defines it (PyTorch's and optax's form): eps added to sqrt of the
    bias-corrected second moment, L2 weight decay folded into the gradient. The bias corrections
    are float64 numbers (bias_corrections); on float32 arrays NumPy rounds them to float32 once."""

    def __init__(self, spec: Spec, params: dict[str, np.ndarray]):
        self.spec, self.t = spec, 0
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        s = self.spec
        self.t += 1
        out = {}
        for k, p in params.items():
            g = grads[k] + s.weight_decay * p
            self.m[k] = s.beta1 * self.m[k] + (1 - s.beta1) * g
            self.v[k] = s.beta2 * self.v[k] + (1 - s.beta2) * g * g
            c1, c2 = bias_corrections(s, self.t)
            m_hat = self.m[k] / c1
            v_hat = self.v[k] / c2
            out[k] = p - s.learning_rate * m_hat / (np.sqrt(v_hat) + s.eps)
        return out


def trace(spec: Spec, params: dict[str, np.ndarray], train_x, train_y, order: np.ndarray) -> dict:
    """Train on the rows of `order` from `params`: the loss of every step, and the logits and
    gradient of step 1 and the weights after it, all float64."""
    if spec.optimizer != "adam" or spec.loss != "softmax_cross_entropy":
        raise ValueError(f"the NumPy reference knows adam + softmax_cross_entropy only, not"
                         f" {spec.optimizer} + {spec.loss}")
    p = {k: v.astype(np.float64) for k, v in params.items()}
    opt, losses, first = Adam(spec, p), [], {}
    for idx in order:
        loss, logits, grads = forward_backward(spec.model, p, train_x[idx], train_y[idx])
        p = opt.step(p, grads)
        if not first:
            first = {"logits": logits, "grads": grads, "params": p}
        losses.append(loss)
    return {"losses": losses, **first}
