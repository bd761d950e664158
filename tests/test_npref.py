"""The float64 NumPy reference is the yardstick of the parity gate, so it is checked on its own:
gradients against finite differences, Adam against its formula, and (where torch exists) the whole
forward/backward against torch in float64."""

import numpy as np
import pytest

from conftest import needs_torch
from runner.parity import float64
from runner.workload import reference
from runner.workload.spec import make_spec


def _batch(n=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 28, 28)), rng.integers(0, 10, size=n)


def _params(model):
    return {k: v.astype(np.float64) for k, v in reference.initial_params(make_spec(model=model)).items()}


@pytest.mark.parametrize("model", ["lenet5", "mlp"])  # cnn: checked against torch float64 below
def test_gradients_match_finite_differences(model):
    x, y = _batch()
    params = _params(model)
    _, _, grads = float64.forward_backward(model, params, x, y)
    assert list(grads) == list(params) and all(grads[k].shape == params[k].shape for k in params)
    rng, h = np.random.default_rng(1), 1e-6
    for name, p in params.items():
        for flat in rng.choice(p.size, size=2, replace=False):
            i = np.unravel_index(flat, p.shape)
            bumped = {k: v.copy() for k, v in params.items()}
            bumped[name][i] += h
            up = float64.forward_backward(model, bumped, x, y)[0]
            bumped[name][i] -= 2 * h
            down = float64.forward_backward(model, bumped, x, y)[0]
            assert grads[name][i] == pytest.approx((up - down) / (2 * h), abs=1e-7, rel=1e-5), (name, i)


def test_adam_first_step_is_lr_times_sign_and_follows_the_formula():
    spec = make_spec()
    p = {"w": np.array([1.0, -2.0, 0.5])}
    g = {"w": np.array([0.3, -1e-3, 0.0])}
    opt = float64.Adam(spec, p)
    p1 = opt.step(p, g)
    # step 1: m_hat = g, v_hat = g^2  ->  update = lr * g / (|g| + eps)
    np.testing.assert_allclose(p1["w"], p["w"] - 1e-3 * g["w"] / (np.abs(g["w"]) + 1e-8), rtol=0, atol=1e-15)
    p2 = opt.step(p1, g)
    m = 0.1 * g["w"] * (1 + 0.9)
    v = 0.001 * g["w"] ** 2 * (1 + 0.999)
    want = p1["w"] - 1e-3 * (m / (1 - 0.9**2)) / (np.sqrt(v / (1 - 0.999**2)) + 1e-8)
    np.testing.assert_allclose(p2["w"], want, rtol=0, atol=1e-15)


def test_trace_is_deterministic_and_learns(synthetic_dir):
    from runner.data import store

    spec = make_spec("smoke", dataset="synthetic", limit_train=320)
    data = store.load_for(spec, synthetic_dir)
    order = reference.epoch_order(spec, 0)
    a = float64.trace(spec, reference.initial_params(spec), data.train_x, data.train_y, order)
    b = float64.trace(spec, reference.initial_params(spec), data.train_x, data.train_y, order)
    assert a["losses"] == b["losses"] and len(a["losses"]) == 5
    assert a["losses"][-1] < a["losses"][0]


@needs_torch
@pytest.mark.parametrize("model", ["lenet5", "cnn"])
def test_forward_backward_equals_torch_in_float64(model):
    import torch

    from runner.backends.torch_backend import build_model, load_reference

    x, y = _batch(8)
    params = _params(model)
    loss, logits, grads = float64.forward_backward(model, params, x, y)
    net = build_model(torch, model).double()
    load_reference(torch, net, params)
    out = net(torch.from_numpy(x[:, None]))
    t_loss = torch.nn.functional.cross_entropy(out, torch.from_numpy(y))
    t_loss.backward()
    assert loss == pytest.approx(t_loss.item(), rel=1e-12)
    np.testing.assert_allclose(logits, out.detach().numpy(), rtol=0, atol=1e-12)
    for (name, g), p in zip(grads.items(), net.parameters()):
        np.testing.assert_allclose(g, p.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=name)
