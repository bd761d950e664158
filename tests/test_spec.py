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
    ({"learning_rate": 0.0}, "learning_rate must be a finite number > 0, got 0.0"),
    ({"beta1": 1.0}, "beta1 must be in [0, 1), got 1.0"),
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


# Issue 20, 1: `--lr inf` trained, then the record could not be written (no JSON for inf): two
# tracebacks, no record. Non-finite and out-of-range numbers are refused before anything trains.
FLOAT_FIELDS = ("learning_rate", "beta1", "beta2", "eps", "weight_decay", "norm_mean", "norm_std", "target_accuracy")


@pytest.mark.parametrize("field", FLOAT_FIELDS)
@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_non_finite_numbers_are_refused(field, value):
    with pytest.raises(SpecError, match=field):
        make_spec(**{field: value})


@pytest.mark.parametrize("overrides, message", [
    ({"learning_rate": "0.001"}, "learning_rate must be a number, got '0.001'"),
    ({"epochs": True}, "epochs must be a whole number"),
    ({"seed": 1.5}, "seed must be a whole number"),
    ({"seed": -1}, "seed must be a whole number from 0 to 2^64-1 (18446744073709551615), got -1"),
    ({"seed": 2**64}, f"seed must be a whole number from 0 to 2^64-1 (18446744073709551615), got {2**64}"),
    ({"beta2": -0.1}, "beta2 must be in [0, 1)"),
    ({"learning_rate": 10**400}, "learning_rate must be a finite number > 0"),
    ({"eps": -1e-8}, "eps must be a finite number > 0"),
    ({"weight_decay": -0.1}, "weight_decay must be a finite number >= 0"),
    ({"norm_std": 0.0}, "norm_std must be a finite number > 0"),
    ({"model": ["lenet5"]}, "model must be a string"),
    ({"limit_train": "100"}, "limit_train must be a whole number"),
    ({"target_accuracy": 0.0}, "target_accuracy must be in (0, 1]"),
])
def test_out_of_range_and_mistyped_fields_are_refused(overrides, message):
    with pytest.raises(SpecError) as e:
        make_spec(**overrides)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_from_dict_checks_types_too():
    with pytest.raises(SpecError, match="learning_rate must be a number"):
        Spec.from_dict({**Spec().to_dict(), "learning_rate": "0.001"})


@pytest.mark.parametrize("args, message", [
    (["--lr", "inf"], "learning_rate must be a finite number > 0, got inf"),
    (["--lr", "nan"], "learning_rate must be a finite number > 0, got nan"),
    (["--lr", "1e999"], "learning_rate must be a finite number > 0, got inf"),
    (["--target-accuracy", "nan"], "target_accuracy must be in (0, 1], got nan"),
])
def test_cli_refuses_non_finite_numbers_before_training(tmp_path, args, message):
    from conftest import run_cli

    out = run_cli("run", "--framework", "torch", "--preset", "smoke", "--dataset", "synthetic",
                  "--out", tmp_path, *args, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip() == f"dlbench: error: {message}"
    assert list(tmp_path.iterdir()) == []  # nothing trained, nothing written


def test_hash_of_is_what_the_spec_hashes():
    from runner.workload.spec import hash_of

    s = make_spec(epochs=3)
    assert hash_of(s.to_dict()) == s.hash
    assert hash_of({**s.to_dict(), "epochs": 4}) == make_spec(epochs=4).hash


def test_the_largest_seed_is_2_to_the_64_minus_1():
    assert make_spec(seed=2**64 - 1).seed == 2**64 - 1
    assert make_spec(seed=0).seed == 0
