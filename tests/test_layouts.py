"""Canonical <-> channels-last parameter layouts: a round trip is the identity, and the converted
weights compute the same function on channels-last data."""

import numpy as np
import pytest

from runner.workload import layouts, models, reference
from runner.workload.spec import make_spec


@pytest.mark.parametrize("model", list(models.MODELS))
def test_round_trip_is_the_identity(model):
    params = reference.initial_params(make_spec(model=model))
    cl = layouts.to_channels_last(model, params)
    assert list(cl) == list(params)
    back = layouts.from_channels_last(model, cl)
    assert all(np.array_equal(back[k], params[k]) for k in params)
    assert layouts.from_tree(model, layouts.to_tree(cl)).keys() == params.keys()


def _flattened_features(model):
    """Random features entering Flatten, flattened in NCHW (canonical) and NHWC order."""
    shape = models.feature_shape_before_flatten(model)
    feats = np.random.default_rng(1).normal(size=(4, *shape))        # (N, C, H, W)
    return feats.reshape(4, -1), feats.transpose(0, 2, 3, 1).reshape(4, -1)


FLATTENING = [m for m, layers in models.MODELS.items() if any(isinstance(x, models.Flatten) for x in layers)]


@pytest.mark.parametrize("model", FLATTENING)  # resnet18 pools globally: no flatten order to follow
def test_first_dense_rows_follow_the_nhwc_flatten_order(model):
    params = reference.initial_params(make_spec(model=model))
    cl = layouts.to_channels_last(model, params)
    fc1 = next(f"{n.name}.weight" for n in models.nodes(model) if isinstance(n.layer, models.Dense))
    nchw, nhwc = _flattened_features(model)
    np.testing.assert_allclose(nhwc @ cl[fc1], nchw @ params[fc1].T, rtol=1e-6, atol=1e-6)


def test_conv_kernels_become_hwio():
    params = reference.initial_params(make_spec())
    cl = layouts.to_channels_last("lenet5", params)
    assert cl["conv2.weight"].shape == (5, 5, 6, 16)
    assert cl["conv2.weight"][1, 2, 3, 4] == params["conv2.weight"][4, 3, 1, 2]
    assert cl["fc3.weight"].shape == (84, 10)
