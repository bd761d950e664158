"""Flux.jl backend: the spec in Julia (julia/src, module DLBenchFlux), driven through juliacall.

    python -m runner run --framework flux [--device cuda|mps|cpu] [--option flux.gil=release|hold]
    python -m runner verify --framework flux    # the parity gate: probe_step, parameters, set_state, adam_state

Julia starts inside the worker process. Weights, data, the layer list and the spec's optimizer and
loss fields go to Julia once, as a tensor bundle in a temporary folder (julia_bundle: NumPy's
C-order bytes that Julia reads column-major with the dimensions reversed, i.e. straight into
Flux's WHCN/WHIO layouts); each epoch's batch order goes over as a NumPy array. Julia keeps the
data on its device and hands back sums, counts and arrays.

Where Julia or the julia/env environment is missing, the constructor raises FrameworkUnavailable
within milliseconds, before juliacall is imported (juliacall would otherwise try to download
Julia): see julia_env.

gil=release (default) calls train_epoch!/evaluate with Python's GIL released, so the worker's
resource sampler thread keeps sampling during an epoch; gil=hold keeps it (a fallback, should a
Julia build dislike being entered without the GIL).
"""

from __future__ import annotations

import json
import tempfile
from importlib.metadata import version

import numpy as np

from runner.backends import julia_bundle, julia_env
from runner.backends.base import CPU_PEAK_MEMORY, EpochStats, FrameworkUnavailable, parse_options
from runner.workload import models
from runner.workload.spec import Spec

_DEVICES = {"cpu": "cpu", "cuda": "cuda", "mps": "metal"}   # dlbench's names -> DLBenchFlux's
_KINDS = {v: k for k, v in _DEVICES.items()}


def missing_layers(model: str) -> list[str]:
    """What julia/src/model.jl cannot build of `model` (it knows stride-1 biased convs, dense, ReLU,
    max-pool and flatten): [] if it can."""
    missing = []
    for n in models.nodes(model):
        layer = n.layer
        if isinstance(layer, models.Conv) and (layer.stride != 1 or not layer.bias):
            missing.append("strided or bias-free convolutions")
        elif not isinstance(layer, (models.Conv, models.Dense, models.ReLU, models.MaxPool, models.Flatten)):
            missing.append({models.BatchNorm: "batch norm", models.Residual: "residual blocks",
                             models.GlobalAvgPool: "global average pooling"}.get(
                type(layer), type(layer).__name__))
    return list(dict.fromkeys(missing))


def layer_list(model: str) -> list[dict]:
    """The model's layers as plain dicts for Julia (julia/src/model.jl builds the Chain)."""
    out = []
    for layer in models.MODELS[model]:
        if isinstance(layer, models.Conv):
            out.append({"kind": "conv", "out": layer.out, "kernel": layer.kernel, "pad": layer.pad})
        elif isinstance(layer, models.Dense):
            out.append({"kind": "dense", "out": layer.out})
        elif isinstance(layer, models.MaxPool):
            out.append({"kind": "maxpool", "size": layer.size})
        else:
            out.append({"kind": {models.ReLU: "relu", models.Flatten: "flatten"}[type(layer)]})
    return out


def spec_fields(spec: Spec) -> dict:
    """The spec fields DLBenchFlux honours itself (the rest are the harness')."""
    return {"model": spec.model, "batch_size": spec.batch_size, "optimizer": spec.optimizer,
            "learning_rate": spec.learning_rate, "beta1": spec.beta1, "beta2": spec.beta2, "eps": spec.eps,
            "weight_decay": spec.weight_decay, "loss": spec.loss, "eval_batch_size": spec.eval_batch_size}


def write_setup(folder, spec: Spec, params: dict[str, np.ndarray], train_x, train_y, test_x, test_y):
    """The bundle DLBenchFlux.setup reads: weights in canonical order, data, layers, spec fields."""
    tensors = {**params,
               "train_x": np.asarray(train_x, np.float32), "train_y": np.asarray(train_y, np.int64),
               "test_x": np.asarray(test_x, np.float32), "test_y": np.asarray(test_y, np.int64)}
    meta = {"spec": spec_fields(spec), "layers": layer_list(spec.model), "params": list(params),
            "classes": _classes(spec.model)}
    return julia_bundle.write(folder, tensors, meta)


def write_state(folder, names: list[str], params: dict, m: dict, v: dict):
    """The bundle DLBenchFlux.set_state! reads: float32 weights under their canonical names, then
    the first moments as m:<name>, then the second as v:<name>, all in canonical order and layout."""
    tensors = {}
    for prefix, arrays in (("", params), ("m:", m), ("v:", v)):
        tensors.update({prefix + n: np.asarray(arrays[n], np.float32) for n in names})
    return julia_bundle.write(folder, tensors, {"params": list(names)})


def _classes(model: str) -> int:
    """Width of the model's output: the one-hot label width."""
    *_, (_, _, out) = models.walk(model)
    return out[0]


class FluxBackend:
    name = "flux"
    OPTIONS = {"gil": ("release", ("release", "hold"))}

    def __init__(self, spec: Spec, device: str = "auto", options: dict | None = None):
        self.options = parse_options(self.name, self.OPTIONS, options or {})
        if device not in ("auto", *_DEVICES):
            raise FrameworkUnavailable(f"flux backend has no device {device!r}")
        self.spec = spec
        missing = missing_layers(spec.model)
        if missing:  # before Julia loads: refused in milliseconds, Julia or not
            raise FrameworkUnavailable(f"flux backend has no {spec.model} yet: julia/src (DLBenchFlux) builds no"
                                       f" {', '.join(missing)}; run {spec.model} with torch, tensorflow or jax")
        self.jl = julia_env.load()          # FrameworkUnavailable, fast, if Julia is not there
        self.mod = self.jl.DLBenchFlux
        self.jdevice = self._pick_device(device)
        self.state = None

    def _pick_device(self, request: str) -> str:
        if request == "cpu":
            return "cpu"
        wanted = [_DEVICES[request]] if request != "auto" else ["cuda", "metal"]
        for jdev in wanted:
            if julia_env.use_gpu_package(self.jl, jdev):
                return jdev
        if request == "auto":
            return "cpu"
        pkg = {"cuda": '["CUDA", "cuDNN"]', "metal": '"Metal"'}[_DEVICES[request]]
        raise FrameworkUnavailable(f"device {request} requested, but {_DEVICES[request]} is not functional"
                                   f" in {julia_env.project()} (julia --project=julia/env -e"
                                   f" 'using Pkg; Pkg.add({pkg})', on a machine with that GPU)")

    def _call(self, fn, *args):
        """A Julia call that touches no Python object, with the GIL released unless gil=hold."""
        return fn(*args) if self.options["gil"] == "hold" else fn._jl_call_nogil(*args)

    def info(self) -> dict:
        b = json.loads(str(self.mod.build_info(self.jdevice)))
        framework = {"name": "flux", "version": b.get("flux"), "julia": b.get("julia"),
                     "optimisers": b.get("optimisers"), "zygote": b.get("zygote"), "nnlib": b.get("nnlib"),
                     "juliacall": version("juliacall"), "threads": b.get("julia_threads"),
                     "blas_threads": b.get("blas_threads"), "blas": b.get("blas"),
                     "mode": "zygote", "optimizer": "SpecAdam (float64 bias corrections)",
                     "settings": julia_env.settings(), "options": self.options}
        return {"framework": framework, "device": {"kind": _KINDS[self.jdevice], "name": b.get("device_name")}}

    def setup(self, params, train_x, train_y, test_x, test_y) -> None:
        spec = self.spec
        if spec.optimizer != "adam":
            raise FrameworkUnavailable(f"flux backend has no optimizer {spec.optimizer!r}")
        if spec.loss != "softmax_cross_entropy":
            raise FrameworkUnavailable(f"flux backend has no loss {spec.loss!r}")
        self.names = list(params)
        with tempfile.TemporaryDirectory(prefix="dlbench-flux-") as tmp:
            write_setup(tmp, spec, params, train_x, train_y, test_x, test_y)
            self.state = self.mod.setup(tmp, self.jdevice)
        self.batch_size = spec.batch_size

    def train_epoch(self, order: np.ndarray) -> EpochStats:
        assert order.shape[1] == self.batch_size
        self.mod.set_order_b(self.state, np.ascontiguousarray(order, dtype=np.int64))  # reads NumPy: GIL held
        loss_sum, correct, steps = self._call(self.mod.train_epoch_b, self.state)
        return EpochStats(float(loss_sum), int(correct), int(steps))

    def evaluate(self):
        return int(self._call(self.mod.evaluate, self.state))

    def synchronize(self) -> None:
        if self.state is not None:
            self._call(self.mod.synchronize_b, self.state)

    def peak_memory(self):
        if self.jdevice == "cpu":
            return CPU_PEAK_MEMORY
        value, how = self.mod.device_peak_memory(self.state)
        return (None if value is None else int(value)), str(how)

    def probe_step(self, idx):
        loss, logits, *grads = self.mod.probe_step(self.state, np.ascontiguousarray(idx, dtype=np.int64))
        return (float(loss), julia_bundle.from_julia(logits),
                {n: julia_bundle.from_julia(g) for n, g in zip(self.names, grads)})

    def parameters(self):
        return {n: julia_bundle.from_julia(a) for n, a in zip(self.names, self.mod.parameters(self.state))}

    def set_state(self, params, m, v, t):
        # SpecAdam computes its bias corrections from the step count in Float64 (julia/src/adam.jl).
        with tempfile.TemporaryDirectory(prefix="dlbench-flux-") as tmp:
            write_state(tmp, self.names, params, m, v)
            self.mod.set_state_b(self.state, tmp, int(t))

    def adam_state(self):
        t, *moments = self.mod.adam_state(self.state)
        n = len(self.names)
        m = {name: julia_bundle.from_julia(a) for name, a in zip(self.names, moments[:n])}
        v = {name: julia_bundle.from_julia(a) for name, a in zip(self.names, moments[n:])}
        return m, v, int(t)
