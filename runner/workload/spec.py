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
  * The parity gate (runner.parity.gate) checks all of this against a float64 reference.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
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
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

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


FIELDS = tuple(f.name for f in dataclasses.fields(Spec))


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
    dataset = DATASETS.get(fields.get("dataset", Spec.dataset))
    if dataset is not None:
        fields.setdefault("norm_mean", dataset.mean)
        fields.setdefault("norm_std", dataset.std)
    return validate(Spec(**fields))


def _positive_int(spec: Spec, name: str) -> None:
    value = getattr(spec, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(f"{name} must be a whole number >= 1, got {value!r}")


def validate(spec: Spec) -> Spec:
    """Return `spec` if it is a workload dlbench can run, else raise SpecError with the reason."""
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
    if not spec.learning_rate > 0:
        raise SpecError(f"learning_rate must be > 0, got {spec.learning_rate!r}")
    if not (0 <= spec.beta1 < 1 and 0 <= spec.beta2 < 1):
        raise SpecError(f"betas must be in [0, 1), got ({spec.beta1!r}, {spec.beta2!r})")
    if not spec.eps > 0 or spec.weight_decay < 0 or not spec.norm_std > 0:
        raise SpecError("eps and norm_std must be > 0 and weight_decay >= 0")
    if isinstance(spec.seed, bool) or not isinstance(spec.seed, int) or spec.seed < 0:
        raise SpecError(f"seed must be a whole number >= 0, got {spec.seed!r}")
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
