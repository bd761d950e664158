"""A stand-in for the `pynvml` module (nvidia-ml-py), for tests on machines without an NVIDIA driver.

Only the calls dlbench makes, with NVML's units (mW, mJ, MHz, bytes) and its error classes.
Inject it with `monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml.make([...]))`.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field

NVML_CLOCK_SM, NVML_CLOCK_MEM = 1, 2


class NVMLError(Exception):
    pass


class NVMLError_NotSupported(NVMLError):
    def __str__(self):
        return "Not Supported"


class NVMLError_LibraryNotFound(NVMLError):
    def __str__(self):
        return "NVML Shared Library Not Found"


@dataclass
class GPU:
    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-11111111-2222-3333-4444-555555555555"
    memory_total: int = 85_520_809_984
    memory_used: int = 1_000_000_000
    compute_capability: tuple = (9, 0)
    power_limit_mw: int = 700_000
    max_sm_mhz: int = 1980
    max_mem_mhz: int = 2619
    pcie: tuple = (5, 16, 5, 16)          # max gen, max width, current gen, current width
    util: int = 87
    power_mw: int = 250_000
    sm_mhz: int = 1755
    energy_mj: int | None = 1_000_000     # None: the counter is not supported (pre-Volta)
    energy_step_mj: int = 0               # added to the counter on every read
    unsupported: set = field(default_factory=set)  # NVML function names that raise NotSupported
    # PIDs with a compute / graphics context on this GPU, as NVML lists them (settable mid-test)
    compute_pids: list = field(default_factory=list)
    graphics_pids: list = field(default_factory=list)


def make(gpus: list[GPU], driver="560.35.03", cuda_driver=12060, init_error: Exception | None = None):
    """A fake pynvml module with these GPUs; `init_error` makes nvmlInit raise it."""
    m = types.ModuleType("pynvml")
    m.NVMLError, m.NVMLError_NotSupported, m.NVMLError_LibraryNotFound = (
        NVMLError, NVMLError_NotSupported, NVMLError_LibraryNotFound)
    m.NVML_CLOCK_SM, m.NVML_CLOCK_MEM = NVML_CLOCK_SM, NVML_CLOCK_MEM
    m.state = {"initialized": 0, "shutdowns": 0}

    def nvmlInit():
        if init_error is not None:
            raise init_error
        m.state["initialized"] += 1

    def nvmlShutdown():
        m.state["shutdowns"] += 1

    def api(name, fn):
        def call(handle, *args):
            if name in handle.unsupported:
                raise NVMLError_NotSupported()
            return fn(handle, *args)
        setattr(m, name, call)

    def energy(g):
        if g.energy_mj is None:
            raise NVMLError_NotSupported()
        g.energy_mj += g.energy_step_mj
        return g.energy_mj

    m.nvmlInit, m.nvmlShutdown = nvmlInit, nvmlShutdown
    m.nvmlSystemGetDriverVersion = lambda: driver
    m.nvmlSystemGetCudaDriverVersion = lambda: cuda_driver
    m.nvmlDeviceGetCount = lambda: len(gpus)
    m.nvmlDeviceGetHandleByIndex = lambda i: gpus[i]
    api("nvmlDeviceGetName", lambda g: g.name)
    api("nvmlDeviceGetUUID", lambda g: g.uuid)
    api("nvmlDeviceGetMemoryInfo", lambda g: types.SimpleNamespace(total=g.memory_total, used=g.memory_used,
                                                                    free=g.memory_total - g.memory_used))
    api("nvmlDeviceGetCudaComputeCapability", lambda g: g.compute_capability)
    api("nvmlDeviceGetPowerManagementLimit", lambda g: g.power_limit_mw)
    api("nvmlDeviceGetMaxClockInfo", lambda g, c: g.max_sm_mhz if c == NVML_CLOCK_SM else g.max_mem_mhz)
    api("nvmlDeviceGetClockInfo", lambda g, c: g.sm_mhz)
    api("nvmlDeviceGetMaxPcieLinkGeneration", lambda g: g.pcie[0])
    api("nvmlDeviceGetMaxPcieLinkWidth", lambda g: g.pcie[1])
    api("nvmlDeviceGetCurrPcieLinkGeneration", lambda g: g.pcie[2])
    api("nvmlDeviceGetCurrPcieLinkWidth", lambda g: g.pcie[3])
    api("nvmlDeviceGetUtilizationRates", lambda g: types.SimpleNamespace(gpu=g.util, memory=40))
    api("nvmlDeviceGetPowerUsage", lambda g: g.power_mw)
    api("nvmlDeviceGetTotalEnergyConsumption", energy)
    running = lambda pids: [types.SimpleNamespace(pid=p, usedGpuMemory=2**28) for p in pids]  # noqa: E731
    api("nvmlDeviceGetComputeRunningProcesses", lambda g: running(g.compute_pids))
    api("nvmlDeviceGetGraphicsRunningProcesses", lambda g: running(g.graphics_pids))
    return m
