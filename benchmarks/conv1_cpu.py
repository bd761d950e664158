"""Why JAX trails on CPU: LeNet-5's first convolution (1 -> 6 channels, 5x5, pad 2, batch 64) alone,
forward and gradient, in each framework's own CPU kernels.

    python benchmarks/conv1_cpu.py

torch and TensorFlow run it through oneDNN; JAX and TensorFlow with jit_compile=on through XLA:CPU.
If the XLA rows are several times slower here while the full-step ratio matches, the gap is the
compiler's convolution kernels for narrow channels, not the harness.
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np

REPS, ROUNDS = 50, 5
x_nchw = np.random.default_rng(0).normal(size=(64, 1, 28, 28)).astype(np.float32)
w_oihw = np.random.default_rng(1).normal(size=(6, 1, 5, 5)).astype(np.float32)
# The gradient is taken of sum(conv * r), not sum(conv): XLA folds the latter into a plain reduction.
r_nchw = np.random.default_rng(2).normal(size=(64, 6, 28, 28)).astype(np.float32)


def timed(fn, sync) -> float:
    """Median over ROUNDS of the mean ms per call over REPS calls, after a warm-up call."""
    sync(fn())
    out = []
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        for _ in range(REPS):
            r = fn()
        sync(r)
        out.append(1000 * (time.perf_counter() - t0) / REPS)
    return statistics.median(out)


def torch_rows():
    import torch

    x = torch.from_numpy(x_nchw)
    w = torch.from_numpy(w_oihw).requires_grad_()
    fwd = lambda: torch.nn.functional.conv2d(x, w, padding=2)  # noqa: E731
    r = torch.from_numpy(r_nchw)
    grad = lambda: torch.autograd.grad((fwd() * r).sum(), w)[0]  # noqa: E731
    return [("torch (oneDNN)", timed(fwd, lambda r: None), timed(grad, lambda r: None))]


def tf_rows():
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import tensorflow as tf

    x = tf.constant(x_nchw.transpose(0, 2, 3, 1))
    w = tf.Variable(w_oihw.transpose(2, 3, 1, 0))
    r = tf.constant(r_nchw.transpose(0, 2, 3, 1))
    rows = []
    for label, jit in (("tensorflow tf.function (oneDNN)", False), ("tensorflow jit_compile (XLA:CPU)", True)):
        f = tf.function(lambda x: tf.nn.conv2d(x, w, 1, [[0, 0], [2, 2], [2, 2], [0, 0]]), jit_compile=jit)

        def g(x, r):  # arguments, not captured constants (see jax_rows)
            with tf.GradientTape() as tape:
                y = tf.reduce_sum(tf.nn.conv2d(x, w, 1, [[0, 0], [2, 2], [2, 2], [0, 0]]) * r)
            return tape.gradient(y, w)

        grad = tf.function(g, jit_compile=jit)
        rows.append((label, timed(lambda: f(x), lambda o: o.numpy()), timed(lambda: grad(x, r), lambda o: o.numpy())))
    return rows


def jax_rows():
    import jax

    x = jax.numpy.asarray(x_nchw.transpose(0, 2, 3, 1))
    w = jax.numpy.asarray(w_oihw.transpose(2, 3, 1, 0))
    r = jax.numpy.asarray(r_nchw.transpose(0, 2, 3, 1))
    # x, w, r are arguments, not closure constants: XLA would fold a gradient that is linear in w
    conv = lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), [(2, 2), (2, 2)],  # noqa: E731
                                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    fwd = jax.jit(conv)
    grad = jax.jit(jax.grad(lambda w, x, r: (conv(x, w) * r).sum()))
    return [("jax jit (XLA:CPU)", timed(lambda: fwd(x, w), jax.block_until_ready),
             timed(lambda: grad(w, x, r), jax.block_until_ready))]


def main() -> int:
    rows = []
    for make in (torch_rows, tf_rows, jax_rows):
        try:
            rows += make()
        except ImportError as e:
            print(f"skipped: {e}")
    print(f"LeNet-5 conv1, batch 64, CPU: ms per call (median of {ROUNDS} x {REPS})\n")
    print(f"{'kernel':36} {'forward':>8} {'dL/dW':>8}")
    for label, f, g in rows:
        print(f"{label:36} {f:8.3f} {g:8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
