"""Per-example gradients in TensorFlow: the vectorized jacobian of the per-example losses.

    python -m runner per-sample-grads --framework tensorflow ...

The model is the training backend's Keras model (runner.backends.tf_backend.build_model), channels
last, with the reference weights (runner.workload.layouts), on the backend's device, TF32 off. TF has
no vmap(grad); its vectorizer is pfor, behind GradientTape.jacobian(experimental_use_pfor=True): the
jacobian of the B per-example losses with respect to the weights is the B per-example gradients
(examples do not interact: no batch norm). If pfor cannot vectorize the model here, the study says
so and the record is `unavailable` with TF's reason.
"""

from __future__ import annotations

import numpy as np

from runner.backends.tf_backend import build_model
from runner.micro.job import StudyUnavailable
from runner.workload import layouts


class PerSample:
    """Per-example gradients of the cross-entropy of one example, for the first B examples of
    x (B_max, 28, 28), y (B_max,).

    vmap: one tf.function: the B per-example losses under a GradientTape, then
          tape.jacobian(losses, weights, experimental_use_pfor=True).
    loop: one tf.function for one example's gradient (tape.gradient), called B times from Python,
          the results stacked (tf.stack)."""

    vectorized = "tf.function: GradientTape.jacobian(per-example losses, weights, experimental_use_pfor=True)"
    looped = "tf.function: GradientTape.gradient of one example, a Python loop over the batch, then tf.stack"

    def __init__(self, backend, model: str, params: dict, x: np.ndarray, y: np.ndarray):
        tf, self.tf, self.model, self.device = backend.tf, backend.tf, model, backend.device
        self.names = list(params)
        with tf.device(self.device):
            net = build_model(backend.keras, model)
            tree = layouts.to_tree(layouts.to_channels_last(model, params))
            for name, arrays in tree.items():
                net.get_layer(name).set_weights([arrays["kernel"], arrays["bias"]])
            weights = [v.value for v in net.trainable_variables]  # the tf.Variables, canonical order
            self.x, self.y = tf.constant(x[..., None]), tf.constant(y.astype(np.int32))
            self.xs = [self.x[i:i + 1] for i in range(len(x))]  # each example a batch of 1, made up front
            self.ys = [self.y[i:i + 1] for i in range(len(y))]

        def losses(xb, yb):
            return tf.nn.sparse_softmax_cross_entropy_with_logits(yb, net(xb))

        @tf.function
        def jacobian(xb, yb):
            with tf.GradientTape() as tape:
                each = losses(xb, yb)
            return tape.jacobian(each, weights, experimental_use_pfor=True)

        @tf.function
        def one(x1, y1):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(losses(x1, y1))
            return tape.gradient(loss, weights)

        self._jacobian, self._one = jacobian, one
        self._sync_devices = getattr(getattr(tf.test, "experimental", None), "sync_devices", None)

    def sync(self, out=None) -> None:
        """Wait for the device: tf.test.experimental.sync_devices (TF >= 2.14), else read one value of
        every output to the host (each output's last kernel has then run)."""
        if self._sync_devices is not None:
            self._sync_devices()
        elif out is not None:
            for g in out:
                g[(0,) * g.ndim].numpy()

    def vmap(self, b: int):
        tf = self.tf
        x, y = self.x[:b], self.y[:b]

        def run():
            try:  # a model pfor cannot vectorize fails at its first call (the trace), with TF's reason
                with tf.device(self.device):
                    return self._jacobian(x, y)
            except (ValueError, NotImplementedError, tf.errors.OpError) as e:
                first = str(e).strip().splitlines()[0] if str(e).strip() else ""
                raise StudyUnavailable(f"tensorflow cannot vectorize the per-example gradient (pfor):"
                                       f" {type(e).__name__}: {first}") from None
        return run

    def loop(self, b: int):
        tf = self.tf
        xs, ys = self.xs[:b], self.ys[:b]

        def run():
            with tf.device(self.device):
                each = [self._one(xs[i], ys[i]) for i in range(b)]
                return [tf.stack(g) for g in zip(*each)]
        return run

    def numpy(self, out) -> dict:
        """{canonical name: (B, ...)}: each example's gradient converted to the canonical layout."""
        host = [g.numpy() for g in out]
        each = [layouts.from_channels_last(self.model, {n: a[i] for n, a in zip(self.names, host)})
                for i in range(len(host[0]))]
        return {k: np.stack([e[k] for e in each]) for k in self.names}

