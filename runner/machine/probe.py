"""What machine is this: CPU, memory, GPUs, where it runs, software and framework builds.

    python -m runner probe [--json] [--no-frameworks]

Every field that cannot be read is null and its reason goes into `errors` ({field: reason}): never a
crash, never a guess. py-cpuinfo takes about a second, so it runs at most once per process and never at
import; the run's parent probes the hardware once and hands it to every worker. Environment detection
lives in runner.machine.where, framework build facts in runner.machine.buildinfo (one subprocess per framework).
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import socket
import subprocess
from pathlib import Path

from runner.measure import nvml
from runner.machine import where
from runner.machine.buildinfo import cuda_version
from runner.errors import reason

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
               "TF_NUM_INTEROP_THREADS", "XLA_FLAGS", "JULIA_NUM_THREADS", "CUDA_VISIBLE_DEVICES")
PACKAGES = ("dlbench", "numpy", "torch", "tensorflow", "tensorflow-cpu", "keras", "jax", "jaxlib",
            "flax", "optax", "equinox", "juliacall", "nvidia-ml-py", "psutil", "py-cpuinfo")
Unknown = where.Unknown


class _Soft:
    """Reads one field; on failure stores the reason under `prefix + key` and gives None."""

    def __init__(self, errors: dict[str, str] | None = None, prefix: str = ""):
        self.errors = {} if errors is None else errors
        self.prefix = prefix

    def __call__(self, key: str, fn, *args):
        try:
            return fn(*args)
        except Exception as e:  # a probe must never take a run down
            self.errors[self.prefix + key] = str(e) if isinstance(e, Unknown) else reason(e)
            return None



# ---- hardware -------------------------------------------------------------------------------------

@functools.cache
def _cpuinfo() -> dict:
    import cpuinfo  # py-cpuinfo: ~1 s (it may spawn a helper process), so once per process

    return cpuinfo.get_cpu_info()


def _known(value, why: str):
    if not value:  # psutil and py-cpuinfo say "unknown" with None, 0 or ""
        raise Unknown(why)
    return value


def _flags(info: dict, arch: str | None) -> dict:
    if (arch or "").lower() in ("arm64", "aarch64"):
        # AdvSIMD (NEON) is mandatory in ARMv8-A AArch64, so every 64-bit Arm CPU has it even where no
        # flag list can be read (macOS); the x86 extensions cannot exist there ("amx" means Intel AMX,
        # not Apple's undocumented matrix unit).
        return {"avx2": False, "avx512f": False, "amx": False, "neon": True}
    flags = set(_known(info.get("flags"), "py-cpuinfo read no CPU flag list"))
    return {"avx2": "avx2" in flags, "avx512f": "avx512f" in flags,
            "amx": bool(flags & {"amx_tile", "amx_bf16", "amx_int8"}), "neon": bool(flags & {"asimd", "neon"})}


def _freq(soft: _Soft, info: dict) -> dict:
    import psutil

    f = soft("cpu.freq_mhz", psutil.cpu_freq)
    out = {k: round(getattr(f, k), 1) if f is not None and getattr(f, k, 0) > 0 else None
           for k in ("current", "min", "max")}
    advertised, actual = info.get("hz_advertised"), info.get("hz_actual")
    # py-cpuinfo copies the current clock into hz_advertised when the brand string names no clock;
    # only a clock the brand names ("... @ 2.60GHz", the nominal clock) is a fact worth keeping.
    if out["max"] is None and advertised and advertised != actual and advertised[0] > 0:
        out["max"] = round(advertised[0] / 1e6, 1)
    for k, v in out.items():
        if v is None and "cpu.freq_mhz" not in soft.errors:
            soft.errors[f"cpu.freq_mhz.{k}"] = "the OS reports none (a VM, or no cpufreq driver)"
    return out


def _usable_cores() -> int:
    if not hasattr(os, "sched_getaffinity"):
        raise Unknown(f"no CPU affinity API on {platform.system()}")
    return len(os.sched_getaffinity(0))


def cpu(errors: dict[str, str]) -> dict:
    import psutil

    soft = _Soft(errors)
    try:
        info, why = _cpuinfo(), "py-cpuinfo does not say"
    except Exception as e:  # not installed, or confused by an unusual system
        info, why = {}, f"py-cpuinfo failed ({reason(e)})"
    arch = platform.machine() or None
    return {
        "brand": soft("cpu.brand", lambda: _known(info.get("brand_raw") or platform.processor(), why)),
        "vendor": soft("cpu.vendor", lambda: _known(info.get("vendor_id_raw"), why)),
        "arch": soft("cpu.arch", _known, arch, "platform.machine() is empty"),
        "physical_cores": soft("cpu.physical_cores", lambda: _known(psutil.cpu_count(logical=False),
                                                                    "psutil cannot count physical cores here")),
        "logical_cores": soft("cpu.logical_cores", lambda: _known(psutil.cpu_count(logical=True),
                                                                  "psutil cannot count logical cores here")),
        "usable_cores": soft("cpu.usable_cores", _usable_cores),
        "freq_mhz": _freq(soft, info),
        "flags": soft("cpu.flags", _flags, info, arch),
    }


GPU_FIELDS = {  # field -> reader(pynvml, handle), in NVML's units converted to the field's
    "name": lambda nv, h: nvml.text(nv.nvmlDeviceGetName(h)),
    "uuid": lambda nv, h: nvml.text(nv.nvmlDeviceGetUUID(h)),
    "memory_total_bytes": lambda nv, h: int(nv.nvmlDeviceGetMemoryInfo(h).total),
    "driver_version": lambda nv, h: nvml.text(nv.nvmlSystemGetDriverVersion()),
    "cuda_driver_version": lambda nv, h: cuda_version(nv.nvmlSystemGetCudaDriverVersion()),
    "compute_capability": lambda nv, h: "{}.{}".format(*nv.nvmlDeviceGetCudaComputeCapability(h)),
    "power_limit_w": lambda nv, h: nv.nvmlDeviceGetPowerManagementLimit(h) / 1000,  # mW
    "max_sm_clock_mhz": lambda nv, h: int(nv.nvmlDeviceGetMaxClockInfo(h, nv.NVML_CLOCK_SM)),
    "max_memory_clock_mhz": lambda nv, h: int(nv.nvmlDeviceGetMaxClockInfo(h, nv.NVML_CLOCK_MEM)),
    "pcie_max_gen": lambda nv, h: int(nv.nvmlDeviceGetMaxPcieLinkGeneration(h)),
    "pcie_max_width": lambda nv, h: int(nv.nvmlDeviceGetMaxPcieLinkWidth(h)),
    "pcie_gen": lambda nv, h: int(nv.nvmlDeviceGetCurrPcieLinkGeneration(h)),
    "pcie_width": lambda nv, h: int(nv.nvmlDeviceGetCurrPcieLinkWidth(h)),
}
_NVML_HINTS = {"NVMLError_LibraryNotFound": "no NVIDIA driver",
               "NVMLError_DriverNotLoaded": "the NVIDIA driver is installed but not loaded",
               "NVMLError_NoPermission": "no permission to open the GPU devices"}


def _gpu(nv, index: int, handle, soft: _Soft) -> dict:
    return {"index": index, **{k: soft(k, read, nv, handle) for k, read in GPU_FIELDS.items()}}


def gpus(errors: dict[str, str]) -> list[dict] | None:
    """Every GPU NVML sees; None (not []: we do not know there are none) when NVML cannot start."""
    try:
        with nvml.session() as nv:
            return [_gpu(nv, i, h, _Soft(errors, f"gpus[{i}].")) for i, h in nvml.handles(nv)]
    except ImportError as e:
        errors["gpus"] = f"NVML unavailable ({reason(e)}): pip install nvidia-ml-py"
    except Exception as e:
        hint = _NVML_HINTS.get(type(e).__name__)
        errors["gpus"] = f"NVML unavailable ({reason(e)})" + (f": {hint}" if hint else "")
    return None


def hardware() -> dict:
    import psutil

    errors: dict[str, str] = {}
    return {"cpu": cpu(errors),
            "memory_bytes": _Soft(errors)("memory_bytes", lambda: int(psutil.virtual_memory().total)),
            "gpus": gpus(errors), "errors": errors}


# ---- environment ----------------------------------------------------------------------------------

def load_avg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # not on every OS
        return None


def thread_env() -> dict[str, str]:
    return {k: os.environ[k] for k in THREAD_VARS if k in os.environ}


def environment(environ=os.environ, root: Path = where.ROOT, dmi: Path = where.DMI) -> dict:
    soft = _Soft()
    out = {
        "hostname": soft("hostname", socket.gethostname),
        "os": soft("os", where.os_info),
        "container": soft("container", where.container, environ, root),
        "image": soft("image", where.image, environ),
        "notebook": soft("notebook", where.notebook, environ),
        "scheduler": soft("scheduler", where.scheduler, environ),
        "cloud": soft("cloud", where.cloud, dmi),
        "apple_chip": soft("apple_chip", where.apple_chip),
        "thread_env": thread_env(),
    }
    for field in where.DMI_FIELDS:
        if out["cloud"] is not None and out["cloud"][field] is None:
            soft.errors[f"cloud.{field}"] = f"{dmi / field} is missing, empty or unreadable"
    out["errors"] = soft.errors
    return out


# ---- software -------------------------------------------------------------------------------------

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
    """The commit of the runner's source tree, '+dirty' if it has uncommitted changes; else
    $DLBENCH_GIT_SHA, which builds without a checkout set (the images, from their REVISION build
    argument); None when neither says."""
    root = Path(__file__).resolve().parent.parent
    if not (root.parent / ".git").exists():  # installed or copied sources: git would find no repo, or a wrong one
        return os.environ.get("DLBENCH_GIT_SHA") or None
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


def probe(frameworks: bool = True) -> dict:
    """Everything above; `frameworks` also imports each installed framework (in its own process,
    started first so that they load while the hardware is probed)."""
    from runner.machine import buildinfo, platforms

    procs = buildinfo.start() if frameworks else {}
    try:
        env = environment()
        env["load_avg"] = load_avg()
        info = {"platform": platforms.resolve(None), "hardware": hardware(), "environment": env,
                "software": software(), "frameworks": buildinfo.finish(procs) if frameworks else None}
    finally:
        for proc in procs.values():  # only left running if something above raised
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return info


# ---- text -----------------------------------------------------------------------------------------

def _gpu_line(g: dict) -> str:
    parts = [g["name"] or "unnamed GPU"]
    if g["memory_total_bytes"]:
        parts.append(f"{g['memory_total_bytes'] / 2**30:.1f} GiB")
    if g["compute_capability"]:
        parts.append(f"cc {g['compute_capability']}")
    if g["power_limit_w"]:
        parts.append(f"{g['power_limit_w']:.0f} W")
    if g["pcie_gen"]:
        parts.append(f"PCIe gen{g['pcie_gen']} x{g['pcie_width']} (max gen{g['pcie_max_gen']} x{g['pcie_max_width']})")
    parts.append(f"driver {g['driver_version']} (CUDA {g['cuda_driver_version']})")
    return ", ".join(parts)


def _framework_line(b: dict) -> str:
    if "error" in b:
        return f"failed: {b['error']}"
    if "default_backend" in b:  # jax
        devices = ", ".join(f"{d['platform']}:{d['device_kind']}" for d in b["devices"] or []) or "?"
        return (f"{b['version']} (jaxlib {b['jaxlib']}): CUDA runtime {b['cuda'] or '-'}, cuDNN {b['cudnn'] or '-'};"
                f" backend {b['default_backend']}, devices {devices}")
    if "built_with_cuda" in b:  # tensorflow
        return (f"{b['version']}: built for CUDA {b['cuda'] or '-'}, cuDNN {b['cudnn'] or '-'}; GPUs"
                f" {', '.join(b['gpus']) if b['gpus'] else 'none'}; threads intra {b['intra_op_threads']},"
                f" inter {b['inter_op_threads']} (0 = TF picks)")
    devices = ", ".join(b.get("gpu_names") or []) or ("mps" if b.get("mps_available") else "cpu only")
    return (f"{b.get('version')}: built for CUDA {b.get('cuda') or '-'}, cuDNN {b.get('cudnn') or '-'};"
            f" devices {devices};"
            f" threads {b.get('threads')} (interop {b.get('interop_threads')})")


def _image_line(image: dict | None) -> str:
    if not image:
        return "none (not a dlbench image)"
    locks = ", ".join(f"{name} sha256 {str(sha)[:12]}" for name, sha in (image.get("locks") or {}).items())
    return f"{image.get('image')} {image.get('version')} (revision {image.get('revision')}; {locks or 'no lock'})"


def render(info: dict) -> str:
    """The probe as aligned `name  value` lines, then every unreadable field as `(field)  reason`."""
    hw, env, sw, cpu_ = info["hardware"], info["environment"], info["software"], info["hardware"]["cpu"]
    errors = {**hw["errors"], **env["errors"]}
    flags = [k for k, v in (cpu_["flags"] or {}).items() if v]
    lines = [("platform", f"{info['platform']['name']} ({info['platform']['source']})"),
             ("cpu", f"{cpu_['brand']} ({cpu_['vendor']}, {cpu_['arch']}): {cpu_['physical_cores']} physical,"
                     f" {cpu_['logical_cores']} logical, {cpu_['usable_cores']} usable cores; flags"
                     f" {' '.join(flags) if cpu_['flags'] is not None else 'unknown'}"),
             ("memory", f"{hw['memory_bytes'] / 2**30:.1f} GiB" if hw["memory_bytes"] else None)]
    if hw["gpus"] is None:
        lines.append(("gpus", f"unknown: {errors.pop('gpus', '')}"))
    else:
        lines += [(f"gpu {g['index']}", _gpu_line(g)) for g in hw["gpus"]] or [("gpus", "none (NVML sees no GPU)")]
    os_, box, nb = env["os"] or {}, env["container"] or {}, env["notebook"] or {}
    job, cloud = env["scheduler"], env["cloud"]
    lines += [("os", f"{os_.get('system')} {os_.get('release')}, {os_.get('distro') or 'distro unknown'}"),
              ("container", f"{box['kind']} ({box['evidence']})" if box.get("kind") else "none detected"),
              ("image", _image_line(env.get("image"))),
              ("notebook", nb.get("kind") or "none"),
              ("scheduler", "none" if not job else ", ".join(f"{k} {v}" for k, v in job.items() if v is not None)),
              ("cloud", None if cloud is None else f"{cloud['provider'] or 'none detected'}"
                                                   f" ({cloud['sys_vendor']} / {cloud['product_name']})")]
    if env["apple_chip"]:
        lines.append(("apple chip", env["apple_chip"]))
    lines.append(("python", f"{sw['python']} ({sw['implementation']})"))
    if not info["frameworks"]:
        lines.append(("frameworks", "not probed (--no-frameworks)" if info["frameworks"] is None else "none installed"))
    for name, b in (info["frameworks"] or {}).items():
        lines.append((name, _framework_line(b)))
        errors.update({f"{name}.{k}": v for k, v in b.get("errors", {}).items()})
    lines += [(f"({key})", reason) for key, reason in errors.items()]
    width = max(len(k) for k, _ in lines)
    return "\n".join(f"{k:<{width}}  {v if v is not None else 'unknown'}" for k, v in lines)
