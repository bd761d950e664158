"""JAX backend: flax.linen model + optax Adam, the train step under jax.jit, data resident on the device.

    python -m runner run --framework jax [--device cuda|mps|cpu] [--option jax.loop=scan|step]

    XLA_FLAGS=--xla_force_host_platform_device_count=2 python -m runner run --framework jax --option jax.devices=2

loop=step (default) dispatches one jitted step per batch; loop=scan compiles the whole epoch into one
lax.scan. Both donate the weights and optimizer state, so XLA updates them in place.

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

from runner.workload import layouts, models
from runner.backends.base import CPU_PEAK_MEMORY, EpochStats, FrameworkUnavailable, parse_options
from runner.workload.spec import Spec

# JAX calls Apple's Metal plugin "METAL" and NVIDIA "cuda" (older releases: "gpu").
_PLATFORMS = {"cpu": ("cpu",), "cuda": ("cuda", "gpu"), "mps": ("METAL", "metal")}


def build_model(nn, model: str):
    """A flax.linen module from the layer list, modules named like the canonical params (conv1, fc1...)."""
    spec_layers = models.MODELS[model]

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            counts = {models.Conv: 0, models.Dense: 0}
            for layer in spec_layers:
                if isinstance(layer, models.Conv):
                    counts[models.Conv] += 1
                    pad = [(layer.pad, layer.pad)] * 2
                    x = nn.Conv(layer.out, (layer.kernel, layer.kernel), padding=pad,
                                name=f"conv{counts[models.Conv]}")(x)
                elif isinstance(layer, models.Dense):
                    counts[models.Dense] += 1
                    x = nn.Dense(layer.out, name=f"fc{counts[models.Dense]}")(x)
                elif isinstance(layer, models.ReLU):
                    x = nn.relu(x)
                elif isinstance(layer, models.MaxPool):
                    x = nn.max_pool(x, (layer.size, layer.size), strides=(layer.size, layer.size))
                else:
                    x = x.reshape((x.shape[0], -1))  # NHWC order: layouts permutes fc1 to match
            return x

    return Net()


class JaxBackend:
    name = "jax"
    OPTIONS = {"loop": ("step", ("step", "scan")),
               "devices": ("1", ("1", "2", "4", "8", "all"))}  # all: every device, also across processes

    def __init__(self, spec: Spec, device: str = "auto", options: dict | None = None):
        self.options = parse_options(self.name, self.OPTIONS, options or {})
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
                     "matmul_precision": "highest", "options": self.options}
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
        # torch-style L2 (added to the gradient before Adam), then Adam with the spec's constants.
        self.tx = optax.chain(optax.add_decayed_weights(spec.weight_decay),
                              optax.adam(spec.learning_rate, b1=spec.beta1, b2=spec.beta2, eps=spec.eps))
        self.opt_state = put(self.tx.init(params))
        self.train_x, self.train_y = put(train_x[..., None]), put(train_y.astype(np.int32))
        self.test_x, self.test_y = put(test_x[..., None]), put(test_y.astype(np.int32))
        self.batch_size, self.eval_batch_size = spec.batch_size, spec.eval_batch_size
        self._compile()

    def _loss(self, params, x, y):
        logits = self.model.apply({"params": params}, x)
        return self.optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits

    def _compile(self):
        jax, optax = self.jax, self.optax
        grad_fn = jax.value_and_grad(self._loss, has_aux=True)

        def step(carry, idx, train_x, train_y):
            params, opt_state, loss_sum, correct = carry
            x, y = self._split(train_x[idx]), self._split(train_y[idx])
            (loss, logits), grads = grad_fn(params, x, y)
            updates, opt_state = self.tx.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
            correct = correct + (logits.argmax(-1) == y).sum()
            return (params, opt_state, loss_sum + loss, correct)

        def epoch_scan(carry, order, train_x, train_y):
            return jax.lax.scan(lambda c, idx: (step(c, idx, train_x, train_y), None), carry, order)[0]

        # Donating the carry lets XLA update weights and Adam moments in place.
        self._step = jax.jit(step, donate_argnums=0)
        self._epoch = jax.jit(epoch_scan, donate_argnums=0)
        self._correct = jax.jit(lambda p, x, y: (self.model.apply({"params": p}, x).argmax(-1) == y).sum())
        self._probe = jax.jit(lambda p, idx, tx, ty: grad_fn(p, self._split(tx[idx]), self._split(ty[idx])))

    def train_epoch(self, order: np.ndarray) -> EpochStats:
        jax, jnp = self.jax, self.jax.numpy
        assert order.shape[1] == self.batch_size
        zeros = self._put((np.zeros((), np.float32), np.zeros((), np.int32)))
        carry = (self.params, self.opt_state, *zeros)
        batches = self._put(order.astype(np.int32), self.rows_split if self.n_devices > 1 else None)
        if self.options["loop"] == "scan":
            carry = self._epoch(carry, batches, self.train_x, self.train_y)
        else:
            for i in range(len(order)):
                carry = self._step(carry, batches[i], self.train_x, self.train_y)
        self.params, self.opt_state, loss_sum, correct = carry
        return EpochStats(loss_sum, correct, len(order))

    def evaluate(self):
        n, bs, correct = len(self.test_y), self.eval_batch_size, 0
        for i in range(0, n, bs):
            correct = correct + self._correct(self.params, self.test_x[i:i + bs], self.test_y[i:i + bs])
        return correct

    def synchronize(self) -> None:
        self.jax.block_until_ready((self.params, self.opt_state))  # every shard, on every device

    def peak_memory(self):
        stats = self.device.memory_stats()  # None on the CPU backend
        if not stats or "peak_bytes_in_use" not in stats:
            return CPU_PEAK_MEMORY if self.device.platform == "cpu" else (
                None, f"jax {self.device.platform} device reports no peak_bytes_in_use")
        return int(stats["peak_bytes_in_use"]), "jax Device.memory_stats()['peak_bytes_in_use']"

    def probe_step(self, idx):
        idx = self._put(np.asarray(idx, np.int32), self.batch_split)
        (loss, logits), grads = self._probe(self.params, idx, self.train_x, self.train_y)
        grads = self.jax.tree.map(self._fetch, grads)
        grads = layouts.from_channels_last(self.spec.model, layouts.from_tree(self.spec.model, grads))
        return float(loss), self._fetch(logits), grads

    def parameters(self):
        return layouts.from_channels_last(self.spec.model, layouts.from_tree(self.spec.model, self.params))


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
