"""The micro-benchmarks in JAX: N models through jax.vmap over stacked weights, per-example gradients through
vmap(grad), each under jax.jit.

    python -m runner ensemble --framework jax ...
    python -m runner per-sample-grads --framework jax ...

Models are the training backend's flax modules (runner.backends.jax_backend.build_model), channels
last, with the reference weights converted by runner.workload.layouts, on the backend's device at
the backend's matmul precision ("highest": no TF32). Results come back as NumPy in the canonical
layout (layouts.from_channels_last), so they compare with torch's and the float64 reference's.
"""

from __future__ import annotations

import numpy as np

from runner.backends.jax_backend import build_model
from runner.workload import layouts


def _tree(arch: str, params: dict):
    return layouts.to_tree(layouts.to_channels_last(arch, params))


def _canonical(arch: str, tree) -> dict:
    return layouts.from_channels_last(arch, layouts.from_tree(arch, tree))


def _ce(jax, logits, y):
    """Mean softmax cross-entropy (optax's formula, written out: optax is not needed here)."""
    logp = jax.nn.log_softmax(logits)
    return -jax.numpy.take_along_axis(logp, y[:, None], axis=1).mean()


class Ensemble:
    """N models of `arch` stepped together: their weights stacked along a new first axis, jax.vmap
    maps the model over the N weight sets and the N batches, jax.jit compiles each operation once.

    fprop: the jitted, vmapped forward and each model's mean cross-entropy (N losses, N x B x 10 logits).
    bprop: the jitted, vmapped jax.grad of each model's loss: the forward again plus the backward, to
           every parameter's gradient (what a training step needs before its optimizer update)."""

    def __init__(self, backend, arch: str, params: list[dict], x: np.ndarray, y: np.ndarray):
        jax, self.arch, self.jax = backend.jax, arch, backend.jax
        net = build_model(backend.nn, arch)
        trees = [_tree(arch, p) for p in params]
        stacked = jax.tree_util.tree_map(lambda *a: np.stack(a), *trees)

        def loss(p, xb, yb):
            logits = net.apply({"params": p}, xb[..., None])
            return _ce(jax, logits, yb), logits

        self._forward = jax.jit(jax.vmap(loss))
        self._grad = jax.jit(jax.vmap(jax.grad(lambda p, xb, yb: loss(p, xb, yb)[0])))
        put = lambda a: jax.device_put(a, backend.device)  # noqa: E731
        self.params, self.x, self.y = put(stacked), put(x), put(y.astype(np.int32))
        self.sync = jax.block_until_ready
        self.sync((self.params, self.x, self.y))

    def fprop(self):
        return self._forward(self.params, self.x, self.y)

    def bprop(self):
        return self._grad(self.params, self.x, self.y)

    def logits(self, fprop_out) -> np.ndarray:
        return np.asarray(fprop_out[1])

    def grads(self, bprop_out) -> list[dict]:
        """One canonical {name: gradient} per model."""
        return _split(self.jax, self.arch, bprop_out)


def _split(jax, arch: str, out) -> list[dict]:
    """A tree of stacked results (a leading axis on every leaf) -> one canonical dict per entry."""
    host = jax.tree_util.tree_map(np.asarray, out)
    n = len(host["fc1"]["bias"])  # every model in runner.workload.models has an fc1
    return [_canonical(arch, jax.tree_util.tree_map(lambda a: a[i], host)) for i in range(n)]


def alone(backend, arch: str, params: dict, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, dict]:
    """One model by itself, the way the training backend runs it: jax.value_and_grad of the mean
    cross-entropy, jitted, no vmap: (logits (B, 10), canonical gradients)."""
    jax = backend.jax
    net = build_model(backend.nn, arch)

    def loss(p, xb, yb):
        logits = net.apply({"params": p}, xb[..., None])
        return _ce(jax, logits, yb), logits

    put = lambda a: jax.device_put(a, backend.device)  # noqa: E731
    (_, logits), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(
        put(_tree(arch, params)), put(x), put(y.astype(np.int32)))
    return np.asarray(logits), _canonical(arch, jax.tree_util.tree_map(np.asarray, grads))


class PerSample:
    """Per-example gradients of the mean cross-entropy of one example (a batch of 1), for the first
    B examples of x (B_max, 28, 28), y (B_max,).

    vmap: jax.jit(jax.vmap(jax.grad(loss of one example))) over the B examples, the weights shared.
    loop: jax.jit(jax.grad(loss of one example)) called B times from Python (each example already on
          the device), the results stacked on the device."""

    vectorized = "jax.jit(jax.vmap(jax.grad(loss of one example)))"
    looped = "jax.jit(jax.grad(loss of one example)), a Python loop over the batch, then jnp.stack"

    def __init__(self, backend, model: str, params: dict, x: np.ndarray, y: np.ndarray):
        jax, self.model = backend.jax, model
        self.jax = jax
        net = build_model(backend.nn, model)

        def loss(p, x1, y1):
            logits = net.apply({"params": p}, x1[None, ..., None])
            return _ce(jax, logits, y1[None])

        self._one = jax.jit(jax.grad(loss))
        self._vmap = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0, 0)))
        self._stack = jax.jit(lambda gs: jax.tree_util.tree_map(lambda *a: jax.numpy.stack(a), *gs))
        put = lambda a: jax.device_put(a, backend.device)  # noqa: E731
        self.params, self.x, self.y = put(_tree(model, params)), put(x), put(y.astype(np.int32))
        self.xs = [put(a) for a in x]  # one device array per example: the loop indexes nothing on the host
        self.ys = [put(a) for a in y.astype(np.int32)]
        self.sync = jax.block_until_ready
        self.sync((self.params, self.x, self.y, self.xs, self.ys))

    def vmap(self, b: int):
        x, y = self.sync((self.x[:b], self.y[:b]))
        return lambda: self._vmap(self.params, x, y)

    def loop(self, b: int):
        xs, ys = self.xs[:b], self.ys[:b]
        return lambda: self._stack([self._one(self.params, xs[i], ys[i]) for i in range(b)])

    def numpy(self, out) -> dict:
        """{canonical name: (B, ...)}: each example's gradient converted to the canonical layout."""
        each = _split(self.jax, self.model, out)
        return {k: np.stack([e[k] for e in each]) for k in each[0]}
