"""resnet18: ResNet-18 adapted to 1x28x28 (runner/workload/models.py) in torch, TensorFlow and JAX.

Its size and canonical names, the untouched bytes of the older models, the float64 reference's
gradient (finite differences) and batch norm (torch float64), the parity gate for each framework
(and the batch-statistics check catching a biased running variance), a 1-epoch smoke run each, and
the refusals: flux, and torch DDP on the CPU."""

import hashlib
import json

import numpy as np
import pytest

from conftest import needs_jax, needs_tf, needs_torch, run_cli
from runner.backends.base import FrameworkUnavailable
from runner.data import store
from runner.parity import float64, gate
from runner.parity.npfloat32 import NumpyFloat32Backend
from runner.workload import layouts, models, reference
from runner.workload.spec import make_spec

@pytest.fixture(autouse=True)
def one_blas_thread():
    """As the yardstick runs it: OpenBLAS' threads spin-wait on a busy host (runner.parity.yardstick)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


TORCH_TF_JAX = [pytest.param("torch", marks=needs_torch), pytest.param("tensorflow", marks=needs_tf),
                pytest.param("jax", marks=needs_jax)]


def _torchvision_resnet18_count(classes=10) -> int:
    """torchvision's resnet18 with a 3x3 1->64 stem and `classes` outputs, counted layer by layer
    (convs without bias, BN gamma + beta, downsample 1x1 conv + BN where the shape changes)."""
    n, c_in = 64 * 1 * 3 * 3 + 2 * 64, 64
    for c, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        for block in range(2):
            s = stride if block == 0 else 1
            n += 9 * c_in * c + 2 * c + 9 * c * c + 2 * c
            if s != 1 or c_in != c:
                n += c_in * c + 2 * c
            c_in = c
    return n + 512 * classes + classes


def test_resnet18_has_exactly_11172810_parameters():
    assert _torchvision_resnet18_count() == 11_172_810
    assert models.n_params("resnet18") == 11_172_810
    # torchvision's own resnet18 (7x7 3->64 stem, 1000 classes) has 11,689,512: the same count rule
    assert _torchvision_resnet18_count(1000) - 64 * 9 + 64 * 3 * 49 == 11_689_512


def test_canonical_names_are_torchvisions_in_parameters_order():
    names = [p.name for p in models.params("resnet18")]
    assert len(names) == 62 and len(set(names)) == 62
    assert names[:7] == ["conv1.weight", "bn1.weight", "bn1.bias", "layer1.0.conv1.weight", "layer1.0.bn1.weight",
                         "layer1.0.bn1.bias", "layer1.0.conv2.weight"]
    i = names.index("layer2.0.downsample.0.weight")
    assert names[i - 3:i + 4] == ["layer2.0.conv2.weight", "layer2.0.bn2.weight", "layer2.0.bn2.bias",
                                  "layer2.0.downsample.0.weight", "layer2.0.downsample.1.weight",
                                  "layer2.0.downsample.1.bias", "layer2.1.conv1.weight"]
    assert not any("layer1.0.downsample" in n or "layer2.1.downsample" in n for n in names)
    assert names[-2:] == ["fc.weight", "fc.bias"] and not any(n.endswith("conv1.bias") for n in names)
    shapes = {p.name: p.shape for p in models.params("resnet18")}
    assert shapes["conv1.weight"] == (64, 1, 3, 3) and shapes["layer2.0.conv1.weight"] == (128, 64, 3, 3)
    assert shapes["layer4.0.downsample.0.weight"] == (512, 256, 1, 1) and shapes["fc.weight"] == (10, 512)
    buffers = [p.name for p in models.buffers("resnet18")]
    assert len(buffers) == 40 and buffers[:2] == ["bn1.running_mean", "bn1.running_var"]
    shapes_out = [shape for _, _, shape in models.walk("resnet18")]
    assert (512, 4, 4) in shapes_out and shapes_out[-2:] == [(512,), (10,)]  # 28 -> 28, 14, 7, 4; pool; fc


@needs_torch
def test_torch_build_names_its_parameters_and_buffers_canonically():
    import torch

    from runner.backends.torch_backend import build_model

    net = build_model(torch, "resnet18")
    assert [n for n, _ in net.named_parameters()] == [p.name for p in models.params("resnet18")]
    assert [n for n, _ in net.named_buffers() if not n.endswith("num_batches_tracked")] == \
        [p.name for p in models.buffers("resnet18")]
    assert sum(p.numel() for p in net.parameters()) == 11_172_810
    bn = net.get_submodule("layer3.0.bn1")
    assert (bn.eps, bn.momentum) == (1e-5, 0.1)


def _digest(params: dict) -> str:
    h = hashlib.sha256()
    for name, a in params.items():
        h.update(name.encode() + str(a.shape).encode() + a.tobytes())
    return h.hexdigest()[:16]


@pytest.mark.parametrize("model, digest", [("lenet5", "5210a7044aa07a88"), ("mlp", "9876fa0b2f39b699"),
                                           ("cnn", "1bb78e599b89cbf4")])
def test_older_models_keep_their_names_shapes_and_initial_bytes(model, digest):
    """Pinned before resnet18 came: Conv's stride/bias defaults change nothing, BN draws nothing."""
    assert _digest(reference.initial_params(make_spec(model=model))) == digest
    assert reference.initial_buffers(model) == {} and not models.has_batchnorm(model)


def test_initial_weights_uniform_fan_in_and_bn_at_one_zero():
    params = reference.initial_params(make_spec(model="resnet18"))
    for p in models.params("resnet18"):
        a = params[p.name]
        assert a.shape == p.shape and a.dtype == np.float32
        if p.init == "uniform_fan_in":
            assert np.abs(a).max() <= 1 / np.sqrt(p.fan_in)
            assert a.size < 100 or np.abs(a).max() > 0.9 / np.sqrt(p.fan_in)  # the bound is the scale
        else:
            assert np.all(a == (1.0 if p.name.endswith("weight") else 0.0)), p.name
    buffers = reference.initial_buffers("resnet18")
    assert all(np.all(a == (1.0 if n.endswith("var") else 0.0)) for n, a in buffers.items())


def test_layouts_round_trip_and_tree_names():
    params = reference.initial_params(make_spec(model="resnet18"))
    cl = layouts.to_channels_last("resnet18", params)
    assert cl["layer2.0.conv1.weight"].shape == (3, 3, 64, 128) and cl["fc.weight"].shape == (512, 10)
    assert cl["layer2.0.downsample.0.weight"].shape == (1, 1, 64, 128)
    assert np.array_equal(cl["layer1.0.bn1.weight"], params["layer1.0.bn1.weight"])  # 1-D: as is
    back = layouts.from_channels_last("resnet18", cl)
    assert all(np.array_equal(back[k], params[k]) for k in params)
    tree = layouts.to_tree(cl)
    assert set(tree["layer2.0.downsample.1"]) == {"scale", "bias"} and set(tree["conv1"]) == {"kernel"}
    assert list(layouts.from_tree("resnet18", tree)) == list(params)
    buffers = reference.initial_buffers("resnet18")
    btree = layouts.to_tree(buffers)
    assert set(btree["layer4.1.bn2"]) == {"running_mean", "running_var"}
    assert list(layouts.from_tree("resnet18", btree, buffers=True)) == list(buffers)


def _random_state(seed=0):
    """float64 weights with BN gamma/beta away from 1/0, so their gradients are checked in general."""
    rng = np.random.default_rng(seed)
    p = {k: v.astype(np.float64) for k, v in reference.initial_params(make_spec(model="resnet18")).items()}
    for spec in models.params("resnet18"):
        if spec.init != "uniform_fan_in":
            p[spec.name] = p[spec.name] + 0.2 * rng.standard_normal(spec.shape)
    return p


FD_PARAMS = ["conv1.weight", "bn1.weight", "layer1.0.bn2.weight", "layer2.0.conv1.weight",
             "layer2.0.downsample.0.weight", "layer2.0.downsample.1.bias", "layer3.1.conv2.weight",
             "layer4.0.bn1.bias", "fc.weight", "fc.bias"]


@pytest.mark.slow  # ~20 s: 41 passes through ResNet-18
def test_float64_gradient_matches_finite_differences_on_a_tiny_input():
    """3 images of 8x8 (8 -> 8, 4, 2, 1 through the stages): strided convs, BN in training mode,
    residual adds and the global pool, two random coordinates of each parameter in FD_PARAMS."""
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(3, 8, 8)), np.array([1, 7, 3])
    params = _random_state()
    _, _, grads = float64.forward_backward("resnet18", params, x, y)
    assert list(grads) == list(params) and all(grads[k].shape == params[k].shape for k in params)
    h = 1e-6
    for name in FD_PARAMS:
        for flat in rng.choice(params[name].size, size=2, replace=False):
            i = np.unravel_index(flat, params[name].shape)
            bumped = dict(params)
            bumped[name] = params[name].copy()
            bumped[name][i] += h
            up = float64.forward_backward("resnet18", bumped, x, y)[0]
            bumped[name][i] -= 2 * h
            down = float64.forward_backward("resnet18", bumped, x, y)[0]
            assert grads[name][i] == pytest.approx((up - down) / (2 * h), abs=1e-8, rel=1e-5), (name, i)


@pytest.mark.slow
@needs_torch
def test_float64_reference_equals_torch_float64_with_batch_norm():
    """Training mode (loss, logits, every gradient), the running statistics after the step (torch's
    rule, unbiased variance), then eval mode from those statistics."""
    import torch

    from runner.backends.torch_backend import build_model, load_reference

    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(4, 28, 28)), rng.integers(0, 10, size=4)
    params = _random_state(3)
    stats = {}
    loss, logits, grads = float64.forward_backward("resnet18", params, x, y, stats)
    buffers = float64.update_buffers("resnet18", {k: v.astype(np.float64) for k, v in
                                                  reference.initial_buffers("resnet18").items()}, stats)
    net = build_model(torch, "resnet18").double()
    load_reference(torch, net, params)
    net.train()
    out = net(torch.from_numpy(x[:, None]))
    t_loss = torch.nn.functional.cross_entropy(out, torch.from_numpy(y))
    t_loss.backward()
    assert loss == pytest.approx(t_loss.item(), rel=1e-12)
    np.testing.assert_allclose(logits, out.detach().numpy(), rtol=0, atol=1e-11)
    for name, p in net.named_parameters():
        np.testing.assert_allclose(grads[name], p.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=name)
    for name, b in buffers.items():
        np.testing.assert_allclose(b, net.get_buffer(name).numpy(), rtol=1e-12, atol=1e-14, err_msg=name)
    net.eval()
    with torch.no_grad():
        eval_logits = net(torch.from_numpy(x[:, None])).numpy()
    np.testing.assert_allclose(float64.predict("resnet18", params, x, buffers), eval_logits, rtol=0, atol=1e-11)


def test_running_variance_takes_the_unbiased_batch_variance():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(2, 8, 8)), np.array([0, 1])
    stats = {}
    float64.forward_backward("resnet18", _random_state(), x, y, stats)
    mean, var = stats["layer4.1.bn2"]   # n = 2 images x 1 x 1: the unbiased variance is twice the biased
    ones = {p.name: np.ones(p.shape) for p in models.buffers("resnet18")}
    after = float64.update_buffers("resnet18", ones, stats)
    np.testing.assert_allclose(after["layer4.1.bn2.running_var"], 0.9 + 0.1 * var)
    np.testing.assert_allclose(after["layer4.1.bn2.running_mean"], 0.9 + 0.1 * mean)


# -- the parity gate, every framework -----------------------------------------------------------------

@pytest.fixture(scope="module")
def verify_spec(synthetic_dir):
    spec = make_spec("smoke", dataset="synthetic", model="resnet18", batch_size=8)
    return spec, store.load_for(spec, synthetic_dir)


@pytest.mark.slow
@pytest.mark.parametrize("name", TORCH_TF_JAX)
def test_each_framework_passes_the_parity_gate(name, verify_spec, synthetic_dir):
    """= python -m runner verify --framework NAME --model resnet18 --dataset synthetic --preset smoke
    --steps 3 --batch-size 8, in a process of its own. Measured here: loss <= 2e-7, logits <= 1.5e-6,
    gradient 3e-4..5e-4 (float32 ReLU flips; limit 10 x the replicas' 4.6e-4), update <= 2.3e-7,
    batch statistics 1.2e-6."""
    from runner.launch.orchestrate import verify_all

    spec, _ = verify_spec
    (result,) = verify_all(spec, [name], "cpu", synthetic_dir, 3, {})
    p = result["parity"]
    assert p["status"] == "pass", gate.describe(p)
    values = {k: c["value"] for k, c in p["checks"].items()}
    limits = {k: c["limit"] for k, c in p["checks"].items()}
    assert values["loss_rel_diff"] < 1e-6 and values["logits_max_diff"] < 5e-6
    assert values["update_rel_diff"] < 1e-5 and abs(values["update_bias"]) < 1e-6
    assert values["bn_stats_rel_diff"] < 1e-5 and limits["bn_stats_rel_diff"] == gate.BN_LIMIT
    # The gradient limit grew with the measured float32 noise, but not so far that TF32 would pass (6.8e-2).
    assert values["grad_rel_diff"] < limits["grad_rel_diff"] and 1e-3 < limits["grad_rel_diff"] < 2e-2


class BiasedRunningVariance(NumpyFloat32Backend):
    """Keras' and flax's own rule: running_var from the biased batch variance."""

    def _fb(self, idx, stats=None):
        out = super()._fb(idx, stats)
        if stats is not None:
            for node in models.nodes(self.spec.model):
                if isinstance(node.layer, models.BatchNorm):
                    _, h, w = node.shape_in
                    n = len(idx) * h * w
                    mean, var = stats[node.name]
                    stats[node.name] = (mean, var * np.float32((n - 1) / n))
        return out


@pytest.mark.slow
def test_the_gate_catches_a_biased_running_variance(verify_spec):
    spec, data = verify_spec
    honest = gate.check(lambda: NumpyFloat32Backend(spec), spec, data, 3)
    assert honest["status"] == "pass", gate.describe(honest)
    biased = gate.check(lambda: BiasedRunningVariance(spec), spec, data, 3)
    assert biased["failed"] == ["bn_stats_rel_diff"], gate.describe(biased)
    assert biased["checks"]["bn_stats_rel_diff"]["value"] > 1e-3  # ~1/(n-1), n = 8*4*4 in layer4


@pytest.mark.slow
@needs_jax
def test_jax_on_two_devices_normalizes_with_the_global_batch(verify_spec):
    """jax.devices=2: the batch split across 2 (virtual CPU) devices; jit's mean over the sharded
    batch is the global one, so the batch statistics match the one-process reference."""
    from runner.backends.jax_backend import JaxBackend

    spec, data = verify_spec
    result = gate.check(lambda: JaxBackend(spec, "cpu", {"devices": "2"}), spec, data, 3)
    assert result["status"] == "pass", gate.describe(result)
    assert result["checks"]["bn_stats_rel_diff"]["value"] < 1e-5


# -- a training run each, and what is refused ---------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("name", TORCH_TF_JAX)
def test_one_epoch_smoke_run(name, synthetic_dir, tmp_path):
    proc = run_cli("run", "--framework", name, "--model", "resnet18", "--dataset", "synthetic", "--preset", "smoke",
                   "--batch-size", "16", "--limit-train", "64", "--limit-test", "32", "--data-dir", synthetic_dir,
                   # the gate on ResNet-18, in a child per framework, is test_each_framework_passes_the_parity_gate;
                   # here it would compute a second float64 reference (~75 s) for this spec
                   "--parity-steps", "0", "--out", tmp_path, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = tmp_path.glob("*.json")
    record = json.loads(path.read_text())
    assert record["status"] in ("ok", "below_target"), record.get("error")
    assert record["spec"]["model"] == "resnet18" and record["metrics"]["epochs_completed"] == 1
    assert np.isfinite(record["metrics"]["train_loss"][0]) and 0 <= record["metrics"]["test_accuracy"][0] <= 1
    assert record["parity"] is None  # not asked for


def test_flux_refuses_resnet18_at_once():
    from runner.backends.flux_backend import FluxBackend, missing_layers

    assert all(missing_layers(m) == [] for m in ("lenet5", "mlp", "cnn"))
    with pytest.raises(FrameworkUnavailable, match="flux backend has no resnet18 yet: .*batch norm, residual blocks"):
        FluxBackend(make_spec(model="resnet18"))


@needs_torch
def test_torch_ddp_on_the_cpu_refuses_batch_norm(monkeypatch):
    from runner.backends.torch_backend import TorchBackend

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(FrameworkUnavailable, match="resnet18 under torchrun on cpu: batch norm needs SyncBatchNorm"):
        TorchBackend(make_spec(model="resnet18"), "cpu")
