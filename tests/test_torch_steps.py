"""torch's step modes (runner.backends.torch_steps): the fused step is torch.optim.Adam's step to the
bit on the CPU (what step=graph captures on CUDA), step=compile trains what eager trains and passes
the parity gate (also in tests/test_backends.py), step=graph is refused off CUDA before anything
starts, each mode shows in the record and in compare's label."""

import json

import numpy as np
import pytest

from conftest import needs_torch, run_cli
from runner import backends
from runner.backends.base import FrameworkUnavailable
from runner.data import store
from runner.errors import UserError
from runner.machine import platforms
from runner.report import compare
from runner.workload import reference
from runner.workload.spec import make_spec

pytestmark = needs_torch


@pytest.fixture(scope="module")
def small(synthetic_dir):
    spec = make_spec("smoke", dataset="synthetic", limit_train=640, limit_test=256)
    return spec, store.load_for(spec, synthetic_dir)


def _backend(spec, data, **options):
    b = backends.load("torch")(spec, "cpu", options)
    b.setup(reference.initial_params(spec), data.train_x, data.train_y, data.test_x, data.test_y)
    return b


def _moved(spec, data, steps: int, fused_call=None, **options):
    """Weights, moments and step count after `steps` steps of the first epoch; fused_call(fused)
    instead of train_epoch steps a FusedStep's own (uncompiled, uncaptured) function."""
    b = _backend(spec, data, **options)
    order = reference.epoch_order(spec, 0)[:steps]
    if fused_call is None:
        stats = b.train_epoch(order)
    else:
        for row in order:
            b.fused.idx.copy_(b.torch.from_numpy(row))
            fused_call(b.fused)
        stats = None
    return b.parameters(), b.adam_state(), stats


def test_the_fused_step_is_torch_adams_step_to_float32_rounding(small):
    """The function step=graph captures, run uncaptured on the CPU: 10 steps from the reference weights
    land where torch.optim.Adam's do (same op order; only the fused scalars may round differently)."""
    spec, data = small
    want_w, (want_m, want_v, want_t), _ = _moved(spec, data, 10)
    # step=compile builds the FusedStep; calling .step (not .fn) runs the plain function
    got_w, (got_m, got_v, got_t), _ = _moved(spec, data, 10, fused_call=lambda f: f.step(), step="compile")
    assert got_t == want_t == 10
    for k in want_w:
        np.testing.assert_allclose(got_w[k], want_w[k], rtol=0, atol=2e-6)
        np.testing.assert_allclose(got_m[k], want_m[k], rtol=1e-5, atol=1e-9)
        np.testing.assert_allclose(got_v[k], want_v[k], rtol=1e-5, atol=1e-12)


@pytest.mark.slow  # torch.compile: 15-25 s cold
def test_compile_trains_what_eager_trains(small):
    spec, data = small
    eager_w, _, eager = _moved(spec, data, 10)
    b = _backend(spec, data, step="compile")
    stats = b.train_epoch(reference.epoch_order(spec, 0)[:10])
    assert stats.steps == 10
    assert float(stats.loss_sum) == pytest.approx(float(eager.loss_sum), rel=1e-5)
    assert abs(int(stats.correct) - int(eager.correct)) <= 1
    got = b.parameters()
    num = sum(float(((got[k] - eager_w[k]) ** 2).sum()) for k in got)
    den = sum(float((eager_w[k] ** 2).sum()) for k in got)
    assert (num / den) ** 0.5 < 1e-5
    assert b.info()["framework"]["mode"] == "compile"
    assert b.info()["framework"]["options"]["step"] == "compile"


def test_set_state_copies_into_the_fused_steps_tensors(small):
    """The gate's set_state must not swap the tensors a CUDA graph was captured with."""
    spec, data = small
    b = _backend(spec, data, step="compile")
    held = [t.data_ptr() for t in (*b.fused.params, *b.fused.m, *b.fused.v, b.fused.t)]
    w = reference.initial_params(spec)
    m = {k: np.full(a.shape, 1e-3, np.float32) for k, a in w.items()}
    v = {k: np.full(a.shape, 1e-6, np.float32) for k, a in w.items()}
    b.set_state(w, m, v, 5)
    assert [t.data_ptr() for t in (*b.fused.params, *b.fused.m, *b.fused.v, b.fused.t)] == held
    got_m, got_v, t = b.adam_state()
    assert t == 5 and all(np.array_equal(got_m[k], m[k]) and np.array_equal(got_v[k], v[k]) for k in m)


def test_graph_needs_cuda_and_what_the_fused_step_leaves_out_is_refused(small):
    spec, data = small
    torch_backend = backends.load("torch")
    with pytest.raises(FrameworkUnavailable, match="step=graph captures the step as a CUDA graph: it needs an NVIDIA GPU"):
        torch_backend(spec, "cpu", {"step": "graph"})
    with pytest.raises(UserError, match="step=compile indexes each batch from the resident data"):
        backends.options_for("torch", {"step": "compile", "loader": "dataloader"})
    with pytest.raises(FrameworkUnavailable, match="resnet18 has batch norm"):
        torch_backend(make_spec("smoke", dataset="synthetic", model="resnet18"), "cpu", {"step": "compile"})
    with pytest.raises(UserError, match="it needs an NVIDIA GPU"):
        backends.check_devices({"torch": {"step": "graph"}}, lambda: platforms.on_cuda("cpu"))
    backends.check_devices({"torch": {"step": "graph"}}, lambda: platforms.on_cuda("cuda"))  # the child checks
    backends.check_devices({"torch": {"step": "compile"}}, lambda: False)


def test_compile_without_a_compiler_is_one_line_naming_what_is_missing(small, monkeypatch, tmp_path):
    from runner.backends import torch_steps

    spec, _ = small
    monkeypatch.setenv("PATH", str(tmp_path))  # no g++, gcc or clang here (a slim container image)
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.delenv("CC", raising=False)
    assert torch_steps.missing_toolchain("cpu") == "a C++ compiler"
    assert torch_steps.missing_toolchain("cuda").startswith("a C compiler")
    with pytest.raises(FrameworkUnavailable, match=r"^torch option step=compile generates and builds kernels at run"
                       r" time: this machine lacks a C\+\+ compiler \(Debian: apt-get install g\+\+ python3-dev\);"
                       r" use step=eager$"):
        backends.load("torch")(spec, "cpu", {"step": "compile"})
    backends.load("torch")(spec, "cpu", {"step": "eager"})  # eager needs no compiler
    (tmp_path / "cxx").write_text("#!/bin/sh\n")
    (tmp_path / "cxx").chmod(0o755)
    monkeypatch.setenv("CXX", "cxx")  # $CXX is what inductor runs
    assert torch_steps.missing_toolchain("cpu") is None


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_run_refuses_graph_off_cuda_in_one_line_before_anything_starts(tmp_path, synthetic_dir, device):
    out = run_cli("run", "--framework", "torch", "--option", "torch.step=graph", "--device", device, "--preset",
                  "smoke", "--dataset", "synthetic", "--data-dir", synthetic_dir, "--out", tmp_path)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines() == [
        "dlbench: error: torch option step=graph captures the step as a CUDA graph: it needs an NVIDIA GPU"
        " (--device cuda), not the CPU or MPS; step=compile runs everywhere"]
    assert not list(tmp_path.iterdir())


def test_compare_labels_step_modes_and_merges_eager_with_older_records():
    def rec(**options):
        return {"framework": {"name": "torch", "options": options}}

    assert compare.options_label(rec(loader="resident", workers="0")) == ""  # a record from before step modes
    assert compare.options_label(rec(loader="resident", workers="0", step="eager")) == ""
    assert compare.options_label(rec(loader="resident", workers="0", step="compile")) == "step=compile"
    assert compare.options_label(rec(loader="resident", workers="0", step="graph")) == "step=graph"


@pytest.mark.slow
def test_a_compiled_run_records_its_mode_compile_time_and_passes_parity(tmp_path, synthetic_dir):
    out = run_cli("run", "--framework", "torch", "--option", "torch.step=compile", "--dataset", "synthetic",
                  "--epochs", "3", "--limit-train", "1024", "--limit-test", "256", "--parity-steps", "8",
                  "--data-dir", synthetic_dir, "--out", tmp_path, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    (path,) = tmp_path.glob("*.json")
    record = json.loads(path.read_text())
    assert record["status"] == "ok" and record["parity"]["status"] == "pass"
    assert record["framework"]["mode"] == "compile" and record["framework"]["options"]["step"] == "compile"
    # the compilation falls in the first epoch, apart from the steady ones
    assert record["timing"]["compile_s"] > 0
    assert record["timing"]["epoch_train_s"][0] > max(record["timing"]["epoch_train_s"][1:])
    assert "(step=compile)" in out.stdout  # the table's framework label
