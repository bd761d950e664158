"""JAX backend: flax.linen model, the spec's Adam, the train step under jax.jit, data resident on the device.

    python -m runner run --framework jax [--device cuda|mps|cpu] [--option jax.loop=scan|step]
    XLA_FLAGS=--xla_force_host_platform_device_count=2 python -m runner run --framework jax --option jax.devices=2
    python -m runner run --framework jax --option jax.loader=host --option jax.workers=2

loop=step (default) dispatches one jitted step per batch; loop=scan compiles the whole epoch into one
lax.scan. Both donate the weights and optimizer state, so XLA updates them in place.
loader=host feeds loop=step from Grain on the host over the raw uint8 images, each batch put on the
device as it comes (runner.backends.loaders: same batches, same bits, the wait timed as
timing.epoch_data_s); it refuses loop=scan, which needs the whole epoch on the device before it
starts (staging the epoch would time one bulk transform, not a loader feeding steps).

Batch norm (resnet18) is written out as a flax module (_batch_norm_class), the workload's rule
(models.BatchNorm), because flax's own keeps the biased variance; its running statistics ride in
the step's carry next to Adam's moments (opt_state = (m, v, batch_stats)). Training steps and
probe_step apply the model in training mode, evaluate in eval mode. Under jax.sharding the batch
statistics are those of the global batch: jit computes the mean over the whole (sharded) array.

Adam is written out (as in the TF backend) rather than taken from optax.adam, because optax computes
the bias corrections 1 - beta**t in float32 on the device, ~1.3e-5 off for beta2 = 0.999 (issue 19);
the spec's rule is float64, rounded to float32 once. Without jax_enable_x64 there is no float64 on
the device, so the host computes each step's (c1, c2) in double and feeds them in with the batch
indices: one float32 pair per step, so the step under jit and lax.scan stays the same program.

devices=N (or all) trains data-parallel over N of jax.devices() with jax.sharding: a one-axis Mesh,
every global batch split along it (NamedSharding P("batch")), weights, optimizer state and data
replicated; XLA inserts the gradient all-reduce, so each step is the one-device step on the same
global batch (the parity gate checks it). It is a backend option, not a launcher, because JAX drives
several devices from one process; where a launcher starts several processes with coordinates
(srun with several tasks, or JAX_COORDINATOR_ADDRESS), jax.distributed.initialize joins them first
and jax.devices() spans all of them (devices=all).
"""

from __future__ import annotations

import os

import numpy as np

from runner.workload import layouts, models, reference
from runner.backends import loaders
from runner.backends.base import CPU_PEAK_MEMORY, EpochStats, FrameworkUnavailable, parse_options
from runner.workload.spec import Spec, adam_bias_corrections as bias_corrections

# JAX calls Apple's Metal plugin "METAL" and NVIDIA "cuda" (older releases: "gpu").
_PLATFORMS = {"cpu": ("cpu",), "cuda": ("cuda", "gpu"), "mps": ("METAL", "metal")}


def build_model(nn, model: str):
    """A flax.linen module from the layer list, modules named like the canonical params (conv1,
    layer1.0.bn1, fc); called as model.apply(variables, x, train) with variables {"params": ...,
    "batch_stats": ...} (the BN running statistics; an empty tree without BN)."""
    seq, norm = models.plan(model), _batch_norm_class(nn)

    def run(seq, x, train):
        for node in seq:
            layer = node.layer
            if isinstance(layer, models.Conv):
                # Explicit (pad, pad) pairs: 'SAME' would pad a stride-2 conv on an even input
                # asymmetrically, another function than the canonical pad-1-all-round.
                pad = [(layer.pad, layer.pad)] * 2
                x = nn.Conv(layer.out, (layer.kernel, layer.kernel), strides=(layer.stride, layer.stride),
                            padding=pad, use_bias=layer.bias, name=node.name)(x)
            elif isinstance(layer, models.Dense):
                x = nn.Dense(layer.out, name=node.name)(x)
            elif isinstance(layer, models.BatchNorm):
                x = norm(layer.eps, layer.momentum, name=node.name)(x, train)
            elif isinstance(layer, models.Residual):
                x = run(node.body, x, train) + run(node.shortcut, x, train)
            elif isinstance(layer, models.ReLU):
                x = nn.relu(x)
            elif isinstance(layer, models.MaxPool):
                x = nn.max_pool(x, (layer.size, layer.size), strides=(layer.size, layer.size))
            elif isinstance(layer, models.GlobalAvgPool):
                x = x.mean(axis=(1, 2))
            else:
                x = x.reshape((x.shape[0], -1))  # NHWC order: layouts permutes fc1 to match
        return x

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool = False):
            return run(seq, x, train)

    return Net()


def _batch_norm_class(nn):
    """The workload's batch norm (models.BatchNorm) as a flax module, written out: flax's BatchNorm
    keeps its running variance with the biased batch variance (and calls momentum what torch calls
    1 - momentum); the workload's rule takes the unbiased one. Params scale, bias; batch_stats
    running_mean, running_var (the canonical names' last parts)."""
    import jax
    import jax.numpy as jnp

    class BatchNorm(nn.Module):
        eps: float
        momentum: float

        @nn.compact
        def __call__(self, x, train: bool):
            c = (x.shape[-1],)
            scale = self.param("scale", nn.initializers.ones, c)
            bias = self.param("bias", nn.initializers.zeros, c)
            running_mean = self.variable("batch_stats", "running_mean", jnp.zeros, c)
            running_var = self.variable("batch_stats", "running_var", jnp.ones, c)
            if train:
                mean = x.mean(axis=(0, 1, 2))
                var = jnp.square(x - mean).mean(axis=(0, 1, 2))                # biased: normalizes
                n = x.size // x.shape[-1]
                if not self.is_initializing():
                    m = self.momentum
                    running_mean.value = (1 - m) * running_mean.value + m * mean
                    running_var.value = (1 - m) * running_var.value + m * (var * (n / (n - 1)))  # unbiased
            else:
                mean, var = running_mean.value, running_var.value
            return (x - mean) * jax.lax.rsqrt(var + self.eps) * scale + bias

    return BatchNorm


# JAX's GPU allocator reserves 75 % of the card at start unless told otherwise: the board's memory
# use (NVML) then says nothing of the run, peak_bytes_in_use does. The settings are recorded as seen.
XLA_MEMORY_ENV = ("XLA_PYTHON_CLIENT_PREALLOCATE", "XLA_PYTHON_CLIENT_MEM_FRACTION", "XLA_PYTHON_CLIENT_ALLOCATOR")


def xla_client_memory() -> dict:
    """{variable: value or None (JAX's default: preallocate 75 %)} of the allocator settings."""
    return {name: os.environ.get(name) for name in XLA_MEMORY_ENV}


class JaxBackend:
    name = "jax"
    OPTIONS = {"loop": ("step", ("step", "scan")),
               "devices": ("1", ("1", "2", "4", "8", "all")),  # all: every device, also across processes
               "loader": ("resident", ("resident", "host")), "workers": ("0", loaders.WORKERS)}

    @staticmethod
    def check_options(options: dict) -> None:
        loaders.check("jax", options, "host", {
            ("loop", "scan"): ("host", "lax.scan needs the whole epoch on the device before it starts;"
                                       " use --option jax.loop=step")})

    def __init__(self, spec: Spec, device: str = "auto", options: dict | None = None):
        self.options = parse_options(self.name, self.OPTIONS, options or {})
        self.check_options(self.options)
        try:
            import jax
            import optax
            from flax import linen as nn
        except Exception as e:  # a broken install raises more than ImportError
            raise FrameworkUnavailable(f"cannot import jax/flax/optax: {type(e).__name__}: {e}") from e
        # float32 matmuls and convolutions at full precision (no TF32 on NVIDIA): the spec is float32.
        jax.config.update("jax_default_matmul_precision", "highest")
        self.jax, self.optax, self.nn, self.spec = jax, optax, nn, spec
        _join_processes(jax)
        self.device = self._pick_device(device)
        self._spread(self.options["devices"])

    def _pick_device(self, request: str):
        jax = self.jax
        if request == "auto":
            return jax.local_devices()[0]  # this process's own (jax.devices() spans every process)
        if request not in _PLATFORMS:
            raise FrameworkUnavailable(f"jax backend has no device {request!r}")
        for platform in _PLATFORMS[request]:
            try:
                return jax.local_devices(backend=platform)[0]
            except RuntimeError:
                continue
        raise FrameworkUnavailable(f"device {request} requested, but jax {jax.__version__} has no such backend"
                                   f" (it has {jax.default_backend()})")

    def _spread(self, wanted: str) -> None:
        """The devices this run trains on, and how arrays are placed on them."""
        jax, dev = self.jax, self.device
        pool = [d for d in jax.devices() if d.platform == dev.platform]
        n = len(pool) if wanted == "all" else int(wanted)
        if n > len(pool):
            hint = " (on the CPU: XLA_FLAGS=--xla_force_host_platform_device_count=N)" if dev.platform == "cpu" else ""
            raise FrameworkUnavailable(f"devices={wanted}: jax sees {len(pool)} {dev.platform} device(s){hint}")
        if self.spec.batch_size % n:
            raise ValueError(f"devices={n} does not divide the global batch {self.spec.batch_size}")
        self.n_devices, self.batch_split = n, None
        if n == 1:
            self.rep = dev
            return
        from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

        mesh = Mesh(np.array(pool[:n]), ("batch",))
        self.rep = NamedSharding(mesh, P())             # weights, optimizer state, data: on every device
        self.batch_split = NamedSharding(mesh, P("batch"))      # one global batch: its rows across devices
        self.rows_split = NamedSharding(mesh, P(None, "batch"))  # an epoch's (steps, batch) order

    def _put(self, tree, sharding=None):
        """NumPy (or host) values onto the run's devices; from the callback, so that it also works when
        the devices span several processes (each gives its own shards of the same value)."""
        jax, sharding = self.jax, sharding or self.rep
        if self.n_devices == 1:
            return jax.device_put(tree, sharding)

        def one(a):
            a = np.asarray(a)
            return jax.make_array_from_callback(a.shape, sharding, lambda index: a[index])
        return jax.tree.map(one, tree)

    def _split(self, a):
        """Inside jit: keep a global batch split along the mesh (no-op on one device)."""
        return a if self.batch_split is None else self.jax.lax.with_sharding_constraint(a, self.batch_split)

    def _fetch(self, a) -> np.ndarray:
        if getattr(a, "is_fully_addressable", True):
            return np.asarray(a)
        if a.is_fully_replicated:  # every process holds all of it
            return np.asarray(a.addressable_data(0))
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(a, tiled=True))

    def parallel(self) -> dict:
        """The record's `parallel` block."""
        from runner.backends.base import single_parallel

        n, batch = self.n_devices, self.spec.batch_size
        if n == 1:
            return single_parallel(batch)
        return {"world_size": n, "processes": self.jax.process_count(), "devices": n,
                "strategy": "jax.sharding: NamedSharding, batch split, weights replicated", "comm_backend": "xla",
                "global_batch": batch, "per_rank_batch": batch // n,
                "timing": "process 0's clock after block_until_ready; every step all-reduces across devices,"
                          " so it waits for the slowest"}

    def info(self) -> dict:
        jax, dev = self.jax, self.device
        kind = {"gpu": "cuda", "metal": "mps"}.get(dev.platform.lower(), dev.platform.lower())
        from importlib.metadata import version

        framework = {"name": "jax", "version": jax.__version__, "jaxlib": version("jaxlib"),
                     "flax": version("flax"), "optax": version("optax"), "mode": "jit",
                     "matmul_precision": "highest", "options": self.options,
                     "xla_client_memory": xla_client_memory()}
        return {"framework": framework, "device": {"kind": kind, "name": None if kind == "cpu" else dev.device_kind},
                "parallel": self.parallel()}

    def setup(self, params, train_x, train_y, test_x, test_y) -> None:
        jax, optax, spec = self.jax, self.optax, self.spec
        if spec.optimizer != "adam":
            raise FrameworkUnavailable(f"jax backend has no optimizer {spec.optimizer!r}")
        if spec.loss != "softmax_cross_entropy":
            raise FrameworkUnavailable(f"jax backend has no loss {spec.loss!r}")
        self.model = build_model(self.nn, spec.model)
        put = self._put
        params = layouts.to_tree(layouts.to_channels_last(spec.model, params))
        self.params = put(params)
        zeros = jax.tree_util.tree_map(np.zeros_like, params)
        stats = layouts.to_tree(reference.initial_buffers(spec.model))  # BN running stats; {} without BN
        # (m, v, BN running statistics): everything a step carries forward besides the weights.
        # t: steps taken, kept on the host.
        self.opt_state, self.t = put((zeros, zeros, stats)), 0
        self.test_x, self.test_y = put(test_x[..., None]), put(test_y.astype(np.int32))
        self.loader = None
        if self.options["loader"] == "host":  # raw pixels in Grain; the normalized set stays on the
            # host for probe_step alone (the gate), so device memory is the loader's
            workers = int(self.options["workers"])
            loaders.note_workers(self.name, workers)
            raw = loaders.raw_pixels(train_x, spec.norm_mean, spec.norm_std)
            put_batch = lambda a: self._put(a, self.batch_split)  # noqa: E731
            try:
                self.loader = loaders.GrainHost(raw, train_y, spec.norm_mean, spec.norm_std, workers, put_batch)
            except ImportError as e:
                raise FrameworkUnavailable(f"jax.loader=host needs grain ({e}): pip install 'dlbench[jax]'"
                                           " -c constraints.txt") from e
            self.train_x, self.train_y = train_x[..., None], train_y.astype(np.int32)
        else:
            self.train_x, self.train_y = put(train_x[..., None]), put(train_y.astype(np.int32))
        self.batch_size, self.eval_batch_size = spec.batch_size, spec.eval_batch_size
        self._compile()

    def _loss(self, params, stats, x, y):
        """Training mode: (loss, (logits, the BN running statistics after this batch))."""
        logits, new = self.model.apply({"params": params, "batch_stats": stats}, x, True, mutable=["batch_stats"])
        loss = self.optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, (logits, new.get("batch_stats", {}))

    def _adam(self, params, grads, moments, c):
        """The spec's Adam (torch-style L2, eps outside the bias-corrected sqrt); c = (c1, c2), float32."""
        tree_map, s = self.jax.tree_util.tree_map, self.spec
        m, v = moments
        if s.weight_decay:
            grads = tree_map(lambda g, p: g + s.weight_decay * p, grads, params)
        m = tree_map(lambda m, g: s.beta1 * m + (1 - s.beta1) * g, m, grads)
        v = tree_map(lambda v, g: s.beta2 * v + (1 - s.beta2) * g * g, v, grads)
        params = tree_map(lambda p, m, v: p - s.learning_rate * (m / c[0]) / (self.jax.numpy.sqrt(v / c[1]) + s.eps),
                          params, m, v)
        return params, (m, v)

    def _corrections(self, steps: int) -> np.ndarray:
        """(steps, 2) float32: each coming step's bias corrections, float64 rounded once."""
        return np.array([bias_corrections(self.spec, t) for t in range(self.t + 1, self.t + steps + 1)], np.float32)

    def _compile(self):
        jax = self.jax
        grad_fn = jax.value_and_grad(self._loss, has_aux=True)

        def body(params, opt_state, idx, c, train_x, train_y):
            return fit(params, opt_state, self._split(train_x[idx]), self._split(train_y[idx]), c)

        def fit(params, opt_state, x, y, c):  # one step on one batch: gathered above, or from the loader
            m, v, stats = opt_state
            (loss, (logits, stats)), grads = grad_fn(params, stats, x, y)
            params, (m, v) = self._adam(params, grads, (m, v), c)
            return params, (m, v, stats), loss, (logits.argmax(-1) == y).sum()

        def step(carry, batches, corr, train_x, train_y):
            # The step picks its own row of the epoch's batches and corrections by a counter in the
            # carry: no per-step slicing dispatched from Python.
            params, opt_state, loss_sum, correct, i = carry
            params, opt_state, loss, hits = body(params, opt_state, batches[i], corr[i], train_x, train_y)
            return (params, opt_state, loss_sum + loss, correct + hits, i + 1)

        def step_batch(carry, x, y, corr):  # loader mode: the batch arrives from the host
            params, opt_state, loss_sum, correct, i = carry
            params, opt_state, loss, hits = fit(params, opt_state, x, y, corr[i])
            return (params, opt_state, loss_sum + loss, correct + hits, i + 1)

        def epoch_scan(carry, batches, corr, train_x, train_y):
            def one(carry, xs):
                params, opt_state, loss_sum, correct, i = carry
                params, opt_state, loss, hits = body(params, opt_state, *xs, train_x, train_y)
                return (params, opt_state, loss_sum + loss, correct + hits, i + 1), None
            return jax.lax.scan(one, carry, (batches, corr))[0]

        # Donating the carry lets XLA update weights and Adam moments in place.
        self._step = jax.jit(step, donate_argnums=0)
        self._step_batch = jax.jit(step_batch, donate_argnums=0)
        self._epoch = jax.jit(epoch_scan, donate_argnums=0)
        # Eval mode: batch norm reads the running statistics.
        self._correct = jax.jit(lambda p, s, x, y: (self.model.apply({"params": p, "batch_stats": s}, x, False)
                                                    .argmax(-1) == y).sum())
        # Pure: the running statistics it computes are dropped.
        self._probe = jax.jit(lambda p, s, idx, tx, ty: grad_fn(p, s, self._split(tx[idx]), self._split(ty[idx])))

    def train_epoch(self, order: np.ndarray) -> EpochStats:
        assert order.shape[1] == self.batch_size
        zeros = self._put((np.zeros((), np.float32), np.zeros((), np.int32), np.zeros((), np.int32)))
        carry = (self.params, self.opt_state, *zeros)
        corr = self._put(self._corrections(len(order)))
        data_s = None
        if self.loader is not None:  # loop=step (check_options), fed by Grain
            batches = self.loader.epoch(order)
            for x, y in batches:
                carry = self._step_batch(carry, x, y, corr)
            data_s = batches.data_s
        elif self.options["loop"] == "scan":
            carry = self._epoch(carry, self._rows(order), corr, self.train_x, self.train_y)
        else:
            batches = self._rows(order)
            for _ in range(len(order)):
                carry = self._step(carry, batches, corr, self.train_x, self.train_y)
        self.params, self.opt_state, loss_sum, correct, _ = carry
        self.t += len(order)
        return EpochStats(loss_sum, correct, len(order), data_s)

    def _rows(self, order: np.ndarray):
        """The epoch's (steps, batch) indices on the device(s), for the resident data."""
        return self._put(order.astype(np.int32), self.rows_split if self.n_devices > 1 else None)

    def evaluate(self):
        n, bs, correct = len(self.test_y), self.eval_batch_size, 0
        for i in range(0, n, bs):
            x, y = self.test_x[i:i + bs], self.test_y[i:i + bs]
            correct = correct + self._correct(self.params, self.opt_state[2], x, y)  # BN: running statistics
        return correct

    def synchronize(self) -> None:
        self.jax.block_until_ready((self.params, self.opt_state))

    def peak_memory(self):
        stats = self.device.memory_stats()  # None on the CPU backend
        if not stats or "peak_bytes_in_use" not in stats:
            return CPU_PEAK_MEMORY if self.device.platform == "cpu" else (
                None, f"jax {self.device.platform} device reports no peak_bytes_in_use")
        return int(stats["peak_bytes_in_use"]), "jax Device.memory_stats()['peak_bytes_in_use']"

    def probe_step(self, idx):
        idx = self._put(np.asarray(idx, np.int32), self.batch_split)
        (loss, (logits, _)), grads = self._probe(self.params, self.opt_state[2], idx, self.train_x, self.train_y)
        grads = self._canonical(self.jax.tree.map(self._fetch, grads))
        return float(loss), self._fetch(logits), grads

    def parameters(self):
        return self._canonical(self.params)

    def _canonical(self, tree):
        tree = self.jax.tree.map(self._fetch, tree)
        return layouts.from_channels_last(self.spec.model, layouts.from_tree(self.spec.model, tree))

    def buffers(self):
        """BN's running statistics, canonical names and order ({} without BN)."""
        tree = self.jax.tree.map(self._fetch, self.opt_state[2])
        return layouts.from_tree(self.spec.model, tree, buffers=True)

    def set_state(self, params, m, v, t, buffers=None):
        put = lambda d: self._put(layouts.to_tree(layouts.to_channels_last(  # noqa: E731
            self.spec.model, {k: np.asarray(a, np.float32) for k, a in d.items()})))
        stats = self.opt_state[2] if buffers is None else put(buffers)
        self.params, self.opt_state, self.t = put(params), (put(m), put(v), stats), int(t)

    def adam_state(self):
        m, v, _ = self.opt_state
        return self._canonical(m), self._canonical(v), self.t


def _join_processes(jax) -> None:
    """jax.distributed.initialize where a launcher started several processes and says where they meet:
    srun with several tasks (JAX reads Slurm's variables itself), or JAX_COORDINATOR_ADDRESS with
    JAX_NUM_PROCESSES and JAX_PROCESS_ID. Once per process (the parity gate's fresh backend reuses it)."""
    env = os.environ
    several = int(env.get("SLURM_STEP_NUM_TASKS", "1") or 1) > 1
    if not (several or env.get("JAX_COORDINATOR_ADDRESS")) or jax.distributed.is_initialized():
        return
    try:  # cross-process collectives on the CPU need gloo; GPUs use NCCL regardless
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    except (AttributeError, ValueError):
        pass
    if env.get("JAX_COORDINATOR_ADDRESS"):
        jax.distributed.initialize(env["JAX_COORDINATOR_ADDRESS"], num_processes=int(env["JAX_NUM_PROCESSES"]),
                                   process_id=int(env["JAX_PROCESS_ID"]))
    else:
        jax.distributed.initialize()
