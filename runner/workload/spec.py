"""The standard workload as one frozen spec: the single source of truth every backend reads.

    python -m runner run                      # the standard spec (DESIGN.md)
    python -m runner run --preset smoke       # 1 epoch on a few thousand samples
    python -m runner run --epochs 5           # any override gives a different spec_hash

Records carry the spec and its hash; records with different hashes never share a table row.

Rules every backend follows beyond the fields (a new backend, Julia or multi-GPU, must too):
  * float32 weights, activations, gradients and Adam moments; no TF32, no reduced precision.
  * Adam is PyTorch's and optax's form: m_hat = m / c1, v_hat = v / c2,
    w -= lr * m_hat / (sqrt(v_hat) + eps), L2 weight decay added to the gradient.
  * Adam's bias corrections c1 = 1 - beta1**t and c2 = 1 - beta2**t are computed in float64 (t the
    exact integer step, 1-based) and rounded to float32 once (adam_bias_corrections). Computed in
    float32, c2 comes out ~1.3e-5 too small for beta2 = 0.999, so every update is ~7e-6 too short,
    always in the same direction: enough to flip a ReLU and part trajectories (issue 19).
  * Batch norm (resnet18) is part of the model's math, its constants in the model definition
    (runner/workload/models.py: eps 1e-5, momentum 0.1; the model name pins them, no spec field):
    training steps normalize with the batch mean and biased variance and update
    running = (1 - momentum) * running + momentum * batch_stat with the UNBIASED batch variance
    (PyTorch's rule; Keras' and flax's own layers differ: the TF and JAX backends write it out);
    evaluation normalizes with the running statistics. Strided convolutions pad symmetrically
    (never 'same'). Under data parallelism the statistics are the global batch's.
  * The parity gate (runner.parity.gate) checks all of this against a float64 reference.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import reprlib
import typing
from dataclasses import dataclass
from typing import Any

from runner.data.catalog import DATASETS
from runner.errors import SpecError
from runner.workload.models import MODELS

SPEC_VERSION = 1


@dataclass(frozen=True)
class Spec:
    model: str = "lenet5"
    dataset: str = "mnist"
    epochs: int = 50
    batch_size: int = 64            # drop_last: every step sees exactly this many samples
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8               # Keras defaults to 1e-7: backends must set it
    weight_decay: float = 0.0
    loss: str = "softmax_cross_entropy"   # mean over the batch
    init: str = "uniform_fan_in"    # U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases
    seed: int = 42
    norm_mean: float = 0.1307       # x/255, then (x - mean) / std, once, before training
    norm_std: float = 0.3081
    eval_batch_size: int = 1000
    target_accuracy: float | None = 0.99  # time-to-accuracy target; None: no target
    limit_train: int | None = None  # first N samples only (smoke runs)
    limit_test: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"spec_version": SPEC_VERSION, **dataclasses.asdict(self)}

    def canonical_json(self) -> str:
        return canonical_json(self.to_dict())

    @property
    def hash(self) -> str:
        return hash_of(self.to_dict())

    @property
    def n_train(self) -> int:
        return self.limit_train or DATASETS[self.dataset].n_train

    @property
    def n_test(self) -> int:
        return self.limit_test or DATASETS[self.dataset].n_test

    @property
    def steps_per_epoch(self) -> int:
        return self.n_train // self.batch_size

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Spec":
        d = dict(d)
        version = d.pop("spec_version", SPEC_VERSION)
        if version != SPEC_VERSION:
            raise SpecError(f"spec version {version} is not supported (this dlbench reads {SPEC_VERSION})")
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise SpecError(f"unknown spec fields: {', '.join(sorted(unknown))}")
        return validate(cls(**d))


def canonical_json(spec: dict[str, Any]) -> str:
    return json.dumps(spec, sort_keys=True, separators=(",", ":"))


def hash_of(spec: dict[str, Any]) -> str:
    """The spec_hash of a spec as a dict (Spec.to_dict(), or a record's "spec"): records are read
    without rebuilding a Spec, and must hash the same way."""
    return hashlib.sha256(canonical_json(spec).encode()).hexdigest()


FIELDS = tuple(f.name for f in dataclasses.fields(Spec))

@functools.cache
def field_types() -> dict[str, tuple[type, bool]]:
    """{field: (str | int | float, may be None)}, from the dataclass annotations: the one place the
    spec's types are written (the record schema's spec section is tested against it)."""
    out = {}
    for name, hint in typing.get_type_hints(Spec).items():
        args = typing.get_args(hint) or (hint,)
        (base,) = [a for a in args if a is not type(None)]
        out[name] = (base, type(None) in args)
    return out

# What each field means on the command line. The CLI makes one flag per field from the dataclass
# (`--batch-size`, `--beta2`, ...) and reads `--set FIELD=VALUE` through parse_field: a new field
# needs a line here and nothing in the CLI. A test checks every field has one.
FIELD_HELP: dict[str, str] = {
    "model": f"the network: {', '.join(MODELS)} (runner/workload/models.py)",
    "dataset": "the data (mnist, fashion, or synthetic: tiny, generated, no download)",
    "epochs": "passes over the training set",
    "batch_size": "samples per step (the last incomplete batch is dropped)",
    "optimizer": "the optimizer (adam)",
    "learning_rate": "Adam's learning rate",
    "beta1": "Adam's first-moment decay",
    "beta2": "Adam's second-moment decay",
    "eps": "Adam's epsilon, added to the bias-corrected sqrt(v)",
    "weight_decay": "L2 weight decay added to the gradient",
    "loss": "the loss (softmax_cross_entropy, mean over the batch)",
    "init": "the initial-weight scheme (uniform_fan_in)",
    "seed": "seeds the initial weights and every epoch's batch order",
    "norm_mean": "pixel normalization mean (default: the dataset's)",
    "norm_std": "pixel normalization std (default: the dataset's)",
    "eval_batch_size": "batch size for evaluation (does not change the math)",
    "target_accuracy": "test accuracy for time-to-target, or 'none'",
    "limit_train": "train on the first N samples only",
    "limit_test": "evaluate on the first N samples only",
}
FLAG_ALIASES: dict[str, tuple[str, ...]] = {"learning_rate": ("--lr",)}
CHOICES: dict[str, tuple[str, ...]] = {"model": tuple(MODELS), "dataset": tuple(DATASETS)}


def parse_field(name: str, text: str) -> Any:
    """A command-line string -> the value of spec field `name` (its type from the dataclass;
    'none' for the fields that may be None); SpecError naming the field if it does not parse."""
    if name not in FIELDS:
        raise SpecError(f"unknown spec field {name!r} (fields: {', '.join(FIELDS)})")
    kind, optional = field_types()[name]
    if optional and text.strip().lower() == "none":
        return None
    if name in CHOICES and text not in CHOICES[name]:
        raise SpecError(f"{name}: {text!r} is not one of {', '.join(CHOICES[name])}")
    try:
        return kind(text)
    except ValueError:
        raise SpecError(f"{name}: {text!r} is not {'a whole number' if kind is int else 'a number'}") from None

def adam_bias_corrections(spec: Spec, t: int) -> tuple[float, float]:
    """(1 - beta1**t, 1 - beta2**t) for step t (1-based) in float64, as the rule above says; a float32
    program rounds each to float32 once, where it meets the float32 update."""
    return 1.0 - spec.beta1 ** t, 1.0 - spec.beta2 ** t

PRESETS: dict[str, dict[str, Any]] = {
    "standard": {},
    # A quick end-to-end check: small enough for a laptop in seconds, no accuracy target.
    "smoke": {"epochs": 1, "limit_train": 2048, "limit_test": 512, "target_accuracy": None},
}


def make_spec(preset: str = "standard", **overrides: Any) -> Spec:
    """The spec for `preset` with `overrides` applied as given (None means "none" for the
    optional fields), validated.

    Normalization constants follow the dataset unless overridden explicitly.
    """
    if preset not in PRESETS:
        raise SpecError(f"unknown preset {preset!r} (choose from {', '.join(PRESETS)})")
    fields = {**PRESETS[preset], **overrides}
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise SpecError(f"unknown spec fields: {', '.join(sorted(unknown))}")
    name = fields.get("dataset", Spec.dataset)
    dataset = DATASETS.get(name) if isinstance(name, str) else None  # a bad type is refused below
    if dataset is not None:
        fields.setdefault("norm_mean", dataset.mean)
        fields.setdefault("norm_std", dataset.std)
    return validate(Spec(**fields))


# A seed is an unsigned 64-bit word, the range RNG seeds take (torch.manual_seed refuses more) and what
# a JSON reader of the record can hold; a larger one was accepted and made the vmap gradient check fail.
MAX_SEED = 2**64 - 1

_KIND = {str: "a string", int: "a whole number", float: "a number"}


def _check_types(spec: Spec) -> None:
    """Every field holds its annotated type (bool is not a number here, though Python says so)."""
    for name, (base, optional) in field_types().items():
        value = getattr(spec, name)
        if value is None and optional:
            continue
        ok = isinstance(value, str) if base is str else (
            isinstance(value, (int, float) if base is float else int) and not isinstance(value, bool))
        if not ok:
            raise SpecError(f"{name} must be {_KIND[base]}{' or none' * optional}, got {reprlib.repr(value)}")


def _positive_int(spec: Spec, name: str) -> None:
    value = getattr(spec, name)
    if value < 1:
        raise SpecError(f"{name} must be a whole number >= 1, got {value!r}")


def _finite(spec: Spec, name: str, low: float | None = None, strict: bool = True) -> None:
    """`name` is a finite number (> low if strict, else >= low): JSON has no inf or nan, and the
    record of a run with one could not be written after training."""
    value = getattr(spec, name)
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an int beyond any float
        finite = False
    if not finite or (low is not None and (value <= low if strict else value < low)):
        bound = "" if low is None else f" {'>' if strict else '>='} {low:g}"
        raise SpecError(f"{name} must be a finite number{bound}, got {reprlib.repr(value)}")


def validate(spec: Spec) -> Spec:
    """Return `spec` if it is a workload dlbench can run, else raise SpecError with the reason."""
    _check_types(spec)
    if spec.model not in MODELS:
        raise SpecError(f"unknown model {spec.model!r} (choose from {', '.join(MODELS)})")
    if spec.dataset not in DATASETS:
        raise SpecError(f"unknown dataset {spec.dataset!r} (choose from {', '.join(DATASETS)})")
    for name in ("epochs", "batch_size", "eval_batch_size"):
        _positive_int(spec, name)
    if spec.optimizer != "adam":
        raise SpecError(f"unknown optimizer {spec.optimizer!r} (only 'adam' is defined)")
    if spec.loss != "softmax_cross_entropy":
        raise SpecError(f"unknown loss {spec.loss!r} (only 'softmax_cross_entropy' is defined)")
    if spec.init != "uniform_fan_in":
        raise SpecError(f"unknown init {spec.init!r} (only 'uniform_fan_in' is defined)")
    _finite(spec, "learning_rate", 0)
    for name in ("beta1", "beta2"):
        if not 0 <= getattr(spec, name) < 1:  # false for nan too
            raise SpecError(f"{name} must be in [0, 1), got {getattr(spec, name)!r}")
    _finite(spec, "eps", 0)
    _finite(spec, "weight_decay", 0, strict=False)
    _finite(spec, "norm_mean")
    _finite(spec, "norm_std", 0)
    if not 0 <= spec.seed <= MAX_SEED:
        raise SpecError(f"seed must be a whole number from 0 to 2^64-1 ({MAX_SEED}), got {reprlib.repr(spec.seed)}")
    if spec.target_accuracy is not None and not 0 < spec.target_accuracy <= 1:
        raise SpecError(f"target_accuracy must be in (0, 1], got {spec.target_accuracy!r}")
    info = DATASETS[spec.dataset]
    for name, available in (("limit_train", info.n_train), ("limit_test", info.n_test)):
        value = getattr(spec, name)
        if value is not None:
            _positive_int(spec, name)
            if value > available:
                raise SpecError(f"{name.replace('_', '-')} {value} exceeds the {available} samples of {spec.dataset}")
    if spec.n_train < spec.batch_size:
        raise SpecError(f"batch size {spec.batch_size} exceeds the {spec.n_train} training samples: no full batch")
    return spec
