"""What machine is this: CPU, memory, GPUs, OS, software versions. Fails soft, field by field.

    python -m runner probe [--json]

Every field that cannot be read is null and its reason goes into `errors`: never a crash, never a
guess. py-cpuinfo takes about a second, so the probe runs once per `run` (in the parent) and never
at import.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import subprocess
from pathlib import Path

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
               "TF_NUM_INTEROP_THREADS", "XLA_FLAGS", "JULIA_NUM_THREADS", "CUDA_VISIBLE_DEVICES")
PACKAGES = ("dlbench", "numpy", "torch", "tensorflow", "tensorflow-cpu", "keras", "jax", "jaxlib",
            "flax", "optax", "equinox", "juliacall", "nvidia-ml-py", "psutil", "py-cpuinfo")


class _Soft:
    """Collects the reason for every field that could not be read."""

    def __init__(self):
        self.errors: dict[str, str] = {}

    def __call__(self, key: str, fn):
        try:
            return fn()
        except Exception as e:  # a probe must never take a run down
            self.errors[key] = f"{type(e).__name__}: {e}".strip()
            return None


def _cpu_brand() -> str | None:
    try:
        import cpuinfo

        return cpuinfo.get_cpu_info()["brand_raw"]
    except Exception:  # py-cpuinfo missing or confused: the OS' own (often vaguer) name
        return platform.processor() or None


def _gpus() -> list[dict]:
    import pynvml  # from nvidia-ml-py

    pynvml.nvmlInit()
    try:
        out = []
        driver = pynvml.nvmlSystemGetDriverVersion()
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(h)
            out.append({"index": i, "name": name.decode() if isinstance(name, bytes) else name,
                        "uuid": _str(pynvml.nvmlDeviceGetUUID(h)),
                        "memory_total_bytes": int(pynvml.nvmlDeviceGetMemoryInfo(h).total),
                        "driver": _str(driver)})
        return out
    finally:
        pynvml.nvmlShutdown()


def _str(x) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def hardware() -> dict:
    import psutil

    soft = _Soft()
    out = {
        "cpu": soft("cpu", _cpu_brand),
        "cores": soft("cores", lambda: psutil.cpu_count(logical=False)),
        "logical_cores": soft("logical_cores", lambda: psutil.cpu_count(logical=True)),
        "memory_bytes": soft("memory_bytes", lambda: int(psutil.virtual_memory().total)),
        "gpus": soft("gpus", _gpus) or [],
    }
    out["errors"] = soft.errors
    return out


def load_avg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # not on every OS
        return None


def thread_env() -> dict[str, str]:
    return {k: os.environ[k] for k in THREAD_VARS if k in os.environ}


def environment() -> dict:
    soft = _Soft()
    out = {
        "hostname": soft("hostname", socket.gethostname),
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "load_avg": load_avg(),
        "thread_env": thread_env(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
    }
    out["errors"] = soft.errors
    return out


def software() -> dict:
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    from runner import __version__

    return {"python": platform.python_version(), "implementation": platform.python_implementation(),
            "packages": packages, "runner_version": __version__, "runner_git_sha": git_sha()}


def git_sha() -> str | None:
    """The commit of the runner's source tree, '+dirty' if it has uncommitted changes; None when the
    runner is not running from a git checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return None


def probe() -> dict:
    from runner import platforms

    return {"platform": platforms.resolve(None), "hardware": hardware(), "environment": environment(),
            "software": software()}
