"""NVIDIA's management library (nvidia-ml-py) for the probe, the sampler and the energy meter.

    python -m runner probe          # GPU facts
    python -m runner run            # GPU utilization, memory, power, clocks and energy during training

Opened per use and closed again; every reading is the caller's to soft-fail (NVML raises NVMLError
subclasses: LibraryNotFound where no driver is installed, NotSupported for fields a GPU lacks).
"""

from __future__ import annotations

import os
from contextlib import contextmanager


@contextmanager
def session():
    """The pynvml module, initialized; shut down on exit. Raises if NVML cannot start here."""
    import pynvml  # from nvidia-ml-py; the import itself works without a driver

    pynvml.nvmlInit()
    try:
        yield pynvml
    finally:
        pynvml.nvmlShutdown()


def text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def handles(nv) -> list[tuple[int, object]]:
    """(NVML index, handle) of every GPU NVML sees."""
    return [(i, nv.nvmlDeviceGetHandleByIndex(i)) for i in range(nv.nvmlDeviceGetCount())]


def visible(nv, environ=os.environ) -> list[tuple[int, object]]:
    """The GPUs this process may use: all of them, or those CUDA_VISIBLE_DEVICES names (by UUID or
    UUID prefix, or by index, read in NVML's PCI-bus order as nvidia-smi and Slurm number them)."""
    every = handles(nv)
    wanted = environ.get("CUDA_VISIBLE_DEVICES")
    if wanted is None:
        return every
    chosen = []
    for token in (t.strip() for t in wanted.split(",") if t.strip()):
        if token.isdigit():
            match = [g for g in every if g[0] == int(token)]
        else:
            match = [g for g in every if text(nv.nvmlDeviceGetUUID(g[1])).startswith(token)]
        if not match:
            break  # CUDA stops at the first invalid entry too
        chosen += [g for g in match if g not in chosen]
    return chosen
