"""The PyTorch backend against a hand-written PyTorch loop (the generic backend tests: test_backends.py)."""

import numpy as np
import pytest

from conftest import needs_torch
from runner.workload import reference
from runner.data import store
from runner.workload.spec import make_spec

pytestmark = needs_torch


def _data(spec, folder):
    a = store.load_for(spec, folder)
    return a.train_x, a.train_y, a.test_x, a.test_y


def _backend(spec, folder):
    from runner.backends.torch_backend import TorchBackend

    b = TorchBackend(spec, "cpu")
    b.setup(reference.initial_params(spec), *_data(spec, folder))
    return b


def test_model_starts_from_the_reference_weights(synthetic_dir):
    spec = make_spec("smoke", dataset="synthetic")
    b = _backend(spec, synthetic_dir)
    ref = reference.initial_params(spec)
    got = [p.detach().numpy() for p in b.model.parameters()]
    assert sum(p.size for p in got) == 61_706
    for (name, want), have in zip(ref.items(), got):
        assert np.array_equal(want, have), name


def test_one_epoch_learns_and_matches_a_bare_loop(synthetic_dir):
    import torch

    spec = make_spec("smoke", dataset="synthetic", limit_train=640)
    b = _backend(spec, synthetic_dir)
    order = reference.epoch_order(spec, 0)
    stats = b.train_epoch(order)
    assert stats.steps == 10
    first_epoch_loss = float(stats.loss_sum) / stats.steps
    assert int(b.evaluate()) > 0.5 * spec.n_test

    # The same 10 steps, written out by hand from the same weights and batches.
    from runner.backends.torch_backend import build_model, load_reference

    train_x, train_y, _, _ = _data(spec, synthetic_dir)
    model = build_model(torch, "lenet5")
    load_reference(torch, model, reference.initial_params(spec))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    x, y = torch.from_numpy(train_x[:, None]), torch.from_numpy(train_y.astype(np.int64))
    losses = []
    for idx in order:
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert first_epoch_loss == pytest.approx(np.mean(losses), rel=1e-5)
