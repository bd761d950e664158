"""The Flux backend's Python side, where no Julia runs: the registry, finding Julia without
downloading, the unavailable path end to end (real subprocesses), the tensor bundle in exactly the
layout julia/src reads, the committed Julia fixture, and every .jl file's syntax (tree-sitter).
The backend itself runs in tests/test_backends.py wherever Julia is (the `julia` marker)."""

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, has, run_cli
from runner import backends
from runner.backends import flux_backend, julia_bundle, julia_env
from runner.parity import flux_fixture
from runner.backends.base import FrameworkUnavailable
from runner.parity import float64
from runner.workload import models, reference
from runner.workload.spec import make_spec

needs_juliacall = pytest.mark.skipif(not has("juliacall"), reason="juliacall is not installed: pip install 'dlbench[dev]'")
# Forces "no Julia" on any machine, including one that has Julia: the unavailable path, for real.
NO_JULIA = {"PYTHON_JULIACALL_EXE": "/nonexistent/julia"}


def _fake_julia(folder: Path) -> Path:
    """An executable named julia: what PATH lookup finds. Only find_julia/check see it; nothing runs it."""
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / "julia"
    exe.write_text("#!/bin/sh\nexit 1\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return exe


# --- registry ---------------------------------------------------------------------------------

def test_flux_is_registered_and_loads_without_julia():
    assert "flux" in backends.names() and backends.parse_frameworks("torch,flux") == ["torch", "flux"]
    assert "juliaup" in backends.install_hint("flux") and "Pkg.instantiate()" in backends.install_hint("flux")
    code = ("import sys, runner.backends as b; b.load('flux'); b.installed('flux');"
            " import runner.parity.flux_fixture, runner.backends.julia_bundle, runner.machine.buildinfo;"
            " print('juliacall' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"  # juliacall imported = a download attempt without Julia


def test_installed_means_juliacall_and_a_julia_executable(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHON_JULIACALL_EXE", "/nonexistent/julia")
    assert backends.installed("flux") is False
    monkeypatch.setenv("PYTHON_JULIACALL_EXE", str(_fake_julia(tmp_path / "bin")))
    assert backends.installed("flux") is has("juliacall")


# --- finding Julia, offline ---------------------------------------------------------------------

def test_find_julia_order_and_reasons(tmp_path):
    exe = _fake_julia(tmp_path / "bin")
    assert julia_env.find_julia({"PATH": str(exe.parent)}) == (str(exe), "PATH")
    assert julia_env.find_julia({"PATH": "", "PYTHON_JULIAPKG_EXE": str(exe)}) == (str(exe), "PYTHON_JULIAPKG_EXE")
    assert julia_env.find_julia({"PATH": str(exe.parent), **NO_JULIA}) == \
        (None, "PYTHON_JULIACALL_EXE=/nonexistent/julia is not an executable")
    found, why = julia_env.find_julia({"PATH": str(tmp_path)})
    assert found is None and "no julia on PATH" in why


@needs_juliacall
def test_check_says_what_is_missing_and_never_downloads(tmp_path, monkeypatch):
    exe = _fake_julia(tmp_path / "bin")
    env = tmp_path / "env"
    monkeypatch.setenv("DLBENCH_JULIA_PROJECT", str(env))
    base = {"PATH": str(exe.parent)}
    with pytest.raises(FrameworkUnavailable, match=r"no Julia found \(no julia on PATH.*not downloading"):
        julia_env.check({"PATH": str(tmp_path)})
    with pytest.raises(FrameworkUnavailable, match="no Julia environment at"):
        julia_env.check(base)
    env.mkdir()
    (env / "Project.toml").write_text("[deps]\n")
    with pytest.raises(FrameworkUnavailable, match=r"is not instantiated \(no Manifest.toml\)"):
        julia_env.check(base)
    manifest = '[[deps.PythonCall]]\nuuid = "6099a3de-0909-46bc-b1f4-468b9a2dfc0d"\nversion = "{}"\n'
    (env / "Manifest.toml").write_text(manifest.format("0.9.1"))
    with pytest.raises(FrameworkUnavailable, match="has PythonCall 0.9.1, but juliacall is 0.9.37"):
        julia_env.check(base)
    (env / "Manifest.toml").write_text(manifest.format("0.9.37"))
    assert julia_env.check(base) == {"PYTHON_JULIAPKG_OFFLINE": "yes", "PYTHON_JULIACALL_EXE": str(exe),
                                     "PYTHON_JULIACALL_PROJECT": str(env)}
    threaded = julia_env.check({**base, "JULIA_NUM_THREADS": "4"})
    assert threaded["PYTHON_JULIACALL_THREADS"] == "4" and threaded["PYTHON_JULIACALL_HANDLE_SIGNALS"] == "yes"
    # The user's own environment is used as it is: no Manifest check, their settings kept.
    own = julia_env.check({**base, "PYTHON_JULIACALL_PROJECT": "/opt/jl", "PYTHON_JULIAPKG_OFFLINE": "no"})
    assert own["PYTHON_JULIACALL_PROJECT"] == "/opt/jl" and own["PYTHON_JULIAPKG_OFFLINE"] == "no"


# --- the unavailable path, end to end -----------------------------------------------------------

@pytest.mark.slow
def test_run_without_julia_fails_fast_with_an_unavailable_record(tmp_path, synthetic_dir):
    marker = Path(sys.prefix) / "julia_env"   # where juliapkg would set up, had juliacall been imported
    existed = marker.exists()
    t0 = time.perf_counter()
    out = run_cli("run", "--framework", "flux", "--preset", "smoke", "--dataset", "synthetic", "--repeats", "3",
                  "--data-dir", synthetic_dir, "--out", tmp_path, "--no-table", timeout=60,
                  env={**os.environ, **NO_JULIA})
    elapsed = time.perf_counter() - t0
    assert out.returncode == 1, out.stderr
    (path,) = sorted(tmp_path.glob("*.json"))  # one record, not three: the repeats would fail alike
    rec = json.loads(path.read_text())
    assert rec["status"] == "unavailable" and rec["framework"]["name"] == "flux"
    assert rec["error"].startswith("no Julia found (PYTHON_JULIACALL_EXE=/nonexistent/julia is not an executable);"
                                   " not downloading one (install: pip install 'dlbench[julia]'")
    for words in ("juliaup", "PYTHON_JULIACALL_EXE", "julia --project=julia/env", "Pkg.instantiate()"):
        assert words in rec["error"]
    assert rec["timing"]["setup_s"] is None and rec["metrics"]["epochs_completed"] == 0
    # The worker's whole life, interpreter start included, and the whole command (with the
    # parent's machine probe): no download attempt, no network wait.
    assert rec["timing"]["wall_s"] < 5 and elapsed < 30
    assert marker.exists() == existed
    assert "[flux] unavailable: no Julia found" in out.stderr


@pytest.mark.slow
def test_verify_reports_flux_unavailable_cleanly(synthetic_dir):
    out = run_cli("verify", "--framework", "flux", "--dataset", "synthetic", "--data-dir", synthetic_dir,
                  "--steps", "2", "--json", timeout=60, env={**os.environ, **NO_JULIA})
    assert out.returncode == 1, out.stderr  # named explicitly and unavailable: the gate fails
    (result,) = json.loads(out.stdout)
    assert result["framework"] == "flux" and result["parity"]["status"] == "unavailable"
    assert result["parity"]["error"].startswith("no Julia found")


def test_all_lists_flux_as_not_installed(monkeypatch, capsys):
    from runner import cli
    from runner.cli import workload
    from runner.errors import UserError

    monkeypatch.setenv("PYTHON_JULIACALL_EXE", "/nonexistent/julia")
    args = cli.build_parser().parse_args(["verify", "--framework", "all"])
    try:
        frameworks = workload.resolve(args).frameworks
    except UserError as e:  # no framework at all installed: still told about flux first
        assert "no framework is installed" in str(e)
        frameworks = []
    assert "flux" not in frameworks
    assert "[flux] not installed, skipped (pip install 'dlbench[julia]'" in capsys.readouterr().err


def test_buildinfo_soft_fails_without_julia(monkeypatch):
    from runner.machine import buildinfo

    monkeypatch.setenv("PYTHON_JULIACALL_EXE", "/nonexistent/julia")
    info = buildinfo.collect("flux")
    assert set(info) == {"error"} and "no Julia found" in info["error"]


# --- the bundle, read back the way Julia reads it -----------------------------------------------

@pytest.fixture(scope="module")
def bundle(tmp_path_factory, synthetic_dir):
    from runner.data import store

    spec = make_spec("smoke", dataset="synthetic", limit_train=128, limit_test=64)
    data = store.load_for(spec, synthetic_dir)
    params = reference.initial_params(spec)
    folder = flux_backend.write_setup(tmp_path_factory.mktemp("bundle"), spec, params, data.train_x,
                                      data.train_y, data.test_x, data.test_y)
    manifest, julia = julia_bundle.read_as_julia(folder)
    return spec, params, data, manifest, julia


def test_bundle_manifest_says_what_julia_builds(bundle):
    spec, params, _, manifest, _ = bundle
    assert manifest["format"] == "dlbench-tensors/1" and manifest["byte_order"] == "little"
    assert manifest["params"] == [p.name for p in models.params("lenet5")]
    assert [t["name"] for t in manifest["tensors"]][:10] == manifest["params"]
    assert all(t["offset"] % 64 == 0 for t in manifest["tensors"])
    assert manifest["classes"] == 10 and manifest["layers"][0] == {"kind": "conv", "out": 6, "kernel": 5, "pad": 2}
    assert manifest["spec"] == {"model": "lenet5", "batch_size": 64, "optimizer": "adam", "learning_rate": 0.001,
                                "beta1": 0.9, "beta2": 0.999, "eps": 1e-08, "weight_decay": 0.0,
                                "loss": "softmax_cross_entropy", "eval_batch_size": spec.eval_batch_size}


def test_julia_sees_whcn_images_whio_kernels_and_in_by_out_dense(bundle):
    _, params, data, _, jl = bundle
    # Images (N, H, W) -> (W, H, N): J[w, h, n] == X[n, h, w]
    assert jl["train_x"].shape == (28, 28, 128) and jl["train_x"][3, 17, 5] == data.train_x[5, 17, 3]
    assert np.array_equal(jl["train_x"], data.train_x.transpose(2, 1, 0))
    assert jl["train_y"].dtype == np.int64 and np.array_equal(jl["train_y"], data.train_y)
    # Conv OIHW -> (W, H, I, O), Flux's CrossCor weight layout, used as it is.
    w = params["conv2.weight"]
    assert jl["conv2.weight"].shape == (5, 5, 6, 16) and jl["conv2.weight"][4, 1, 3, 7] == w[7, 3, 1, 4]
    # Dense (out, in) -> (in, out): model.jl's one permutedims gives Flux's out x in back.
    assert jl["fc1.weight"].shape == (400, 120) and np.array_equal(jl["fc1.weight"].T, params["fc1.weight"])
    # Every tensor comes back to the canonical layout through from_julia (Python's side of the bridge).
    for name, a in params.items():
        back = julia_bundle.from_julia(jl[name])
        assert back.flags.c_contiguous and np.array_equal(back, a)


def test_crosscor_on_julia_layouts_is_the_reference_conv_and_fc1_needs_no_permutation(bundle):
    """What julia/src/model.jl claims, computed in NumPy on the arrays as Julia holds them."""
    _, params, data, _, jl = bundle
    x = jl["train_x"][:, :, None, :8].astype(np.float64)       # WHCN, 8 images
    k, b = jl["conv1.weight"].astype(np.float64), params["conv1.bias"]
    xp = np.pad(x, ((2, 2), (2, 2), (0, 0), (0, 0)))
    out = np.zeros((28, 28, 6, 8))
    for i in range(5):                                          # CrossCor: y[w,h,o,n] = sum x[w+i,h+j,c,n] k[i,j,c,o]
        for j in range(5):
            out += np.einsum("whcn,co->whon", xp[i:i + 28, j:j + 28], k[i, j])
    out += b[None, None, :, None]
    ref = float64._conv(data.train_x[:8, None].astype(np.float64), params["conv1.weight"].astype(np.float64),
                        params["conv1.bias"].astype(np.float64), 2)   # NCHW
    assert np.allclose(out, ref.transpose(3, 2, 1, 0), atol=1e-9)
    # Flatten: (W, H, C, N) reshaped column-major to (W*H*C, N) is the canonical NCHW flatten.
    feats = np.random.default_rng(0).standard_normal((8, 16, 5, 5))           # NCHW
    julia_flat = feats.transpose(3, 2, 1, 0).reshape(400, 8, order="F")       # what flatten_whcn does
    assert np.array_equal(julia_flat, feats.reshape(8, 400).T)


def test_batch_order_reaches_julia_as_one_column_per_step():
    """set_order! stores permutedims(order) .+ 1: column j holds step j's samples, 1-based."""
    order = reference.epoch_order(make_spec("smoke", dataset="synthetic"), 0)
    julia_order = order.T + 1                                   # (batch, steps)
    assert julia_order.shape == (64, 32) and np.array_equal(julia_order[:, 5] - 1, order[5])


def test_committed_julia_fixture_is_current(tmp_path):
    committed = flux_fixture.DEFAULT
    manifest, old = julia_bundle.read_as_julia(committed)
    fresh_manifest, new = julia_bundle.read_as_julia(flux_fixture.write(tmp_path / "fixture"))
    assert manifest == fresh_manifest, "stale: python -m runner.parity.flux_fixture rewrites julia/test/fixture"
    for name, a in new.items():   # the float64 reference may differ in the last bits across BLAS builds
        assert np.allclose(old[name], a, rtol=1e-12, atol=1e-15), name
    probe = old["layout_probe"]   # NumPy A[a, b, c] = 100a + 10b + c, as runtests.jl reads it
    assert probe.shape == (4, 3, 2) and probe[3, 1, 0] == 13 and probe[0, 2, 1] == 120


# --- Julia sources ------------------------------------------------------------------------------

def _julia_sources():
    return sorted((ROOT / "julia").rglob("*.jl"))


def _parser():
    tree_sitter = pytest.importorskip("tree_sitter", reason="pip install 'dlbench[dev]' (tree-sitter)")
    tsj = pytest.importorskip("tree_sitter_julia", reason="pip install 'dlbench[dev]' (tree-sitter-julia)")
    return tree_sitter.Parser(tree_sitter.Language(tsj.language()))


def _problems(node) -> list[str]:
    out = [f"{node.type} at {node.start_point}" for node in [node] if node.type == "ERROR" or node.is_missing]
    for child in node.children:
        out += _problems(child)
    return out


def test_the_syntax_check_catches_errors():
    """An unclosed bracket or block is caught. (tree-sitter-julia 0.23 reads a stray top-level
    `end` as an identifier: the check is a parse, not Julia's own lowering.)"""
    parser = _parser()
    for broken in (b"function f(x)\n  y = (1, 2\nend\n", b"if x\n  1\n", b"struct S\n  a::Int\n"):
        assert _problems(parser.parse(broken).root_node), broken
    assert not _problems(parser.parse(b"f(x) = x .+ 1\n@. m = b * m + c * g\n").root_node)


@pytest.mark.parametrize("path", _julia_sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_julia_file_parses(path):
    tree = _parser().parse(path.read_bytes())
    assert _problems(tree.root_node) == []


def test_every_julia_function_python_calls_is_defined():
    """The bridge's contract: each DLBenchFlux name flux_backend and julia_env call is defined in julia/src."""
    source = "\n".join(p.read_text() for p in (ROOT / "julia" / "src").glob("*.jl"))
    called = ["setup", "set_order!", "train_epoch!", "evaluate", "synchronize!", "device_peak_memory",
              "probe_step", "parameters", "set_state!", "adam_state", "build_info", "functional"]
    for name in called:
        assert f"function {name}(" in source or f"\n{name}(" in source, name
    python = (ROOT / "runner" / "backends" / "flux_backend.py").read_text()
    for name in called:   # juliacall spells ! as _b
        assert f".{name.replace('!', '_b')}" in python or name == "functional", name


# --- the Python side of the bridge, against a NumPy stand-in for DLBenchFlux --------------------

class _Fn:
    """A callable with juliacall's `_jl_call_nogil`, so gil=release and gil=hold both run."""

    def __init__(self, fn):
        self.fn, self.calls = fn, []

    def __call__(self, *args):
        self.calls.append("gil")
        return self.fn(*args)

    def _jl_call_nogil(self, *args):
        self.calls.append("nogil")
        return self.fn(*args)


class _NumpyDLBenchFlux:
    """DLBenchFlux's API (julia/src/train.jl) in float64 NumPy, taking and giving arrays in the
    bundle layout (axes reversed) exactly as the Julia module does, so FluxBackend's marshalling
    runs here. Not Julia: tests/test_backends.py runs the real module wherever Julia exists."""

    def __init__(self):
        for name in ("setup", "set_order_b", "train_epoch_b", "evaluate", "synchronize_b", "probe_step",
                     "parameters", "set_state_b", "adam_state", "build_info", "device_peak_memory"):
            setattr(self, name, _Fn(getattr(self, "_" + name)))

    def _setup(self, folder, device):
        manifest, jl = julia_bundle.read_as_julia(Path(folder))
        canon = {k: julia_bundle.from_julia(v) for k, v in jl.items()}
        spec = make_spec("smoke", **{k: v for k, v in manifest["spec"].items()})
        names = manifest["params"]
        st = {"spec": spec, "names": names, "p": {n: canon[n].astype(np.float64) for n in names},
              "x": canon["train_x"], "y": canon["train_y"], "tx": canon["test_x"], "ty": canon["test_y"],
              "order": None}
        st["adam"] = float64.Adam(spec, st["p"])
        return st

    def _set_order_b(self, st, order):
        st["order"] = np.asarray(order).T + 1            # permutedims(order) .+ 1

    def _train_epoch_b(self, st):
        loss_sum, correct = 0.0, 0
        for col in st["order"].T:
            idx = col - 1
            loss, logits, grads = float64.forward_backward(st["spec"].model, st["p"], st["x"][idx], st["y"][idx])
            st["p"] = st["adam"].step(st["p"], grads)
            loss_sum += loss
            correct += int((logits.argmax(1) == st["y"][idx]).sum())
        return loss_sum, correct, st["order"].shape[1]

    def _evaluate(self, st):
        _, logits, _ = float64.forward_backward(st["spec"].model, st["p"], st["tx"], st["ty"])
        return int((logits.argmax(1) == st["ty"]).sum())

    def _synchronize_b(self, st):
        return None

    def _probe_step(self, st, idx):
        idx = np.asarray(idx)
        loss, logits, grads = float64.forward_backward(st["spec"].model, st["p"], st["x"][idx], st["y"][idx])
        return (loss, logits.T, *[grads[n].T for n in st["names"]])   # .T reverses every axis

    def _parameters(self, st):
        return tuple(st["p"][n].T for n in st["names"])

    def _set_state_b(self, st, folder, t):
        """set_state!: the bundle's weights and moments by name, SpecAdam's t steps taken (float64.Adam
        is the spec's Adam: bias corrections in float64 from the step count, as SpecAdam)."""
        manifest, jl = julia_bundle.read_as_julia(Path(folder))
        assert isinstance(t, int) and t >= 0 and manifest["params"] == st["names"]
        load = lambda prefix: {n: julia_bundle.from_julia(jl[prefix + n]).astype(np.float64)  # noqa: E731
                               for n in st["names"]}
        p, m, v = load(""), load("m:"), load("v:")
        assert all(jl[k].dtype == np.float32 for k in jl) and all(p[n].shape == st["p"][n].shape for n in p)
        st["p"], st["adam"].m, st["adam"].v, st["adam"].t = p, m, v, t

    def _adam_state(self, st):
        a = st["adam"]
        return (a.t, *[a.m[n].T for n in st["names"]], *[a.v[n].T for n in st["names"]])

    def _build_info(self, device):
        return json.dumps({"julia": "1.11.0", "flux": "0.16.11", "optimisers": "0.4.8", "zygote": "0.7.10",
                           "nnlib": "0.9.30", "julia_threads": 1, "blas_threads": 2, "blas": "LBTConfig",
                           "device": device, "device_name": None, "functional": True})

    def _device_peak_memory(self, st):
        return None, "not counted"


def _standin_backend(spec, options=None):
    from runner.backends.base import parse_options

    b = object.__new__(flux_backend.FluxBackend)   # FluxBackend.__init__ would start Julia
    b.options = parse_options("flux", flux_backend.FluxBackend.OPTIONS, options or {})
    b.spec, b.jl, b.mod, b.jdevice, b.state = spec, None, _NumpyDLBenchFlux(), "cpu", None
    return b


@pytest.fixture(scope="module")
def tiny(synthetic_dir):
    from runner.data import store

    spec = make_spec("smoke", dataset="synthetic", limit_train=128, limit_test=32, batch_size=32)
    return spec, store.load_for(spec, synthetic_dir)


@pytest.mark.parametrize("gil", ["release", pytest.param("hold", marks=pytest.mark.slow)])
def test_bridge_marshalling_through_the_harness_and_the_gate(gil, tiny):
    from runner.backends.base import CPU_PEAK_MEMORY
    from runner.parity import gate
    from runner.workload import harness

    spec, data = tiny
    b = _standin_backend(spec, {"gil": gil})
    b.setup(reference.initial_params(spec), data.train_x, data.train_y, data.test_x, data.test_y)
    ref = reference.initial_params(spec)
    got = b.parameters()
    assert list(got) == list(ref) and all(np.array_equal(got[k], ref[k]) for k in ref)
    loss, logits, grads = b.probe_step(reference.epoch_order(spec, 0)[0])
    assert isinstance(loss, float) and logits.shape == (32, 10) and logits.flags.c_contiguous
    assert {k: g.shape for k, g in grads.items()} == {k: a.shape for k, a in ref.items()}
    log = harness.train(spec, b, harness.TrainLog())
    assert log.epochs_completed == 1 and 0 < log.train_loss[0] < 2.31 and 0 <= log.test_accuracy[0] <= 1
    assert b.mod.train_epoch_b.calls == (["nogil"] if gil == "release" else ["gil"])
    assert b.mod.set_order_b.calls == ["gil"]   # reads a NumPy array: never without the GIL
    info = b.info()
    assert info["device"] == {"kind": "cpu", "name": None}
    assert info["framework"]["name"] == "flux" and info["framework"]["version"] == "0.16.11"
    assert info["framework"]["threads"] == 1 and info["framework"]["options"] == {"gil": gil}
    assert b.peak_memory() == CPU_PEAK_MEMORY
    result = gate.check(lambda: _standin_backend(spec, {"gil": gil}), spec, data, 4)
    assert result["status"] == "pass", result   # float64 in, float64 out: the plumbing loses nothing
    assert result["checked_steps"] == [1, 2, 3, 4]
    values = {k: c["value"] for k, c in result["checks"].items()}
    assert values["loss_rel_diff"] < 1e-12 and values["logits_max_diff"] < 1e-12
    assert values["grad_rel_diff"] < 1e-6    # against the reference's gradient rounded to float32
    assert values["update_rel_diff"] == 0 and abs(values["update_bias"]) < 1e-9   # ref dw rounded to float32


def test_set_state_and_adam_state_round_trip_through_the_bundle(tiny, tmp_path):
    """set_state loads weights, m, v and t as the gate hands them over (one bundle, the layout
    julia/src reads); adam_state and parameters give them back unchanged in canonical order and
    layout; the next step is step t + 1."""
    spec, data = tiny
    b = _standin_backend(spec)
    b.setup(reference.initial_params(spec), data.train_x, data.train_y, data.test_x, data.test_y)
    m0, v0, t0 = b.adam_state()
    assert t0 == 0 and list(m0) == b.names and all(not m0[n].any() and not v0[n].any() for n in b.names)
    rng = np.random.default_rng(3)
    w = {n: (rng.standard_normal(a.shape) * 0.1).astype(np.float32) for n, a in m0.items()}
    m = {n: (rng.standard_normal(a.shape) * 1e-3).astype(np.float32) for n, a in m0.items()}
    v = {n: (rng.random(a.shape) * 1e-6).astype(np.float32) for n, a in m0.items()}
    # The bundle as Julia reads it: weights, then m:, then v:, dense weights (in, out), kernels WHIO.
    manifest, jl = julia_bundle.read_as_julia(flux_backend.write_state(tmp_path / "state", b.names, w, m, v))
    assert manifest["params"] == b.names
    assert list(jl) == b.names + [f"m:{n}" for n in b.names] + [f"v:{n}" for n in b.names]
    assert jl["m:fc1.weight"].shape == (400, 120) and np.array_equal(jl["m:fc1.weight"].T, m["fc1.weight"])
    assert jl["v:conv2.weight"].shape == (5, 5, 6, 16) and all(a.dtype == np.float32 for a in jl.values())

    b.set_state(w, m, v, 7)
    got_m, got_v, t = b.adam_state()
    got_w = b.parameters()
    assert t == 7 and list(got_m) == list(got_v) == list(got_w) == b.names
    for n in b.names:
        assert got_m[n].flags.c_contiguous and got_v[n].flags.c_contiguous
        assert np.array_equal(got_w[n], w[n]) and np.array_equal(got_m[n], m[n]) and np.array_equal(got_v[n], v[n])
    # One step from there is step 8: bias corrections 1 - beta^8, not 1 - beta^1.
    row = reference.epoch_order(spec, 0)[0]
    b.train_epoch(row[None])
    p64 = {n: a.astype(np.float64) for n, a in w.items()}
    _, _, grads = float64.forward_backward(spec.model, p64, data.train_x[row], data.train_y[row])
    want = float64.Adam(spec, p64)
    (want.m, want.v), want.t = ({n: a.astype(np.float64) for n, a in d.items()} for d in (m, v)), 7
    expect = want.step(p64, grads)
    after = b.parameters()
    assert all(np.allclose(after[n], expect[n], rtol=0, atol=1e-15) for n in b.names)
    assert b.adam_state()[2] == 8
    first = float64.Adam(spec, p64)
    first.m, first.v = ({n: a.astype(np.float64) for n, a in d.items()} for d in (m, v))
    wrong = first.step(p64, grads)   # had t been dropped: a visibly different update
    assert not np.allclose(after["fc1.weight"], wrong["fc1.weight"], rtol=0, atol=1e-9)
