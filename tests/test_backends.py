"""Every backend (torch, tensorflow, jax) on real tensors: it starts from the reference weights, it
passes the parity gate in every option it offers, it reads every spec field, it reports what it
cannot do."""

import numpy as np
import pytest

from conftest import FRAMEWORKS
from runner import backends
from runner.workload import harness, reference
from runner.parity import gate
from runner.backends.base import BACKEND_FIELDS, FrameworkUnavailable
from runner.data import store
from runner.workload.spec import FIELDS, make_spec

def _variants():
    """Every backend with its defaults, then each non-default option value the CPU runs: parity must
    hold whichever way the framework is driven. A value that runs only with others (torch.workers=2 needs
    torch.loader=dataloader: the backend's check_options) gets the fewest other non-defaults it needs."""
    out = [pytest.param(p.values[0], {}, marks=p.marks, id=p.values[0]) for p in FRAMEWORKS]
    for p in FRAMEWORKS:
        name = p.values[0]
        cls = backends.load(name)  # module only, no framework
        for key, (default, choices) in cls.OPTIONS.items():
            for v in choices:
                if v != default:
                    options = _runnable(cls, {key: v})
                    try:  # a mode that needs a GPU (torch.step=graph) is checked by its refusal here
                        getattr(cls, "check_device", lambda o, cuda: None)(options, False)
                    except ValueError:
                        continue
                    # torch.compile takes 15-25 s cold: in the full run (tests/test_torch_steps.py too)
                    marks = [*p.marks, pytest.mark.slow] if options.get("step") == "compile" else p.marks
                    out.append(pytest.param(name, options, marks=marks,
                                            id=f"{name}-" + ",".join(f"{k}={x}" for k, x in options.items())))
    return out


def _runnable(cls, options: dict) -> dict:
    """`options` plus the fewest other non-default values check_options accepts them with."""
    import itertools

    others = [(k, x) for k, (d, c) in cls.OPTIONS.items() if k not in options for x in c if x != d]
    for n in range(len(others) + 1):
        for extra in itertools.combinations(others, n):
            trial = {**options, **dict(extra)}
            if len(trial) != len(options) + n:  # two values of one key
                continue
            full = {k: trial.get(k, d) for k, (d, _) in cls.OPTIONS.items()}
            try:
                getattr(cls, "check_options", lambda o: None)(full)
            except ValueError:
                continue
            return trial
    raise AssertionError(f"{cls.name}: no combination runs {options}")


VARIANTS = _variants()


@pytest.fixture(scope="module")
def small(synthetic_dir):
    spec = make_spec("smoke", dataset="synthetic", limit_train=640, limit_test=256)
    return spec, store.load_for(spec, synthetic_dir)


def _backend(name, spec, data, options=None):
    b = backends.load(name)(spec, "cpu", options or {})
    b.setup(reference.initial_params(spec), data.train_x, data.train_y, data.test_x, data.test_y)
    return b


@pytest.mark.parametrize("name", FRAMEWORKS)
def test_starts_from_the_reference_weights_and_learns(name, small):
    spec, data = small
    b = _backend(name, spec, data)
    ref = reference.initial_params(spec)
    got = b.parameters()
    assert list(got) == list(ref) and all(np.array_equal(got[k], ref[k]) for k in ref)
    stats = b.train_epoch(reference.epoch_order(spec, 0))
    b.synchronize()
    assert stats.steps == 10 and np.isfinite(float(stats.loss_sum))
    assert int(b.evaluate()) > 0.5 * spec.n_test
    info = b.info()
    assert info["framework"]["name"] == name and info["framework"]["version"]
    assert info["device"]["kind"] == "cpu"


@pytest.mark.parametrize("name, options", VARIANTS)
def test_passes_the_parity_gate(name, options, small):
    spec, data = small
    result = gate.check(lambda: backends.load(name)(spec, "cpu", options), spec, data, 8)
    assert result["status"] == "pass", result
    values = {k: c["value"] for k, c in result["checks"].items()}
    assert values["grad_rel_diff"] < 1e-5 and values["loss_rel_diff"] < 1e-6 and abs(values["update_bias"]) < 1e-7


@pytest.mark.parametrize("name", FRAMEWORKS)
def test_set_state_then_one_step_is_the_spec_adam_step(name, small):
    """set_state loads weights, moments and the step count; one step from there is Adam's step t+1
    with float64 bias corrections, as the float64 reference takes it."""
    from runner.parity import float64

    spec, data = small
    b = _backend(name, spec, data)
    rng = np.random.default_rng(3)
    w = {k: v + np.float32(0.01) * rng.standard_normal(v.shape).astype(np.float32)
         for k, v in reference.initial_params(spec).items()}
    m = {k: (1e-3 * rng.standard_normal(v.shape)).astype(np.float32) for k, v in w.items()}
    v = {k: (1e-6 * rng.random(a.shape)).astype(np.float32) for k, a in w.items()}
    b.set_state(w, m, v, 7)
    got_m, got_v, t = b.adam_state()
    assert t == 7 and all(np.array_equal(got_m[k], m[k]) and np.array_equal(got_v[k], v[k]) for k in m)
    assert all(np.array_equal(b.parameters()[k], w[k]) for k in w)
    idx = reference.epoch_order(spec, 0)[0]
    f64 = lambda d: {k: a.astype(np.float64) for k, a in d.items()}  # noqa: E731
    _, _, grads = float64.forward_backward(spec.model, f64(w), data.train_x[idx], data.train_y[idx])
    opt = float64.Adam(spec, w)
    opt.m, opt.v, opt.t = f64(m), f64(v), 7
    want = opt.step(f64(w), grads)
    b.train_epoch(idx[None])
    b.synchronize()
    after, (_, _, t) = b.parameters(), b.adam_state()
    assert t == 8
    num = sum(float(((after[k] - want[k]) ** 2).sum()) for k in w)
    den = sum(float(((want[k] - w[k]) ** 2).sum()) for k in w)
    assert (num / den) ** 0.5 < 1e-3  # the update itself, to float32 accuracy


class _Reading:
    """Wraps a spec and notes which fields are read."""

    def __init__(self, spec):
        self._spec, self.read = spec, set()

    def __getattr__(self, name):
        if name in FIELDS:
            self.read.add(name)
        return getattr(self._spec, name)


@pytest.mark.parametrize("name", FRAMEWORKS)
def test_every_spec_field_is_read(name, synthetic_dir):
    """A field added to the spec and ignored by a backend or the harness must fail here."""
    spec = make_spec("smoke", dataset="synthetic", limit_train=256, limit_test=128)
    backend_view, harness_view = _Reading(spec), _Reading(spec)
    b = backends.load(name)(backend_view, "cpu", {})
    data = store.load_for(harness_view, synthetic_dir)  # what a worker does, with the harness' view
    b.setup(reference.initial_params(harness_view), data.train_x, data.train_y, data.test_x, data.test_y)
    log = harness.train(harness_view, b, harness.TrainLog())
    harness.timing_and_metrics(harness_view, log)
    assert set(BACKEND_FIELDS) <= backend_view.read, set(BACKEND_FIELDS) - backend_view.read
    assert backend_view.read | harness_view.read == set(FIELDS), set(FIELDS) - backend_view.read - harness_view.read


@pytest.mark.parametrize("name", FRAMEWORKS)
def test_unavailable_device_and_spec_are_reported_not_crashed(name, small):
    spec, data = small
    cls = backends.load(name)
    with pytest.raises(FrameworkUnavailable, match="device cuda requested"):
        cls(spec, "cuda", {})  # no GPU on this machine (nor in CI)
    import dataclasses

    odd = dataclasses.replace(spec, optimizer="sgd")
    with pytest.raises(FrameworkUnavailable, match="no optimizer 'sgd'"):
        _backend(name, odd, data)


def test_options_are_checked_before_anything_runs():
    with pytest.raises(Exception, match="jax option loop='while': choose from step, scan"):
        backends.options_for("jax", {"loop": "while"})
    with pytest.raises(Exception, match="torch has no option loop"):
        backends.options_for("torch", {"loop": "scan"})
    assert backends.parse_option_args(["jax.loop=scan", "tensorflow.jit_compile=on"], ["jax", "tensorflow"]) == \
        {"jax": {"loop": "scan"}, "tensorflow": {"jit_compile": "on"}}


def test_jax_records_the_allocator_settings_it_ran_under(monkeypatch):
    """JAX preallocates 75 % of a GPU unless told: the record says which way the run went."""
    from runner.backends import jax_backend

    monkeypatch.delenv("XLA_PYTHON_CLIENT_PREALLOCATE", raising=False)
    monkeypatch.setenv("XLA_PYTHON_CLIENT_MEM_FRACTION", ".5")
    monkeypatch.delenv("XLA_PYTHON_CLIENT_ALLOCATOR", raising=False)
    assert jax_backend.xla_client_memory() == {"XLA_PYTHON_CLIENT_PREALLOCATE": None,
                                               "XLA_PYTHON_CLIENT_MEM_FRACTION": ".5",
                                               "XLA_PYTHON_CLIENT_ALLOCATOR": None}
