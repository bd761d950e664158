import dataclasses

import pytest

from runner.errors import SpecError
from runner.workload.spec import FIELDS, PRESETS, Spec, make_spec

# The standard spec's hash: it changes only when the workload definition changes, which must be a
# deliberate act (records of the old spec stop sharing rows with the new).
STANDARD_HASH = "5d47886a88e1"


def test_standard_spec_is_the_designed_workload():
    s = make_spec()
    assert (s.model, s.dataset, s.epochs, s.batch_size, s.seed) == ("lenet5", "mnist", 50, 64, 42)
    assert (s.optimizer, s.learning_rate, s.beta1, s.beta2, s.eps, s.weight_decay) == ("adam", 1e-3, 0.9, 0.999, 1e-8, 0.0)
    assert (s.norm_mean, s.norm_std, s.target_accuracy) == (0.1307, 0.3081, 0.99)
    assert s.steps_per_epoch == 937 and s.n_train == 60000 and s.n_test == 10000


def test_hash_is_stable_and_pinned():
    assert make_spec().hash == make_spec().hash == Spec().hash
    assert make_spec().hash.startswith(STANDARD_HASH)
    assert len(make_spec().hash) == 64


ALTERNATIVES = {"model": "mlp", "dataset": "fashion", "epochs": 3, "batch_size": 32, "optimizer": None,
                "learning_rate": 2e-3, "beta1": 0.8, "beta2": 0.99, "eps": 1e-7, "weight_decay": 0.01,
                "loss": None, "init": None, "seed": 7, "norm_mean": 0.5, "norm_std": 0.5,
                "eval_batch_size": 500, "target_accuracy": None, "limit_train": 1000, "limit_test": 100}


def test_alternatives_cover_every_field():
    assert set(ALTERNATIVES) == set(FIELDS)


@pytest.mark.parametrize("field", [f for f, v in ALTERNATIVES.items() if v is not None or f == "target_accuracy"])
def test_every_override_changes_the_hash(field):
    assert make_spec(**{field: ALTERNATIVES[field]}).hash != make_spec().hash


def test_dataset_sets_normalization_unless_overridden():
    assert (make_spec(dataset="fashion").norm_mean, make_spec(dataset="fashion").norm_std) == (0.2860, 0.3530)
    assert make_spec(dataset="fashion", norm_mean=0.5).norm_mean == 0.5


def test_smoke_preset():
    s = make_spec("smoke")
    assert (s.epochs, s.limit_train, s.limit_test, s.target_accuracy) == (1, 2048, 512, None)
    assert make_spec("smoke", epochs=2).epochs == 2
    assert set(PRESETS) == {"standard", "smoke"}


def test_round_trip_through_dict():
    s = make_spec(epochs=3, limit_train=640)
    assert Spec.from_dict(s.to_dict()) == s
    assert Spec.from_dict(s.to_dict()).hash == s.hash


@pytest.mark.parametrize("overrides, message", [
    ({"model": "vgg"}, "unknown model 'vgg'"),
    ({"dataset": "cifar"}, "unknown dataset 'cifar'"),
    ({"epochs": 0}, "epochs must be a whole number >= 1"),
    ({"batch_size": -1}, "batch_size must be"),
    ({"epochs": 2.5}, "epochs must be"),
    ({"learning_rate": 0.0}, "learning_rate must be > 0"),
    ({"beta1": 1.0}, "betas must be in [0, 1)"),
    ({"limit_train": 70000}, "limit-train 70000 exceeds the 60000 samples of mnist"),
    ({"limit_test": 0}, "limit_test must be"),
    ({"limit_train": 10}, "batch size 64 exceeds the 10 training samples"),
    ({"target_accuracy": 1.5}, "target_accuracy must be in (0, 1]"),
    ({"optimizer": "sgd"}, "unknown optimizer 'sgd'"),
    ({"colour": "red"}, "unknown spec fields: colour"),
])
def test_invalid_specs_are_refused_with_a_reason(overrides, message):
    with pytest.raises(SpecError) as e:
        make_spec(**overrides)
    assert message in str(e.value)


def test_from_dict_refuses_unknown_fields_and_versions():
    with pytest.raises(SpecError, match="unknown spec fields: x"):
        Spec.from_dict({**Spec().to_dict(), "x": 1})
    with pytest.raises(SpecError, match="spec version 9"):
        Spec.from_dict({**Spec().to_dict(), "spec_version": 9})


def test_spec_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Spec().epochs = 3
