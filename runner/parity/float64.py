"""The workload written once more, in float64 NumPy: the yardstick of the parity gate.

    python -m runner verify      # every framework's first steps are compared with these

Forward pass, backward pass and Adam for any model of runner.workload.models (strided convolutions,
batch norm in training mode with its running statistics, residual adds, global average pooling), in
the canonical layout (NCHW, conv OIHW, dense out x in), written for clarity, not speed: 50 LeNet-5
steps take about a second; one ResNet-18 step (forward and backward) at batch 64 takes ~26 s
(float32, as the gate's replicas run it: ~11 s; batch 8: 3.2 s) on one BLAS thread of our shared
2-core AMD EPYC host, measured under load, so noisy. float64 makes its own rounding error ~1e-16, so
what the gate measures is the framework's float32 arithmetic (and any real difference in the math).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from runner.workload import models
from runner.workload.spec import Spec, adam_bias_corrections as bias_corrections


def _patches(x: np.ndarray, k: int, stride: int = 1) -> np.ndarray:
    """(N, C, H, W) -> (N, Ho, Wo, C*k*k): every k x k patch a stride apart as a row (im2col)."""
    win = sliding_window_view(x, (k, k), axis=(2, 3))          # (N, C, H-k+1, W-k+1, k, k), a view
    if stride > 1:
        win = win[:, :, ::stride, ::stride]
    n, c, ho, wo = win.shape[:4]
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(n, ho, wo, c * k * k)


def _correlate(x: np.ndarray, w: np.ndarray, stride: int = 1) -> np.ndarray:
    """Cross-correlation, no padding: (N, C, H, W) * (O, C, k, k) -> (N, O, Ho, Wo)."""
    return (_patches(x, w.shape[2], stride) @ w.reshape(len(w), -1).T).transpose(0, 3, 1, 2)


def _pad(x: np.ndarray, p: int) -> np.ndarray:
    return np.pad(x, ((0, 0), (0, 0), (p, p), (p, p))) if p else x


def _conv(x, w, b, pad, stride=1):
    out = _correlate(_pad(x, pad), w, stride)
    return out if b is None else out + b[:, None, None]


def _conv_backward(x, w, pad, dout, need_dx=True, stride=1):
    """Gradients of a cross-correlation: (dx, dw, db); dx None unless needed (the first layer's
    input gradient is the costliest correlation and nothing uses it)."""
    k, o = w.shape[2], len(w)
    cols = _patches(_pad(x, pad), k, stride)                     # (N, Ho, Wo, C*k*k)
    dw = (dout.transpose(1, 0, 2, 3).reshape(o, -1) @ cols.reshape(-1, cols.shape[-1])).reshape(w.shape)
    if not need_dx:
        return None, dw, dout.sum(axis=(0, 2, 3))
    if stride > 1:
        # A strided window is the stride-1 window at every s-th place: dout goes back to those
        # places with zeros between (and after the last, where a window never started: an even
        # input padded 1 has one such row and column).
        hp, wp = x.shape[2] + 2 * pad, x.shape[3] + 2 * pad
        full = np.zeros((*dout.shape[:2], hp - k + 1, wp - k + 1), dout.dtype)
        full[:, :, ::stride, ::stride] = dout
        dout = full
    # dx is the full correlation of dout with the kernel flipped (and in/out swapped); then the
    # padding is cut off again.
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


_AXES = (0, 2, 3)  # batch norm's statistics: per channel, over N, H, W


def _bn(h, gamma, beta, bn: models.BatchNorm, running=None):
    """Batch norm forward (models.BatchNorm says the rule): (out, x_hat, 1/sqrt(var + eps), batch
    mean, batch unbiased variance); in eval mode (`running` = (mean, var)) the last two are None."""
    c = (slice(None), None, None)
    if running is None:
        mu = h.mean(axis=_AXES)
        xc = h - mu[c]
        var = (xc * xc).mean(axis=_AXES)                          # biased: what normalizes
        n = h.size // h.shape[1]
        stats = (mu, var * (n / (n - 1)))                         # unbiased: what running_var takes
    else:
        mu, var = running
        xc, stats = h - mu[c], (None, None)
    inv = 1.0 / np.sqrt(var + bn.eps)
    x_hat = xc * inv[c]
    return gamma[c] * x_hat + beta[c], x_hat, inv, *stats


def _bn_backward(d, x_hat, inv, gamma):
    """Training-mode batch norm backward: (dx, dgamma, dbeta); the batch statistics depend on x."""
    c = (slice(None), None, None)
    dx_hat = d * gamma[c]
    dx = inv[c] * (dx_hat - dx_hat.mean(axis=_AXES)[c] - x_hat * (dx_hat * x_hat).mean(axis=_AXES)[c])
    return dx, (d * x_hat).sum(axis=_AXES), d.sum(axis=_AXES)


class _Pass:
    """One forward pass: the weights, training or eval mode (eval: BN reads `buffers`), and the batch
    statistics it measured ({bn name: (mean, unbiased var)})."""

    def __init__(self, params, buffers=None):
        self.p, self.buffers, self.stats = params, buffers, {}

    def forward(self, seq, h):
        """Run the Nodes `seq` on h: (output, tape), the tape holding what the backward pass needs."""
        p, tape = self.p, []
        for node in seq:
            layer, h_in, cache, w = node.layer, h, None, f"{node.name}.weight"
            if isinstance(layer, models.Conv):
                h = _conv(h, p[w], p.get(f"{node.name}.bias"), layer.pad, layer.stride)
            elif isinstance(layer, models.Dense):
                h = h @ p[w].T + p[f"{node.name}.bias"]
            elif isinstance(layer, models.BatchNorm):
                running = None if self.buffers is None else (
                    self.buffers[f"{node.name}.running_mean"], self.buffers[f"{node.name}.running_var"])
                h, x_hat, inv, mu, var_unbiased = _bn(h, p[w], p[f"{node.name}.bias"], layer, running)
                cache = (x_hat, inv)
                if running is None:
                    self.stats[node.name] = (mu, var_unbiased)
            elif isinstance(layer, models.Residual):
                body, body_tape = self.forward(node.body, h)
                short, short_tape = self.forward(node.shortcut, h)   # () : the identity
                h, cache = body + short, (body_tape, short_tape)
            elif isinstance(layer, models.ReLU):
                h = np.maximum(h, 0.0)
            elif isinstance(layer, models.MaxPool):
                h = _pool_blocks(h, layer.size).max(axis=-1)
            elif isinstance(layer, models.GlobalAvgPool):
                h = h.mean(axis=(2, 3))
            else:
                h = h.reshape(len(h), -1)
            tape.append((node, h_in, cache))
        return h, tape

    def backward(self, tape, d, grads, top=False):
        """d (the gradient of the output of `tape`) back through it; gradients into `grads`. The
        input gradient of the model's first layer (top, index 0) is not computed."""
        p = self.p
        for i, (node, h_in, cache) in reversed(list(enumerate(tape))):
            layer, w, b = node.layer, f"{node.name}.weight", f"{node.name}.bias"
            if isinstance(layer, models.Conv):
                d, grads[w], db = _conv_backward(h_in, p[w], layer.pad, d, not (top and i == 0), layer.stride)
                if layer.bias:
                    grads[b] = db
            elif isinstance(layer, models.Dense):
                grads[w], grads[b], d = d.T @ h_in, d.sum(axis=0), d @ p[w]
            elif isinstance(layer, models.BatchNorm):
                d, grads[w], grads[b] = _bn_backward(d, *cache, p[w])
            elif isinstance(layer, models.Residual):
                body_tape, short_tape = cache
                d = self.backward(body_tape, d, grads) + self.backward(short_tape, d, grads)
            elif isinstance(layer, models.ReLU):
                d = d * (h_in > 0)
            elif isinstance(layer, models.MaxPool):
                d = _pool_backward(h_in, layer.size, d)
            elif isinstance(layer, models.GlobalAvgPool):
                d = np.broadcast_to(d[:, :, None, None] / (h_in.shape[2] * h_in.shape[3]), h_in.shape)
            else:
                d = d.reshape(h_in.shape)
        return d


def forward_backward(model: str, params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray,
                     stats: dict | None = None):
    """Mean softmax cross-entropy of `model` on (x (N, 28, 28), y (N,)) in training mode: (loss,
    logits, grads), in the floating type of `params` (float64 for the reference; float32 for its
    float32 replicas). `stats`, if given, receives each BN layer's batch (mean, unbiased variance),
    which update_buffers turns into running statistics."""
    dtype = next(iter(params.values())).dtype
    run = _Pass(params)
    logits, tape = run.forward(models.plan(model), x[:, None].astype(dtype))
    shifted = logits - logits.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    n = len(y)
    loss = -logp[np.arange(n), y].mean()
    d = np.exp(logp)                     # d loss / d logits = (softmax - onehot) / N
    d[np.arange(n), y] -= 1.0
    d /= n
    grads = {}
    run.backward(tape, d, grads, top=True)
    if stats is not None:
        stats.update(run.stats)
    out = {k: grads[k] for k in params}  # canonical order
    return float(loss), logits, out


def predict(model: str, params: dict[str, np.ndarray], x: np.ndarray, buffers: dict | None = None) -> np.ndarray:
    """Logits in eval mode: batch norm normalizes with the running statistics `buffers`."""
    dtype = next(iter(params.values())).dtype
    run = _Pass(params, buffers if buffers is not None else {})
    return run.forward(models.plan(model), x[:, None].astype(dtype))[0]


def update_buffers(model: str, buffers: dict[str, np.ndarray], stats: dict) -> dict[str, np.ndarray]:
    """Running statistics after one training step (models.BatchNorm's rule), in `buffers`' type."""
    out = dict(buffers)
    for name, bn in models.batchnorms(model).items():
        for key, batch in zip(("running_mean", "running_var"), stats[name]):
            r = buffers[f"{name}.{key}"]
            out[f"{name}.{key}"] = (1 - bn.momentum) * r + bn.momentum * batch.astype(r.dtype)
    return out


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
