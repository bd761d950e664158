"""Shared test setup: every cache in a temp dir, a synthetic dataset folder, a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# 8 virtual CPU devices for JAX, set before anything imports it: the backend's data-parallel option
# (jax.devices=2|4|8|all) passes the parity gate in-process like every other option; a one-device run
# still uses one.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
FRAMEWORK_MODULES = ("torch", "tensorflow", "keras", "jax", "flax", "juliacall")


@pytest.fixture(autouse=True, scope="session")
def _isolated_caches(tmp_path_factory):
    """Keep dlbench's and frameworks' caches out of the user's home."""
    tmp = tmp_path_factory.mktemp("caches")
    saved = dict(os.environ)
    os.environ.update(DLBENCH_CACHE_DIR=str(tmp / "dlbench"), DLBENCH_OFFLINE="1",
                      XDG_CACHE_HOME=str(tmp / "xdg"), TORCHINDUCTOR_CACHE_DIR=str(tmp / "inductor"),
                      KERAS_HOME=str(tmp / "keras"))  # importing keras writes keras.json there
    os.environ.pop("DLBENCH_DATA_DIR", None)
    os.environ.pop("DLBENCH_PLATFORM", None)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory, _isolated_caches) -> Path:
    """A folder holding the verified synthetic IDX dataset."""
    from runner.data import store

    return store.ensure("synthetic", tmp_path_factory.mktemp("synthetic"), log=lambda m: None)


def local_slurm(work: Path, nodes: int = 1):
    """Start scripts/slurm-local.sh in `work` (`nodes` slurmd on this host), point SLURM_CONF at it for
    every subprocess, yield `work`, then stop it and restore SLURM_CONF. Skips with the script's reason
    where it cannot run (not root, no apt, Slurm's fixed ports taken by another local cluster). For
    fixtures: `yield from local_slurm(...)`."""
    import time
    script = ROOT / "scripts" / "slurm-local.sh"
    t0 = time.monotonic()
    out = subprocess.run(["bash", str(script), "start", str(work), str(nodes)], capture_output=True, text=True,
                         timeout=600)
    if out.returncode == 3:
        pytest.skip(f"no local Slurm: {out.stderr.strip().splitlines()[-1]}")
    assert out.returncode == 0, out.stderr
    saved = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(work / "slurm.conf")
    print(f"\nslurm-local ({nodes} node(s)): up in {time.monotonic() - t0:.1f} s")
    try:
        yield work
    finally:
        subprocess.run(["bash", str(script), "stop", str(work)], timeout=120)
        if saved is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = saved


def run_cli(*args, timeout=300, **kwargs) -> subprocess.CompletedProcess:
    """`python -m runner ARGS` in a subprocess, as a user would type it."""
    return subprocess.run([sys.executable, "-m", "runner", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, **kwargs)


def has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def has_torch() -> bool:
    return has("torch")


needs_torch = pytest.mark.skipif(not has_torch(), reason="PyTorch is not installed: pip install 'dlbench[torch]'")
needs_tf = pytest.mark.skipif(not has("tensorflow"), reason="TensorFlow is not installed: pip install 'dlbench[tensorflow]'")
needs_jax = pytest.mark.skipif(not has("jax"), reason="JAX is not installed: pip install 'dlbench[jax]'")


def julia_missing() -> str | None:
    """Why the flux backend cannot run here (runner.backends.julia_env.check, no import), or None."""
    from runner.backends import julia_env
    from runner.backends.base import FrameworkUnavailable

    try:
        julia_env.check()
    except FrameworkUnavailable as e:
        return str(e)
    return None


_JULIA_MISSING = julia_missing()
needs_julia = [pytest.mark.julia, pytest.mark.skipif(_JULIA_MISSING is not None, reason=f"flux: {_JULIA_MISSING}")]
# (framework, its skip mark) for tests that run every backend
FRAMEWORKS = [pytest.param("torch", marks=needs_torch), pytest.param("tensorflow", marks=needs_tf),
              pytest.param("jax", marks=needs_jax), pytest.param("flux", marks=needs_julia)]
