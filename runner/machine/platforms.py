"""Which platform a run is on: --platform, else $DLBENCH_PLATFORM, else detection.

    python -m runner run --platform m1          # + preflight(): which framework reaches the Apple GPU
    DLBENCH_PLATFORM=cuda python -m runner run

The record keeps both the name and how it was decided (platform.source: flag | env | detected).
"""

from __future__ import annotations

import os
import platform as _platform
import sys
from pathlib import Path

from runner.machine import where
from runner.errors import UserError

# name -> the device a run on it asks its framework for when --device is not given
PLATFORMS: dict[str, str] = {
    "local": "auto",    # a plain machine, nothing else detected
    "cpu": "cpu",       # any machine, forced onto the CPU
    "cuda": "cuda",     # a GPU box or cloud VM (e.g. Jetstream)
    "docker": "auto",   # inside a Docker/podman container (dlbench:cuda, dlbench:cpu)
    "m1": "auto",       # Apple Silicon: each framework on its Metal path (MPS, tensorflow-metal, jax-metal) where
                        # runner.machine.metal finds one, else the CPU, saying why (preflight below)
    "colab": "auto",
    "kaggle": "auto",
    "jupyterhub": "auto",  # a JupyterHub server (platforms/notebook/ runs there too)
    "slurm": "auto",    # a task of a Slurm job (array)
}

DEVICES = ("auto", "cpu", "cuda", "mps")


def detect(environ=os.environ, root: Path = where.ROOT) -> str:
    """The most specific platform the machine shows (runner.machine.where reads the signs; `root` stands in
    for / in tests): notebooks and Slurm run inside containers, so they come first."""
    notebook = where.notebook(environ, modules={})["kind"]
    if notebook in ("colab", "kaggle", "jupyterhub"):
        return notebook
    if where.scheduler(environ):
        return "slurm"
    if where.container(environ, root)["kind"] in ("docker", "podman", "kubernetes"):  # OCI images
        return "docker"
    if sys.platform == "darwin" and _platform.machine() == "arm64":
        return "m1"
    if sys.platform.startswith("linux") and where.nvidia_gpus(root):  # the NVIDIA driver registered GPUs
        return "cuda"
    return "local"


def resolve(flag: str | None, environ=os.environ) -> dict[str, str]:
    """{'name', 'source'} for the run's platform; UserError for a name dlbench does not know."""
    if flag:
        name, source = flag, "flag"
    elif environ.get("DLBENCH_PLATFORM"):
        name, source = environ["DLBENCH_PLATFORM"], "env"
    else:
        name, source = detect(environ), "detected"
    if name not in PLATFORMS:
        origin = "--platform" if source == "flag" else "DLBENCH_PLATFORM"
        raise UserError(f"unknown platform {name!r} from {origin} (choose from {', '.join(PLATFORMS)})")
    return {"name": name, "source": source}


def device_for(platform_name: str, device_flag: str | None) -> str:
    return device_flag or PLATFORMS[platform_name]


def preflight(platform_name: str, frameworks: list[str], device_flag: str | None, log=print) -> dict[str, str | None]:
    """Checks, before any worker starts, what the platform needs per framework; {framework: device} (None:
    do not run it). Only m1 has something to check today (runner.machine.metal): MPS / Metal per framework,
    one clear line each. UserError when --platform m1 is asked for on a machine that is not an Apple-Silicon Mac."""
    if platform_name != "m1":
        return {f: device_for(platform_name, device_flag) for f in frameworks}
    from runner.machine import metal

    rows = metal.plan(frameworks, device_flag)
    log(metal.render(rows))
    return {r["framework"]: r["device"] for r in rows}


def on_cuda(device: str) -> bool:
    """Whether a run asked for `device` runs on a CUDA GPU: asked for, or "auto" where an NVIDIA GPU is
    seen (NVML, as the record's probe; the parent imports no framework)."""
    if device == "auto":
        from runner.machine import probe

        return bool(probe.gpus({}))
    return device == "cuda" or device.startswith("cuda:")
