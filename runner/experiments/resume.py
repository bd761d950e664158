"""Which records a resumed sweep may count as done: this machine's own, in --out itself.

    python -m runner sweep ... --out results/sweep            # again: skips what this machine has done
    python -m runner sweep ... --platform cpu --out results/sweep   # another platform: runs every point

A completed record of the same grid point is only "done" for this command if this command would have
made it: it sits in --out itself (not in a subfolder: a colleague's records copied in there are
theirs), and it has the same platform, the same device asked for, the same hardware (as compare
labels it: CPU and cores, the GPUs; so a resumed Slurm sweep on another node of the same kind resumes),
the same launcher with the same settings (but those that only say how long to wait or where ranks
meet) and the same world size. A record from anywhere else is a measurement of something else: it
stays in the folder and in sweep-table, and the point runs again here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

# Launcher settings that change how long a signalled child may take or where torchrun's ranks meet,
# not what runs or where: a resumed command may give other values and still resume.
UNMEASURED_SETTINGS = ("grace_s", "rdzv_endpoint", "rdzv_id")


@dataclass(frozen=True)
class Machine:
    """What a record must share with this command to count as this machine's own."""

    platform: str
    device: str         # as asked for (--device, else the platform's), what the record keeps as device.requested
    hardware: str       # runner.report.compare.hardware_label
    launcher: str       # launcher_key


def launcher_key(launcher: dict | None) -> str:
    """The launcher block of a record (or describe() of a launcher) as one comparable text."""
    if not launcher:
        return json.dumps(None)
    settings = {k: v for k, v in (launcher.get("settings") or {}).items() if k not in UNMEASURED_SETTINGS}
    return json.dumps({"name": launcher.get("name"), "settings": settings}, sort_keys=True, default=str)


def here(platform: dict, device: str, launcher) -> Machine:
    """This command's machine: its platform and device, the hardware probed now, its launcher."""
    from runner.machine import probe
    from runner.report.compare import hardware_label

    described = launcher.describe()
    return Machine(platform["name"], device, hardware_label({"hardware": probe.hardware()}),
                   launcher_key({"name": described.name, "settings": described.settings}))


def of(rec: dict) -> Machine:
    """The machine a record was made on, in the same terms."""
    from runner.report.compare import hardware_label

    return Machine((rec.get("platform") or {}).get("name"), (rec.get("device") or {}).get("requested"),
                   hardware_label(rec), launcher_key(rec.get("launcher")))


def world_size(launcher, options: dict) -> int | None:
    """The world size a run of this launcher and backend options will have; None where only the run
    can tell (jax.devices=all: however many devices it finds)."""
    described = launcher.describe()
    settings = described.settings
    if described.name == "torchrun":
        return int(settings.get("nproc_per_node", 1)) * int(settings.get("nnodes", 1))
    devices = str(options.get("devices", "1"))
    return int(devices) if devices.isdigit() else None


def recorded_world_size(rec: dict) -> int:
    return (rec.get("parallel") or {}).get("world_size", 1)


def records_in(out: Path) -> list[dict]:
    """The records directly in `out` (read as compare reads them: a bad file or a second copy of a
    run is left out), not those in its subfolders."""
    from runner.records import collection

    out = Path(out)
    if not out.is_dir():
        return []
    found, _ = collection.load(sorted(p for p in out.glob("*.json") if p.is_file()))
    return found
