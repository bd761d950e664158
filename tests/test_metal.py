"""--platform m1: the per-framework Metal check from faked Mac facts (no Mac here), the preflight glue,
and the real buildinfo of this machine's torch seen as if on a Mac.

    python -m pytest tests/test_metal.py -q
"""

from __future__ import annotations

import pytest

from runner.errors import UserError
from runner.machine import metal, platforms

from conftest import needs_torch

MAC = {"system": "Darwin", "machine": "arm64"}
TORCH_MPS = {"version": "2.13.0", "mps_built": True, "mps_available": True}
TF_METAL = {"version": "2.18.1", "gpus": ["METAL"], "metal_plugin": "1.2.0"}
JAX_CPU = {"version": "0.10.2", "metal": False, "metal_plugin": None}


def test_a_working_mac_puts_torch_and_tensorflow_on_the_gpu_and_says_why_jax_is_not():
    rows = metal.plan(["torch", "tensorflow", "jax"], facts={"torch": TORCH_MPS, "tensorflow": TF_METAL,
                                                              "jax": JAX_CPU}, **MAC)
    devices = {r["framework"]: r["device"] for r in rows}
    assert devices == {"torch": "mps", "tensorflow": "mps", "jax": "cpu"}
    jax = rows[2]
    assert not jax["metal"] and "jax-metal 0.1.1" in jax["message"] and "runs on the CPU" in jax["message"]


@pytest.mark.parametrize("name, info, says", [
    ("torch", {"version": "2.13.0", "mps_built": False, "mps_available": False}, "built without MPS"),
    ("torch", {"version": "2.13.0", "mps_built": True, "mps_available": False}, "macOS 12.3+"),
    ("tensorflow", {"version": "2.21.0", "gpus": [], "metal_plugin": None}, "pip install tensorflow-metal"),
    ("tensorflow", {"version": "2.21.0", "gpus": [], "metal_plugin": "1.2.0"}, "did not load"),
    ("jax", {"version": "0.10.2", "metal": False, "metal_plugin": "0.1.1"}, "shows no METAL device"),
])
def test_a_missing_metal_path_falls_back_to_the_cpu_with_the_reason(name, info, says):
    row = metal.check(name, info)
    assert row["device"] == "cpu" and not row["metal"] and says in row["message"]
    strict = metal.check(name, info, device_flag="mps")  # asked for the GPU explicitly: not run
    assert strict["device"] is None and "not run (--device mps)" in strict["message"]


def test_a_framework_that_cannot_import_is_not_run_and_tensorflow_gets_the_plugin_hint():
    row = metal.check("tensorflow", {"error": "NotFoundError: dlopen(libmetal_plugin.dylib): Symbol not found"})
    assert row["device"] is None and "pip uninstall tensorflow-metal" in row["message"]


def test_device_cpu_skips_the_question():
    assert metal.check("torch", {"error": "anything"}, device_flag="cpu")["device"] == "cpu"


@pytest.mark.parametrize("system, machine, says", [("Linux", "x86_64", "not macOS"),
                                                   ("Darwin", "x86_64", "Rosetta")])
def test_not_an_apple_silicon_mac_is_one_clear_error(system, machine, says):
    with pytest.raises(UserError, match=says):
        metal.plan(["torch"], facts={"torch": TORCH_MPS}, system=system, machine=machine)


def test_preflight_checks_only_m1_and_m1_defaults_to_auto():
    assert platforms.device_for("m1", None) == "auto"  # each framework's backend then takes its Metal device
    assert platforms.preflight("cuda", ["torch", "jax"], None, log=None) == {"torch": "cuda", "jax": "cuda"}
    with pytest.raises(UserError, match="not macOS"):  # this Linux machine
        platforms.preflight("m1", ["torch"], None, log=None)


@needs_torch
def test_this_machines_real_torch_seen_as_if_on_a_mac():
    from runner.machine import buildinfo

    facts = buildinfo.finish(buildinfo.start(["torch"]))
    (row,) = metal.plan(["torch"], facts=facts, **MAC)
    assert row["device"] == "cpu" and "built without MPS" in row["message"]  # a Linux CPU wheel


def test_setup_script_parses():
    import subprocess

    from conftest import ROOT

    subprocess.run(["bash", "-n", str(ROOT / "platforms/m1/setup.sh")], check=True)


@pytest.mark.slow
def test_macos_lock_resolves_for_macos_arm64_and_matches_its_inputs():
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from conftest import ROOT

    uv = Path(sys.executable).parent / "uv"
    uv = str(uv) if uv.exists() else shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not installed: pip install uv")
    done = subprocess.run(["bash", str(ROOT / "platforms/m1/lock.sh"), "--check"], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "UV": uv})
    assert done.returncode == 0, done.stdout + done.stderr
    lock = (ROOT / "platforms/m1/requirements.lock").read_text()
    for pin in ("torch==2.13.0 ", "tensorflow==2.18.1 ", "tensorflow-metal==1.2.0 ", "jax==0.10.2 "):
        assert pin in lock
