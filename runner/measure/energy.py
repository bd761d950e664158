"""Energy over the training loop: the GPUs' own counters, else their power samples integrated, and
the CPU package counters (Linux RAPL, powercap) where this user may read them.

    python -m runner run        # record["energy"]: joules, method, scope, parts, errors

`joules` is null, never 0, when nothing could be read; `method` and `scope` always say what was
measured, or "none" and why not. Scopes are physical: a GPU counter is the whole board and a RAPL
package counter is the whole socket, including other processes' work and idle power.
"""

from __future__ import annotations

import time
from pathlib import Path

from runner.errors import reason

POWERCAP = Path("/sys/class/powercap")



def rapl_packages(root: Path = POWERCAP) -> list[Path]:
    """Top-level RAPL zones (one per CPU package): intel-rapl:N, which AMD's Zen RAPL uses too.
    Subzones (intel-rapl:N:M: core, uncore, dram) are parts of a package and not summed."""
    return sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1)


def _read_int(path: Path) -> int:
    return int(path.read_text().strip())


class Meter:
    """start() reads every counter; stop(samples, interval_s) reads them again and builds the record's
    energy object. The sampler's GPU power readings are the fallback for GPUs without a counter."""

    def __init__(self, powercap: Path = POWERCAP, clock=time.monotonic):
        self.powercap, self.clock = powercap, clock
        self.errors: dict[str, str] = {}
        self._gpu0: dict[int, int] = {}        # NVML index -> mJ at start
        self._gpu_names: dict[int, str] = {}
        self._rapl0: dict[Path, int] = {}      # zone -> µJ at start

    # -- counters ---------------------------------------------------------------------------------
    def _gpu_counters(self) -> dict[int, int] | None:
        from runner.measure import nvml

        try:
            with nvml.session() as nv:
                out = {}
                for index, h in nvml.visible(nv):
                    try:
                        self._gpu_names.setdefault(index, nvml.text(nv.nvmlDeviceGetName(h)))
                    except Exception:
                        self._gpu_names.setdefault(index, "GPU")
                    try:
                        out[index] = int(nv.nvmlDeviceGetTotalEnergyConsumption(h))
                    except Exception as e:  # pre-Volta GPUs have no counter: power samples instead
                        self.errors.setdefault(f"gpus[{index}].energy_counter", reason(e))
                return out
        except Exception as e:
            self.errors.setdefault("gpu", f"NVML unavailable ({reason(e)})")
            return None

    def _rapl_counters(self) -> dict[Path, int]:
        zones = rapl_packages(self.powercap)
        if not zones:
            self.errors.setdefault("cpu", f"no RAPL package zone under {self.powercap}")
        out = {}
        for zone in zones:
            try:
                out[zone] = _read_int(zone / "energy_uj")
            except PermissionError:
                # Root-only since the 2020 PLATYPUS fix (CVE-2020-8694); `sudo chmod o+r` opens it.
                self.errors.setdefault("cpu", f"{zone / 'energy_uj'} is not readable by this user")
            except Exception as e:
                self.errors.setdefault("cpu", f"{zone / 'energy_uj'}: {reason(e)}")
        return out

    def start(self) -> "Meter":
        self._gpu0 = self._gpu_counters() or {}
        self._rapl0 = self._rapl_counters()
        self.t0 = self.clock()
        return self

    # -- the record -------------------------------------------------------------------------------
    def stop(self, samples: list[dict] | None = None, sampled_gpus: list[dict] | None = None,
             interval_s: float | None = None) -> dict:
        window = self.clock() - self.t0
        gpu1 = (self._gpu_counters() or {}) if self._gpu0 else {}
        rapl1 = self._rapl_counters() if self._rapl0 else {}
        parts = []
        for index, start in self._gpu0.items():
            if index in gpu1 and gpu1[index] > start:
                parts.append(_part("gpu", (gpu1[index] - start) / 1e3, "NVML total energy counter",
                                   f"GPU {index} {self._gpu_names.get(index, '')} (whole board)".replace("  ", " ")))
        counted = {i for i in self._gpu0 if i in gpu1}
        for g in sampled_gpus or []:
            if g["index"] in counted:
                continue
            joules = integrate_power(samples or [], g["index"])
            if joules:
                parts.append(_part("gpu", joules, f"NVML power samples integrated (trapezoid, every {interval_s:g} s)",
                                   f"GPU {g['index']} {g.get('name') or ''} (whole board)".replace("  ", " ")))
            else:
                self.errors.setdefault(f"gpus[{g['index']}].energy", "no counter and fewer than two power samples")
        for zone, start in self._rapl0.items():
            if zone not in rapl1:
                continue
            end = rapl1[zone]
            if end < start:  # the counter wrapped around
                try:
                    end += _read_int(zone / "max_energy_range_uj")
                except Exception as e:
                    self.errors.setdefault("cpu", f"counter wrapped, range unreadable: {reason(e)}")
                    continue
            if end == start:
                self.errors.setdefault("cpu", f"{zone / 'energy_uj'} did not move during the run")
                continue
            if end > start:
                try:
                    name = (zone / "name").read_text().strip()
                except OSError:
                    name = zone.name
                parts.append(_part("cpu", (end - start) / 1e6, "RAPL powercap counter",
                                   f"CPU {name} (whole package, all processes)"))
        return {
            "joules": sum(p["joules"] for p in parts) if parts else None,
            "method": " + ".join(dict.fromkeys(p["method"] for p in parts)) if parts else "none",
            "scope": " + ".join(p["scope"] for p in parts) if parts else "nothing measured (see errors)",
            "window_s": window,
            "parts": parts,
            "errors": dict(self.errors),
        }


def _part(source: str, joules: float, method: str, scope: str) -> dict:
    return {"source": source, "joules": joules, "method": method, "scope": scope}


def integrate_power(samples: list[dict], index: int) -> float | None:
    """Joules from one GPU's power samples (W at time t s) by the trapezoid rule; None with fewer
    than two readings."""
    points = [(s["t"], g["power_w"]) for s in samples for g in s.get("gpus", [])
              if g["index"] == index and g.get("power_w") is not None]
    if len(points) < 2:
        return None
    return sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in zip(points, points[1:]))
