"""The parity gate: the verdict and its one-line description, the on-disk yardstick cache (a best
effort: unwritable or corrupt entries never turn a good run's parity into an error), and proof on
tiny synthetic data that it catches the differences it exists for, including Keras' own Adam in a
real TensorFlow run. The same faults on MNIST's smoke and default presets: test_parity_faults.py."""

import numpy as np
import pytest

from conftest import needs_tf
from runner.parity import gate, yardstick
from runner.parity.npfloat32 import FAULTS, NumpyFloat32Backend
from runner.data import store
from runner.workload.spec import make_spec

STEPS = 6


@pytest.fixture(scope="module")
def small(synthetic_dir):
    spec = make_spec("smoke", dataset="synthetic", limit_train=640)
    data = store.load_for(spec, synthetic_dir)
    return spec, data


def _sha(data):
    return data.sha256["train-images-idx3-ubyte"]


def _limits(**over):
    return {**gate.LIMITS, "trajectory_max_diff": 1e-3, **over}


def test_judge_passes_at_the_limits_and_fails_above_or_on_nan():
    at_limit = dict(_limits())
    assert gate.judge(at_limit, _limits(), 50)["status"] == "pass"
    assert gate.judge({**at_limit, "update_bias": -gate.LIMITS["update_bias"]}, _limits(), 50)["status"] == "pass"
    res = gate.judge({**at_limit, "grad_rel_diff": 2e-4}, _limits(), 50)
    assert (res["status"], res["failed"]) == ("fail", ["grad_rel_diff"])
    res = gate.judge({**at_limit, "loss_rel_diff": None}, _limits(), 50)   # NaN is measured as None
    assert res["status"] == "fail" and res["checks"]["loss_rel_diff"] == {"value": None, "limit": 1e-5}


def test_describe_names_every_failed_check_with_its_value_and_limit():
    values = {**_limits(), "trajectory_max_diff": 1.2e-3, "update_bias": -6.8e-6, "loss_rel_diff": None}
    line = gate.describe(gate.judge(values, _limits(), 50))
    assert line == ("FAIL: loss_rel_diff not finite > 1.0e-05, update_bias -6.8e-06 outside +-1.0e-06,"
                    " trajectory_max_diff 1.2e-03 > 1.0e-03")
    assert gate.describe(gate.error_result(50, "BadZipFile: File is not a zip file")) == \
        "ERROR: BadZipFile: File is not a zip file"
    assert gate.describe(gate.error_result(50, "no GPU", status="unavailable")) == "UNAVAILABLE: no GPU"
    assert gate.describe(gate.judge(_limits(), _limits(), 50)) == "pass"


@pytest.mark.slow
def test_the_yardstick_is_cached_and_read_back(small, monkeypatch):
    spec, data = small
    y = yardstick.load_or_compute(spec, data.train_x, data.train_y, _sha(data), STEPS)
    assert y["replica_losses"].shape == (yardstick.REPLICAS, STEPS) and list(y["checked"])[0] == 0
    monkeypatch.setattr(yardstick, "compute", lambda *a: pytest.fail("recomputed instead of read from the cache"))
    again = yardstick.load_or_compute(spec, data.train_x, data.train_y, _sha(data), STEPS)
    assert np.array_equal(again["losses"], y["losses"])
    assert all(np.array_equal(again["at"][i]["dw"][k], a["dw"][k]) for i, a in enumerate(y["at"]) for k in a["dw"])
    assert 0 < gate.envelope(y) < 1e-5   # honest float32 noise over a few steps
    assert [a["update_noise"] for a in again["at"]] == [a["update_noise"] for a in y["at"]]
    # At a small batch Adam's float32 update noise is far below the fixed limit, which stays 1e-4
    assert 0 <= gate.update_noise(y) < 1e-5
    assert gate.limits_for(y)["update_rel_diff"] == gate.LIMITS["update_rel_diff"]


def test_a_cache_write_failure_warns_and_keeps_the_result(small, tmp_path, monkeypatch, capsys):
    """Issue 20 #10: an unwritable cache (here a file where its folder should be) once turned a good
    run's parity into "error"; now it warns and the check passes."""
    spec, data = small
    (tmp_path / "blocked").write_text("not a folder")
    monkeypatch.setenv("DLBENCH_CACHE_DIR", str(tmp_path / "blocked"))
    result = gate.check(lambda: NumpyFloat32Backend(spec), spec, data, 3)
    assert result["status"] == "pass", gate.describe(result)
    assert "could not cache the reference" in capsys.readouterr().err


@pytest.mark.slow
def test_a_cache_entry_from_other_reference_code_is_never_read(small, tmp_path, monkeypatch):
    """A reference cached by other code (a shared user cache, an older checkout) is not this code's
    reference: an entry poisoned under the old fingerprint must not reach the gate."""
    spec, data = small
    monkeypatch.setenv("DLBENCH_CACHE_DIR", str(tmp_path / "cache"))
    first = yardstick.load_or_compute(spec, data.train_x, data.train_y, _sha(data), 3)
    old = yardstick.cache_path(spec, _sha(data), 3)
    assert old.name.endswith(f"-{yardstick.code_fingerprint()}.npz")
    poisoned = dict(first, losses=first["losses"] + 1.0)
    old.write_bytes(yardstick._pack(poisoned))
    assert yardstick.load_or_compute(spec, data.train_x, data.train_y, _sha(data), 3)["losses"][0] == (
        first["losses"][0] + 1.0)  # the same code reads its own entry back, as written
    monkeypatch.setattr(yardstick, "code_fingerprint", lambda: "0123456789ab")  # the reference code changed
    fresh = yardstick.load_or_compute(spec, data.train_x, data.train_y, _sha(data), 3)
    assert np.array_equal(fresh["losses"], first["losses"])
    assert yardstick.cache_path(spec, _sha(data), 3) != old and old.exists()


@pytest.mark.slow
def test_a_truncated_cache_entry_is_deleted_and_recomputed(small, tmp_path, monkeypatch, capsys):
    """Issue 20 #11: a truncated .npz made every later run say `parity: ERROR BadZipFile`, forever."""
    spec, data = small
    monkeypatch.setenv("DLBENCH_CACHE_DIR", str(tmp_path / "cache"))
    first = yardstick.load_or_compute(spec, data.train_x, data.train_y, _sha(data), 3)
    path = yardstick.cache_path(spec, _sha(data), 3)
    for cut in (len(path.read_bytes()) // 2, len(path.read_bytes()) - 100):  # the index lost, then a member
        path.write_bytes(path.read_bytes()[:cut])
        result = gate.check(lambda: NumpyFloat32Backend(spec), spec, data, 3)
        assert result["status"] == "pass", gate.describe(result)
        assert "is unreadable" in capsys.readouterr().err
        again = yardstick.load_or_compute(spec, data.train_x, data.train_y, _sha(data), 3)  # a good entry again
        assert np.array_equal(again["losses"], first["losses"]) and "unreadable" not in capsys.readouterr().err


def test_the_float32_replica_passes(small):
    spec, data = small
    result = gate.check(lambda: NumpyFloat32Backend(spec), spec, data, STEPS)
    assert result["status"] == "pass", gate.describe(result)
    assert result["replicas"] == yardstick.REPLICAS and result["trajectory_envelope"] > 0


@pytest.mark.parametrize("fault", FAULTS)
def test_the_gate_catches_each_fault(small, fault):
    spec, data = small
    result = gate.check(lambda: NumpyFloat32Backend(spec, faults=(fault,)), spec, data, STEPS)
    assert result["status"] == "fail", (fault, result["checks"])


@needs_tf
def test_keras_own_adam_fails_the_gate(small):
    """The reason the TF backend writes Adam out: Keras' optimizer, eps set to the spec's 1e-8, still
    trains a different function (eps added to the uncorrected sqrt(v)), and the gate sees it."""
    from runner.backends.tf_backend import TensorflowBackend

    class KerasAdam(TensorflowBackend):
        def setup(self, *args):
            super().setup(*args)
            s = self.spec
            self._keras_opt = self.keras.optimizers.Adam(s.learning_rate, s.beta1, s.beta2, epsilon=s.eps)
            self._keras_opt.build(self.model.trainable_variables)

        def _adam(self, grads):
            self._keras_opt.apply(grads, self.model.trainable_variables)

    spec, data = small
    ours = gate.check(lambda: TensorflowBackend(spec, "cpu"), spec, data, STEPS)
    keras = gate.check(lambda: KerasAdam(spec, "cpu"), spec, data, STEPS)
    assert ours["status"] == "pass", gate.describe(ours)
    assert keras["status"] == "fail" and "update_rel_diff" in keras["failed"], gate.describe(keras)


def test_a_collapsed_loss_is_judged_at_the_scale_training_ran_at():
    """On easy data the loss falls ~1e5-fold in 30 steps; float32 rounds it (and its gradient) at the
    scale of the first steps, so a plain relative check failed torch, TF and JAX alike on synthetic mlp
    (~1e-2). Honest rounding of the small loss passes; a loss 63x off still fails."""
    w = {"w": np.array([1.0, 2.0])}
    at = [{"loss": 2.3, "logits": np.zeros((1, 2)), "g": {"w": np.array([0.3, 0.4])}, "w": w,
           "dw": {"w": np.array([1e-3, 1e-3])}},
          {"loss": 1e-5, "logits": np.zeros((1, 2)), "g": {"w": np.array([3e-6, 4e-6])}, "w": w,
           "dw": {"w": np.array([1e-3, 1e-3])}}]
    y = {"at": at, "losses": [2.3, 1e-5]}

    def framework(loss2, g2):
        return {"losses": [2.3, loss2], "at": [{**at[0], "g": at[0]["g"]}, {**at[1], "loss": loss2, "g": g2}]}

    honest = gate.measure(framework(1e-5 + 1e-7, {"w": np.array([3e-6 + 5e-8, 4e-6])}), y)
    assert honest["loss_rel_diff"] < 1e-7 and honest["grad_rel_diff"] < 1e-6  # were 1e-2 and 1e-2
    summed = gate.measure(framework(63e-5, {"w": np.array([3e-6, 4e-6])}), y)
    assert summed["loss_rel_diff"] > 2e-4  # still far above the 1e-5 limit


def _yardstick(grad_noise: float, update_noise: float) -> dict:
    return {"at": [{"grad_noise": grad_noise, "update_noise": update_noise}], "losses": np.array([2.3]),
            "replica_losses": np.array([[2.3]])}


def test_the_update_limit_grows_with_the_measured_float32_update_noise():
    """Batch 8192 on MNIST: Adam's m / sqrt(v) turns gradient components that cancel to within float32
    noise into whole steps; the replicas' own update error read 4.2e-4 there, JAX 4.1e-4 and torch (in
    another run) 4.2e-4 against a fixed 1e-4. The limit is 10x the measured noise, never below 1e-4."""
    from runner.parity import verify

    grown = gate.limits_for(_yardstick(2.2e-4, 1.7e-4))
    assert grown["update_rel_diff"] == pytest.approx(1.7e-3) and grown["grad_rel_diff"] == pytest.approx(2.2e-3)
    assert gate.limits_for(_yardstick(1e-7, 5e-6))["update_rel_diff"] == 1e-4
    values = {**gate.LIMITS, "update_rel_diff": 4.2e-4, "grad_rel_diff": 3e-4, "trajectory_max_diff": 0.0}
    result = gate.judge(values, {**grown, "trajectory_max_diff": 1e-3}, 5)
    assert result["status"] == "pass", gate.describe(result)
    assert gate.judge(values, _limits(), 5)["failed"] == ["grad_rel_diff", "update_rel_diff"]
    text = verify.table([{"framework": {"name": "torch", "version": "2.13.0"}, "parity": result}])
    assert "update_rel_diff <= 1.7e-03 here (10 x the float32 update noise 1.7e-04)" in text
    assert "grad_rel_diff <= 2.2e-03 here (10 x the float32 gradient noise 2.2e-04)" in text
    assert "| torch 2.13.0 " in text  # the row still names its framework


def test_update_errors_forgive_half_an_ulp_and_read_a_step_the_wrong_way_far_above():
    w = {"w": np.array([1.0, 1.0, 1.0], np.float32)}
    ulp = float(np.spacing(np.float32(1.0)))
    ref = {"w": np.array([1e-3, 1e-3, 1e-9])}
    got = {"w": np.array([1e-3 + ulp / 2, 1e-3 + ulp, -1e-3])}   # rounding, one ulp off, a whole step
    errs = yardstick.update_errors(ref, got, w)
    assert errs[0] == 0 and errs[1] == pytest.approx(ulp / 2 / (1e-3 + ulp))
    assert errs[2] == pytest.approx((1e-3 + 1e-9 - ulp / 2) / (1e-9 + ulp))
    assert yardstick.update_p99(errs) > 0.5
