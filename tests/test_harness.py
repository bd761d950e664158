import pytest

from runner.workload.harness import TrainLog, timing_and_metrics
from runner.workload.spec import make_spec


def _log(epochs, accs, losses=None):
    return TrainLog(epoch_train_s=list(epochs), eval_s=[0.5] * len(epochs),
                    train_loss=list(losses or [0.1] * len(epochs)), train_accuracy=[0.9] * len(epochs),
                    test_accuracy=list(accs), train_fn_s=sum(epochs) + 0.5 * len(epochs))


def test_summary_numbers():
    spec = make_spec(epochs=4)
    timing, metrics = timing_and_metrics(spec, _log([10.0, 4.0, 5.0, 3.0], [0.98, 0.985, 0.991, 0.995], [4, 3, 2, 1]))
    assert timing["first_epoch_s"] == 10.0
    assert timing["steady_epoch_s"] == 4.0  # median of 4, 5, 3
    assert timing["compile_s"] == 6.0
    assert timing["total_train_s"] == 22.0
    assert metrics["time_to_target_s"] == 19.0 and metrics["target_epoch"] == 3  # training time only
    assert metrics["best_test_accuracy"] == 0.995 and metrics["final_test_accuracy"] == 0.995
    assert metrics["mean_train_loss"] == 2.5
    assert metrics["images_per_s"] == pytest.approx(937 * 64 / 4.0)
    assert metrics["epochs_completed"] == 4


def test_target_not_reached_and_no_target():
    timing, metrics = timing_and_metrics(make_spec(epochs=2), _log([2.0, 1.0], [0.95, 0.96]))
    assert metrics["time_to_target_s"] is None and metrics["target_epoch"] is None
    _, metrics = timing_and_metrics(make_spec(epochs=2, target_accuracy=None), _log([2.0, 1.0], [0.995, 0.996]))
    assert metrics["time_to_target_s"] is None


def test_single_epoch_has_no_compile_estimate():
    timing, metrics = timing_and_metrics(make_spec(epochs=1), _log([2.0], [0.9]))
    assert timing["steady_epoch_s"] is None and timing["compile_s"] is None
    assert metrics["images_per_s"] == pytest.approx(937 * 64 / 2.0)


def test_diverged_epoch_is_not_completed():
    log = _log([2.0, 1.0], [0.9, None], [0.5, None])
    timing, metrics = timing_and_metrics(make_spec(epochs=5), log)
    assert metrics["epochs_completed"] == 1
    assert metrics["mean_train_loss"] == 0.5
    assert timing["steady_epoch_s"] is None  # the diverged epoch is not a steady one


def test_empty_log():
    timing, metrics = timing_and_metrics(make_spec(), TrainLog())
    assert metrics["epochs_completed"] == 0 and timing["first_epoch_s"] is None and timing["total_train_s"] == 0
