"""The parity gate: distances on known inputs, the verdict, the on-disk reference cache, and proof
that it catches the differences it exists for (Keras' Adam epsilon, a wrong eps, TF32 rounding)."""

import dataclasses

import numpy as np
import pytest

from conftest import needs_tf
from runner.parity import float64, gate
from runner.workload import reference
from runner.data import store
from runner.workload.spec import make_spec

STEPS = 6


@pytest.fixture(scope="module")
def small(synthetic_dir):
    spec = make_spec("smoke", dataset="synthetic", limit_train=640)
    data = store.load_for(spec, synthetic_dir)
    ref = gate.reference_trace(spec, data.train_x, data.train_y, data.sha256["train-images-idx3-ubyte"], STEPS)
    return spec, data, ref


def _as_framework(trace):
    return {"loss1": trace["losses"][0], "logits": trace["logits"], "grads": trace["grads"],
            "params": trace["params"], "losses": trace["losses"]}


def test_measure_on_known_inputs():
    ref = {"losses": [2.0, 1.0], "logits": np.array([[4.0, -2.0]]), "grads": {"w": np.array([3.0, 4.0])},
           "params": {"w": np.array([1.0, 0.0])}}
    fw = {"loss1": 2.002, "logits": np.array([[4.04, -2.0]]), "grads": {"w": np.array([3.0, 4.5])},
          "params": {"w": np.array([1.0, 0.01])}, "losses": [2.002, 1.5]}
    got = gate.measure(fw, ref)
    assert got["loss_rel_diff"] == pytest.approx(1e-3)
    assert got["logits_max_diff"] == pytest.approx(0.04 / 4)          # relative to max |logit|
    assert got["grad_rel_diff"] == pytest.approx(0.5 / 5)
    assert got["weights_rel_diff"] == pytest.approx(0.01)
    assert got["trajectory_max_diff"] == pytest.approx(0.5)           # |1.5 - 1| / max(1, 1)


def test_judge_passes_at_the_limits_and_fails_above_or_on_nan():
    at_limit = dict(gate.TOLERANCES)
    assert gate.judge(at_limit, 50)["status"] == "pass"
    over = {**at_limit, "grad_rel_diff": 2 * gate.TOLERANCES["grad_rel_diff"]}
    res = gate.judge(over, 50)
    assert (res["status"], res["failed"]) == ("fail", ["grad_rel_diff"])
    res = gate.judge({**at_limit, "loss_rel_diff": float("nan")}, 50)
    assert res["status"] == "fail" and res["loss_rel_diff"] is None   # JSON has no NaN


def test_the_reference_itself_passes_and_is_cached(small, monkeypatch):
    spec, data, ref = small
    assert gate.judge(gate.measure(_as_framework(ref), ref), STEPS)["status"] == "pass"
    monkeypatch.setattr(float64, "trace", lambda *a: pytest.fail("recomputed instead of read from the cache"))
    again = gate.reference_trace(spec, data.train_x, data.train_y, data.sha256["train-images-idx3-ubyte"], STEPS)
    assert again["losses"] == ref["losses"]
    assert all(np.array_equal(again["grads"][k], ref["grads"][k]) for k in ref["grads"])


class _EpsHatAdam(float64.Adam):
    """Keras' Adam: eps added to the uncorrected sqrt(v)."""

    def step(self, params, grads):
        s, out = self.spec, {}
        self.t += 1
        alpha = s.learning_rate * np.sqrt(1 - s.beta2 ** self.t) / (1 - s.beta1 ** self.t)
        for k, p in params.items():
            self.m[k] = s.beta1 * self.m[k] + (1 - s.beta1) * grads[k]
            self.v[k] = s.beta2 * self.v[k] + (1 - s.beta2) * grads[k] ** 2
            out[k] = p - alpha * self.m[k] / (np.sqrt(self.v[k]) + s.eps)
        return out


def _tf32(a):
    """Round float32 values to TF32's 10-bit mantissa."""
    bits = np.asarray(a, np.float32).view(np.uint32)
    return ((bits + 0x1000) & 0xFFFFE000).view(np.float32)


@pytest.mark.parametrize("variant", ["keras_epsilon_hat", "eps_1e-7", "tf32_inputs"])
def test_the_gate_catches_real_differences(small, monkeypatch, variant):
    spec, data, ref = small
    order = reference.epoch_order(spec, 0)[:STEPS]
    params, x = reference.initial_params(spec), data.train_x
    if variant == "keras_epsilon_hat":
        monkeypatch.setattr(float64, "Adam", _EpsHatAdam)
    elif variant == "eps_1e-7":
        spec = dataclasses.replace(spec, eps=1e-7)
    else:
        params, x = {k: _tf32(v) for k, v in params.items()}, _tf32(x)
    other = float64.trace(spec, params, x, data.train_y, order)
    assert gate.judge(gate.measure(_as_framework(other), ref), STEPS)["status"] == "fail"


@needs_tf
def test_keras_own_adam_fails_the_gate(small):
    """The reason the TF backend writes Adam out: Keras' optimizer, eps set to the spec's 1e-8, still
    trains a different function, and the gate sees it in a real TensorFlow run."""
    from runner.backends.tf_backend import TensorflowBackend

    class KerasAdam(TensorflowBackend):
        def setup(self, *args):
            super().setup(*args)
            s = self.spec
            self._keras_opt = self.keras.optimizers.Adam(s.learning_rate, s.beta1, s.beta2, epsilon=s.eps)
            self._keras_opt.build(self.model.trainable_variables)

        def _adam(self, grads):
            self._keras_opt.apply(grads, self.model.trainable_variables)

    spec, data, _ = small
    ours = gate.check(lambda: TensorflowBackend(spec, "cpu"), spec, data, STEPS)
    keras = gate.check(lambda: KerasAdam(spec, "cpu"), spec, data, STEPS)
    assert ours["status"] == "pass", ours
    assert keras["status"] == "fail" and "weights_rel_diff" in keras["failed"], keras
