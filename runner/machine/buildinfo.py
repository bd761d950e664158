"""How a framework was built and what it sees: versions, CUDA/cuDNN, devices, threads.

    python -m runner.machine.buildinfo torch|tensorflow|jax|flux     # one JSON object on stdout
    python -m runner probe                              # every installed framework, in parallel

The framework is imported inside collect() only, and the probe runs each one in a process of its own
(as a run does), so one framework's import can neither crash nor slow down another's. Every field
soft-fails: null, with the reason in the result's `errors`.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import time

from runner.errors import reason

TIMEOUT_S = 120  # importing TensorFlow on a busy 2-core VM takes tens of seconds



def cuda_version(v: int) -> str:
    return f"{v // 1000}.{v % 1000 // 10}"  # CUDA's encoding: 12080 -> 12.8


def cudnn_version(v: int) -> str:
    # cuDNN 9 encodes major*10000 + minor*100 + patch (90100 = 9.1.0); cuDNN 8 used major*1000 (8902)
    major, rest = (v // 10000, v % 10000) if v >= 10000 else (v // 1000, v % 1000)
    return f"{major}.{rest // 100}.{rest % 100}"


def _package(*names: str) -> str | None:
    """The version of the first of these distributions that is installed (plugins ship apart)."""
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return None


def _torch(field):
    import torch

    field("version", lambda: torch.__version__)
    field("cuda", lambda: torch.version.cuda)            # None: a CPU (or ROCm) build
    field("hip", lambda: torch.version.hip)              # ROCm builds
    field("cudnn", lambda: (v := torch.backends.cudnn.version()) and cudnn_version(v))
    field("cuda_available", torch.cuda.is_available)
    field("gpu_count", torch.cuda.device_count)
    field("gpu_names", lambda: [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])
    field("mps_built", torch.backends.mps.is_built)
    field("mps_available", torch.backends.mps.is_available)
    field("threads", torch.get_num_threads)
    field("interop_threads", torch.get_num_interop_threads)


def _tensorflow(field):
    import tensorflow as tf

    build = field("build_info", lambda: dict(tf.sysconfig.get_build_info()), keep=False) or {}
    field("version", lambda: tf.__version__)
    field("built_with_cuda", tf.test.is_built_with_cuda)
    field("cuda", lambda: build.get("cuda_version"))      # absent from CPU-only builds
    field("cudnn", lambda: build.get("cudnn_version"))
    gpus = field("gpu_devices", lambda: tf.config.list_physical_devices("GPU"), keep=False) or []
    field("gpus", lambda: [tf.config.experimental.get_device_details(d).get("device_name", d.name) for d in gpus])
    field("intra_op_threads", tf.config.threading.get_intra_op_parallelism_threads)  # 0: TF picks
    field("inter_op_threads", tf.config.threading.get_inter_op_parallelism_threads)
    field("metal_plugin", lambda: _package("tensorflow-metal"))


def _jax(field):
    import jax

    field("version", lambda: jax.__version__)
    field("jaxlib", lambda: _package("jaxlib"))
    field("default_backend", jax.default_backend)
    devices = field("devices", lambda: [{"platform": d.platform, "device_kind": d.device_kind}
                                        for d in jax.devices()]) or []
    field("cuda_plugin", lambda: _package("jax-cuda13-plugin", "jax-cuda12-plugin"))

    def versions():  # the CUDA plugin's own module; None where no CUDA plugin is installed
        from jax._src.lib import cuda_versions

        return cuda_versions

    cv = field("cuda_versions", versions, keep=False)
    field("cuda", lambda: cv and cuda_version(cv.cuda_runtime_get_version()))
    field("cudnn", lambda: cv and cudnn_version(cv.cudnn_get_version()))
    field("metal", lambda: any(d["platform"].upper() == "METAL" for d in devices))
    field("metal_plugin", lambda: _package("jax-metal"))


def _flux(field):
    # Starts Julia through juliacall only where julia_env finds Julia and an instantiated
    # environment; otherwise FrameworkUnavailable (no download), reported as {'error': ...}.
    from runner.backends import julia_env

    field("settings", julia_env.settings)  # before Julia starts: they decide how it starts
    jl = julia_env.load()
    info = json.loads(str(jl.DLBenchFlux.build_info("cpu")))
    field("version", lambda: info.get("flux"))
    for key in ("julia", "optimisers", "zygote", "nnlib", "julia_threads", "blas_threads", "blas"):
        field(key, lambda key=key: info.get(key))
    field("juliacall", lambda: _package("juliacall"))
    for device in ("cuda", "metal"):
        field(f"{device}_available", lambda d=device: julia_env.use_gpu_package(jl, d))


COLLECTORS = {"torch": _torch, "tensorflow": _tensorflow, "jax": _jax, "flux": _flux}


def collect(name: str) -> dict:
    """Build facts of one framework (imported here); {'error': reason} if it cannot be imported."""
    out: dict = {}
    errors: dict[str, str] = {}

    def field(key, fn, keep=True):
        try:
            value = fn()
        except Exception as e:  # a probe must never take a run down
            errors[key] = reason(e)
            value = None
        if keep:
            out[key] = value
        return value

    if name not in COLLECTORS:
        return {"error": f"unknown framework {name!r} (choose from {', '.join(COLLECTORS)})"}
    try:
        COLLECTORS[name](field)
    except Exception as e:  # the import itself failed
        return {"error": reason(e)}
    out["errors"] = errors
    return out


def start(names: list[str] | None = None) -> dict[str, subprocess.Popen]:
    """One `python -m runner.machine.buildinfo NAME` per installed framework (default), all at once."""
    from runner import backends

    names = [n for n in backends.names() if backends.installed(n)] if names is None else names
    from runner.backends.interpreters import python_for

    # each framework with the interpreter of its environment (an image may hold several: runner.backends.interpreters)
    return {n: subprocess.Popen([python_for(n), "-m", "runner.machine.buildinfo", n], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for n in names}


def finish(procs: dict[str, subprocess.Popen], timeout: float = TIMEOUT_S) -> dict:
    """{name: collect(name), or {'error': reason}} from start()'s processes."""
    deadline, out = time.monotonic() + timeout, {}
    for name, proc in procs.items():
        try:
            stdout, stderr = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            out[name] = {"error": f"python -m runner.machine.buildinfo {name} took over {timeout:.0f} s"}
            continue
        try:  # the JSON is the last line; whatever the framework printed went to stderr
            out[name] = json.loads(stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            last = (stderr.strip().splitlines() or ["no output"])[-1]
            out[name] = {"error": f"python -m runner.machine.buildinfo {name} exited {proc.returncode}: {last}"}
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in COLLECTORS:
        print(f"usage: python -m runner.machine.buildinfo {{{','.join(COLLECTORS)}}}", file=sys.stderr)
        return 2
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)  # frameworks print banners, even from C++: keep stdout for the JSON alone
    try:
        info = collect(argv[0])
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
    print(json.dumps(info))
    return 1 if "error" in info else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
