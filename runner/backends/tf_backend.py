"""TensorFlow / Keras 3 backend: a Keras model trained by tf.function, data resident on the device.

    python -m runner run --framework tensorflow [--device cuda|mps|cpu]
        [--option tensorflow.loop=epoch|step] [--option tensorflow.jit_compile=off|on]
    python -m runner run --framework tensorflow --option tensorflow.loader=tfdata
        --option tensorflow.loop=step --option tensorflow.workers=4

loop=epoch (default) runs the whole epoch inside one tf.function (a graph while-loop over the
spec's batches); loop=step calls a tf.function once per batch. jit_compile=on compiles either with
XLA. loader=tfdata feeds loop=step's calls from a tf.data pipeline over the raw uint8 images
(runner.backends.loaders: same batches, same bits, the wait timed as timing.epoch_data_s); it
refuses loop=epoch, where the pipeline would run inside the graph and its wait could not be timed.

Adam is written out here rather than taken from keras.optimizers.Adam, because Keras adds eps
to the *uncorrected* sqrt(v) ("epsilon hat": 31x the spec's eps at step 1) and decouples weight
decay; the spec's Adam is PyTorch's and optax's.

The model is a functional keras.Model: a residual block (resnet18) is a branch and an Add. Batch
norm is written out too (_batch_norm_class): Keras' BatchNormalization keeps its moving variance
with the biased batch variance; the workload's rule (models.BatchNorm) is PyTorch's, unbiased.
Strided convolutions pad explicitly (ZeroPadding2D + 'valid'): 'same' would pad asymmetrically.
"""

from __future__ import annotations

import os

import numpy as np

from runner.workload import layouts, models
from runner.backends import loaders
from runner.backends.base import CPU_PEAK_MEMORY, EpochStats, FrameworkUnavailable, parse_options
from runner.workload.spec import Spec

ONOFF = ("off", "on")


def build_model(keras, model: str):
    """A channels-last keras.Model from the layer list (functional: a residual block is a branch and
    an Add), its conv/dense/BN layers named like the canonical params (conv1, layer1.0.bn1, fc)."""
    inputs = keras.Input(models.INPUT_SHAPE[1:] + models.INPUT_SHAPE[:1])
    return keras.Model(inputs, _apply(keras, models.plan(model), inputs))


def _apply(keras, seq, x):
    """The Nodes `seq` applied to the symbolic tensor x."""
    L = keras.layers
    for node in seq:
        layer = node.layer
        if isinstance(layer, models.Conv):
            # Explicit symmetric padding, then 'valid': 'same' would pad a stride-2 conv on an even
            # input on the bottom/right only, another function than the canonical pad-1-all-round.
            if layer.pad:
                x = L.ZeroPadding2D(layer.pad)(x)
            x = L.Conv2D(layer.out, layer.kernel, strides=layer.stride, use_bias=layer.bias, name=node.name)(x)
        elif isinstance(layer, models.Dense):
            x = L.Dense(layer.out, name=node.name)(x)
        elif isinstance(layer, models.BatchNorm):
            x = _batch_norm_class(keras)(layer.eps, layer.momentum, name=node.name)(x)
        elif isinstance(layer, models.Residual):
            x = L.Add()([_apply(keras, node.body, x), _apply(keras, node.shortcut, x)])
        elif isinstance(layer, models.ReLU):
            x = L.ReLU()(x)
        elif isinstance(layer, models.MaxPool):
            x = L.MaxPooling2D(layer.size)(x)
        elif isinstance(layer, models.GlobalAvgPool):
            x = L.GlobalAveragePooling2D()(x)
        else:
            x = L.Flatten()(x)  # NHWC order: layouts permutes fc1 to match
    return x


_BN_CLASS = {}


def _batch_norm_class(keras):
    """The workload's batch norm (models.BatchNorm) as a Keras layer, written out: Keras' own
    BatchNormalization updates its moving variance with the biased batch variance (and calls
    momentum what torch calls 1 - momentum); the workload's rule takes the unbiased one."""
    if keras in _BN_CLASS:
        return _BN_CLASS[keras]
    import tensorflow as tf

    class BatchNorm(keras.layers.Layer):
        def __init__(self, eps, momentum, **kwargs):
            super().__init__(**kwargs)
            self.eps, self.momentum = eps, momentum

        def build(self, shape):
            c = (shape[-1],)
            self.scale = self.add_weight(shape=c, initializer="ones", name="scale")
            self.bias = self.add_weight(shape=c, initializer="zeros", name="bias")
            self.running_mean = self.add_weight(shape=c, initializer="zeros", name="running_mean", trainable=False)
            self.running_var = self.add_weight(shape=c, initializer="ones", name="running_var", trainable=False)

        def call(self, x, training=False):
            if training:
                mean = tf.reduce_mean(x, axis=(0, 1, 2))
                var = tf.reduce_mean(tf.square(x - mean), axis=(0, 1, 2))        # biased: normalizes
                n = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), tf.float32)
                m = self.momentum
                self.running_mean.assign((1 - m) * self.running_mean + m * mean)
                self.running_var.assign((1 - m) * self.running_var + m * (var * (n / (n - 1))))  # unbiased
            else:
                mean, var = self.running_mean, self.running_var
            return (x - mean) * tf.math.rsqrt(var + self.eps) * self.scale + self.bias

    _BN_CLASS[keras] = BatchNorm
    return BatchNorm


class TensorflowBackend:
    name = "tensorflow"
    OPTIONS = {"loop": ("epoch", ("epoch", "step")), "jit_compile": ("off", ONOFF),
               "loader": ("resident", ("resident", "tfdata")), "workers": ("0", loaders.WORKERS)}

    @staticmethod
    def check_options(options: dict) -> None:
        loaders.check("tensorflow", options, "tfdata", {
            ("loop", "epoch"): ("tfdata", "the pipeline would run inside the epoch's graph, where the wait"
                                          " for each batch cannot be timed; add --option tensorflow.loop=step")})

    def __init__(self, spec: Spec, device: str = "auto", options: dict | None = None):
        self.options = parse_options(self.name, self.OPTIONS, options or {})
        self.check_options(self.options)
        os.environ["KERAS_BACKEND"] = "tensorflow"  # this process is ours: Keras must drive TF here
        try:
            import keras
            import tensorflow as tf
        except Exception as e:  # a broken install raises more than ImportError
            raise FrameworkUnavailable(f"cannot import tensorflow/keras: {type(e).__name__}: {e}") from e
        # float32 at full precision (no TF32 on NVIDIA): the spec is float32.
        tf.config.experimental.enable_tensor_float_32_execution(False)
        self.tf, self.keras, self.spec = tf, keras, spec
        self.device_kind, self.device = self._pick_device(device)

    def _pick_device(self, request: str):
        tf = self.tf
        gpus = tf.config.list_physical_devices("GPU")
        # tensorflow-metal registers the Apple GPU as a "GPU" too; tell it apart by platform.
        import platform

        gpu_kind = "mps" if platform.system() == "Darwin" else "cuda"
        if request == "auto":
            request = gpu_kind if gpus else "cpu"
        if request not in ("cpu", "cuda", "mps"):
            raise FrameworkUnavailable(f"tensorflow backend has no device {request!r}")
        if request == "cpu":
            return "cpu", "/CPU:0"
        if request != gpu_kind or not gpus:
            raise FrameworkUnavailable(f"device {request} requested, but tensorflow {tf.__version__} sees"
                                       f" {len(gpus)} GPU(s){' (not ' + request + ')' if gpus else ''}")
        return request, "/GPU:0"

    def info(self) -> dict:
        tf, kind = self.tf, self.device_kind
        build = tf.sysconfig.get_build_info()
        name = None
        if kind != "cpu":
            details = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0])
            name = details.get("device_name") or "GPU"
        framework = {"name": "tensorflow", "version": tf.__version__, "keras": self.keras.__version__,
                     # the CUDA/cuDNN this TF was built against; on a CPU run they play no part
                     "cuda": build.get("cuda_version") if kind == "cuda" else None,
                     "cudnn": build.get("cudnn_version") if kind == "cuda" else None,
                     "threads": {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                                 "inter_op": tf.config.threading.get_inter_op_parallelism_threads()},
                     "mode": "tf.function", "tf32": False, "options": self.options}
        return {"framework": framework, "device": {"kind": kind, "name": name}}

    def setup(self, params, train_x, train_y, test_x, test_y) -> None:
        tf, spec = self.tf, self.spec
        if spec.optimizer != "adam":
            raise FrameworkUnavailable(f"tensorflow backend has no optimizer {spec.optimizer!r}")
        if spec.loss != "softmax_cross_entropy":
            raise FrameworkUnavailable(f"tensorflow backend has no loss {spec.loss!r}")
        with tf.device(self.device):
            self.model = build_model(self.keras, spec.model)
            self.variables = self._canonical(models.params(spec.model))   # the tf.Variables, canonical order
            self.buffer_vars = self._canonical(models.buffers(spec.model))  # BN's running statistics
            for var, a in zip(self.variables, layouts.to_channels_last(spec.model, params).values()):
                var.assign(a)
            self.m = [tf.Variable(tf.zeros_like(v)) for v in self.variables]
            self.v = [tf.Variable(tf.zeros_like(v)) for v in self.variables]
            self.t = tf.Variable(tf.constant(0, tf.int64))  # exact at any step count, unlike float32
            self.test_x, self.test_y = tf.constant(test_x[..., None]), tf.constant(test_y.astype(np.int32))
        self.loader = None
        if self.options["loader"] == "tfdata":  # raw pixels in tf.data; the normalized set stays on the
            # host for probe_step alone (the gate), so device memory is the loader's
            workers = int(self.options["workers"])
            loaders.note_workers(self.name, workers)
            raw = loaders.raw_pixels(train_x, spec.norm_mean, spec.norm_std)
            self.loader = loaders.TfData(tf, raw, train_y, spec.norm_mean, spec.norm_std, workers, self.device)
        with tf.device("/CPU:0" if self.loader is not None else self.device):
            self.train_x, self.train_y = tf.constant(train_x[..., None]), tf.constant(train_y.astype(np.int32))
        self.batch_size, self.eval_batch_size = spec.batch_size, spec.eval_batch_size
        self._compile()

    def _canonical(self, entries) -> list:
        """The tf.Variables of models.params/buffers entries, in their order: a layer's variable by
        the canonical name's last part (kernel, bias, scale, running_mean, running_var)."""
        out = []
        for p in entries:
            layer, kind = p.name.rsplit(".", 1)
            out.append(getattr(self.model.get_layer(layer), layouts.leaf(kind, len(p.shape))).value)
        return out

    def _loss(self, x, y):
        logits = self.model(x, training=True)
        return self.tf.reduce_mean(self.tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits)), logits

    def _adam(self, grads):
        """The spec's Adam (see the module docstring for why not Keras'): torch-style L2, eps outside
        the bias-corrected sqrt."""
        tf, s = self.tf, self.spec
        self.t.assign_add(1)
        # The spec's rule: bias corrections in float64, rounded to float32 once. In float32,
        # 1 - 0.999**t is ~1.3e-5 too small: every update ~7e-6 too short (issue 19).
        t = tf.cast(self.t, tf.float64)
        c1 = tf.cast(1.0 - tf.constant(s.beta1, tf.float64) ** t, tf.float32)
        c2 = tf.cast(1.0 - tf.constant(s.beta2, tf.float64) ** t, tf.float32)
        for p, g, m, v in zip(self.variables, grads, self.m, self.v):
            g = g + s.weight_decay * p if s.weight_decay else g
            m.assign(s.beta1 * m + (1.0 - s.beta1) * g)
            v.assign(s.beta2 * v + (1.0 - s.beta2) * tf.square(g))
            p.assign_sub(s.learning_rate * (m / c1) / (tf.sqrt(v / c2) + s.eps))

    def _compile(self):
        tf = self.tf
        jit = self.options["jit_compile"] == "on"

        def step(idx, loss_sum, correct):
            return fit(tf.gather(self.train_x, idx), tf.gather(self.train_y, idx), loss_sum, correct)

        def fit(x, y, loss_sum, correct):  # one step on one batch: gathered above, or from the loader
            with tf.GradientTape() as tape:
                loss, logits = self._loss(x, y)
            self._adam(tape.gradient(loss, self.variables))
            hits = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, 1, output_type=tf.int32), y), tf.int32))
            return loss_sum + loss, correct + hits

        def epoch(order):
            loss_sum, correct = tf.constant(0.0), tf.constant(0)
            for i in tf.range(tf.shape(order)[0]):  # AutoGraph: a graph while-loop, no Python per step
                loss_sum, correct = step(order[i], loss_sum, correct)
            return loss_sum, correct

        def count_correct(x, y):
            pred = tf.argmax(self.model(x, training=False), 1, output_type=tf.int32)
            return tf.reduce_sum(tf.cast(tf.equal(pred, y), tf.int32))

        def probe(x, y):
            with tf.GradientTape() as tape:
                loss, logits = self._loss(x, y)
            return loss, logits, tape.gradient(loss, self.variables)

        self._step = tf.function(step, jit_compile=jit)
        self._fit = tf.function(fit, jit_compile=jit)
        self._epoch = tf.function(epoch, jit_compile=jit)
        self._correct = tf.function(count_correct, jit_compile=jit)
        self._probe = tf.function(probe)

    def train_epoch(self, order: np.ndarray) -> EpochStats:
        tf = self.tf
        assert order.shape[1] == self.batch_size
        with tf.device(self.device):
            if self.loader is not None:  # loop=step (check_options), fed by tf.data
                loss_sum, correct = tf.constant(0.0), tf.constant(0)
                batches = self.loader.epoch(order)
                for x, y in batches:
                    loss_sum, correct = self._fit(x, y, loss_sum, correct)
                self._last = loss_sum
                return EpochStats(loss_sum, correct, len(order), batches.data_s)
            batches = tf.constant(order.astype(np.int32))
            if self.options["loop"] == "epoch":
                loss_sum, correct = self._epoch(batches)
            else:
                loss_sum, correct = tf.constant(0.0), tf.constant(0)
                for idx in tf.unstack(batches):
                    loss_sum, correct = self._step(idx, loss_sum, correct)
        self._last = loss_sum
        return EpochStats(loss_sum, correct, len(order))

    def evaluate(self):
        tf, n, bs = self.tf, len(self.test_y), self.eval_batch_size
        with tf.device(self.device):
            correct = sum(self._correct(self.test_x[i:i + bs], self.test_y[i:i + bs]) for i in range(0, n, bs))
        self._last = correct
        return correct

    def synchronize(self) -> None:
        # TF has no device-wide barrier in its public API; reading the last result to the host waits
        # for every op it depends on, and each step depends on the previous one through the weights.
        last = getattr(self, "_last", None)
        if last is not None:
            last.numpy()

    def peak_memory(self):
        if self.device_kind == "cpu":
            return CPU_PEAK_MEMORY
        info = self.tf.config.experimental.get_memory_info(self.device.lstrip("/"))
        return int(info["peak"]), "tf.config.experimental.get_memory_info()['peak']"

    def probe_step(self, idx):
        tf = self.tf
        saved = [v.numpy() for v in self.buffer_vars]  # a training-mode forward moves BN's running stats
        with tf.device(self.device):
            loss, logits, grads = self._probe(tf.gather(self.train_x, idx), tf.gather(self.train_y, idx))
        for var, a in zip(self.buffer_vars, saved):
            var.assign(a)
        flat = {p.name: g.numpy() for p, g in zip(models.params(self.spec.model), grads)}
        return float(loss), logits.numpy(), layouts.from_channels_last(self.spec.model, flat)

    def parameters(self):
        flat = {p.name: v.numpy() for p, v in zip(models.params(self.spec.model), self.variables)}
        return layouts.from_channels_last(self.spec.model, flat)

    def buffers(self):
        """BN's running statistics, canonical names and order ({} without BN)."""
        return {p.name: v.numpy() for p, v in zip(models.buffers(self.spec.model), self.buffer_vars)}

    def set_state(self, params, m, v, t, buffers=None):
        model = self.spec.model
        if buffers is not None:
            for p, var in zip(models.buffers(model), self.buffer_vars):
                var.assign(np.asarray(buffers[p.name], np.float32))
        for dest, src in ((self.variables, params), (self.m, m), (self.v, v)):
            arrays = layouts.to_channels_last(model, {k: np.asarray(a, np.float32) for k, a in src.items()})
            for var, a in zip(dest, arrays.values()):
                var.assign(a)
        self.t.assign(int(t))

    def adam_state(self):
        names = [p.name for p in models.params(self.spec.model)]
        back = lambda vs: layouts.from_channels_last(self.spec.model, {n: x.numpy() for n, x in zip(names, vs)})  # noqa: E731
        return back(self.m), back(self.v), int(self.t.numpy())
