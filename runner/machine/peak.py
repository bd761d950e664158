"""A device's peak FP32 FLOP/s, from a record's hardware block: the denominator of "% of peak".

    python -m runner compare results/ --columns gflops,peak     # via runner.records.efficiency

peak(record) -> (flop_per_s | None, source | None, errors). Never a guess: a GPU is looked up in a
table of NVIDIA datasheet figures by its name; a CPU's peak is cores x clock x FP32 FLOPs per cycle
per core from its vector ISA, only where the probe recorded a maximum clock. Anything else is None
with the reason in errors.
"""

from __future__ import annotations

import re

# FP32 (non-tensor-core) peak at the boost clock, TFLOP/s, as NVIDIA's datasheets print it. Matched
# in order against the lower-cased NVML/framework name: the more specific patterns come first.
_DS = "NVIDIA datasheet"
GPUS: tuple[tuple[str, float, str], ...] = (
    (r"h200.*nvl", 60.0, f"{_DS}: H200 NVL"),
    (r"h200", 67.0, f"{_DS}: H200 SXM (nvidia.com/en-us/data-center/h200)"),
    (r"h100.*pcie", 51.0, f"{_DS}: H100 PCIe (nvidia.com/en-us/data-center/h100)"),
    (r"h100.*nvl", 60.0, f"{_DS}: H100 NVL"),
    (r"h100.*(sxm|hbm3)", 67.0, f"{_DS}: H100 SXM5"),
    (r"a100", 19.5, f"{_DS}: A100 (SXM4 and PCIe alike)"),
    (r"v100s", 16.4, f"{_DS}: V100S PCIe"),
    (r"v100.*sxm", 15.7, f"{_DS}: V100 SXM2"),
    (r"v100.*pcie", 14.0, f"{_DS}: V100 PCIe"),
    (r"p100.*sxm", 10.6, f"{_DS}: Tesla P100 SXM2"),
    (r"p100.*pcie", 9.3, f"{_DS}: Tesla P100 PCIe"),
    (r"\bt4\b", 8.1, f"{_DS}: Tesla T4"),
    (r"\bl4\b", 30.3, f"{_DS}: L4"),
    (r"\bl40s\b", 91.6, f"{_DS}: L40S"),
    # No NVIDIA datasheet exists for AWS's A10G: 80 SMs x 128 FP32 lanes x 2 x 1.71 GHz boost
    # (10,240 CUDA cores, TechPowerUp GPU database); the A10 (72 SMs) is 31.2.
    (r"\ba10g\b", 35.0, "10,240 CUDA cores x 2 x 1.71 GHz boost (TechPowerUp; no NVIDIA datasheet for A10G)"),
    (r"\ba10\b", 31.2, f"{_DS}: A10"),
    (r"rtx 4090", 82.6, "NVIDIA Ada Lovelace architecture whitepaper: RTX 4090"),
    (r"rtx 3090(?! ti)", 35.6, "NVIDIA Ampere GA102 whitepaper: RTX 3090"),
)

# FP32 FLOPs per cycle per core: vector lanes x 2 (a fused multiply-add) x FMA units. The probe
# records avx512f and avx2 but not fma or the unit count: every x86 core with AVX2 also has FMA3
# (Intel Haswell on, AMD Zen and Excavator), and two FMA units are assumed (Skylake-SP Gold/Platinum
# and later Xeons, Zen 2 on; some Xeon Silver/Bronze have one 512-bit unit and Zen 1 two 128-bit
# ones, whose true peak is half of this). AMD's AVX-512 is unknown: Zen 4 runs it on 256-bit units
# (32), Zen 5 on 512-bit ones (64), and the recorded flags do not tell them apart. AMX (bf16/int8
# tiles) does no FP32 work.
CPU_ISA = (("avx512f", 64, "AVX-512 FMA, 2 units assumed"), ("avx2", 32, "AVX2+FMA, 2 FMA units assumed"))


def gpu_peak(name: str | None) -> tuple[float | None, str | None]:
    """(FLOP/s, source) of one GPU by name, or (None, None) if the table does not know it."""
    low = (name or "").lower()
    for pattern, tflops, source in GPUS:
        if re.search(pattern, low):
            return tflops * 1e12, f"{tflops:g} TFLOP/s FP32 ({source})"
    return None, None


def cpu_peak(cpu: dict) -> tuple[float | None, str | None, str | None]:
    """(FLOP/s, source, why unknown) of the CPU: cores x max clock x FLOPs/cycle."""
    flags, freq = cpu.get("flags"), (cpu.get("freq_mhz") or {})
    cores = [c for c in (cpu.get("physical_cores"), cpu.get("usable_cores")) if c]
    if not cores:
        return None, None, "the probe counted no cores"
    if not freq.get("max"):
        current = f"; the current clock ({freq['current']:g} MHz) is one reading, not a peak" if freq.get("current") else ""
        return None, None, f"the probe recorded no maximum clock (a VM or no cpufreq driver){current}"
    if flags is None:
        return None, None, "the probe read no CPU flags"
    if flags.get("avx512f") and "amd" in (cpu.get("vendor") or "").lower():
        return None, None, "FP32 FLOPs per cycle unknown (AMD AVX-512: 32 on Zen 4, 64 on Zen 5)"
    isa = next(((per, why) for flag, per, why in CPU_ISA if flags.get(flag)), None)
    if isa is None:
        what = "NEON: the FMA pipes per core differ between Arm cores" if flags.get("neon") else "no AVX2 or AVX-512"
        return None, None, f"FP32 FLOPs per cycle unknown ({what})"
    n, ghz, (per, why) = min(cores), freq["max"] / 1e3, isa
    used = "physical" if n == cpu.get("physical_cores") else "usable"
    return (n * ghz * 1e9 * per,
            f"{n} {used} cores x {ghz:g} GHz (probe's max clock) x {per} FP32 FLOP/cycle ({why})", None)


def peak(record: dict) -> tuple[float | None, str | None, dict[str, str]]:
    """(peak FP32 FLOP/s of every device the run trained on, its source, errors)."""
    kind = (record.get("device") or {}).get("kind")
    hw = record.get("hardware") or {}
    devices = (record.get("parallel") or {}).get("devices") or 1
    if kind == "cpu":
        value, source, why = cpu_peak(hw.get("cpu") or {})
        return value, source, ({"peak_flops_per_s": why} if why else {})
    if kind == "cuda":
        # The framework's device name, else the probe's GPU name where every GPU has the same one.
        names = {g.get("name") for g in hw.get("gpus") or []}
        name = record["device"].get("name")
        value, source = gpu_peak(name)
        if value is None and len(names) == 1:
            name = names.pop()
            value, source = gpu_peak(name)
        if value is None:
            return None, None, {"peak_flops_per_s": f"GPU {name!r} is not in runner.machine.peak's table"}
        if devices > 1:  # a data-parallel run: the same card on every device (its name is the first's)
            return value * devices, f"{devices} x {source}", {}
        return value, source, {}
    return None, None, {"peak_flops_per_s": f"no peak known for device kind {kind!r}"}
