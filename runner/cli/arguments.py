"""Flags several subcommands share, declared once with one help text each: where runs go (--platform,
--device, --launcher, --launcher-setting), the dataset folder, the records folder (--out), and the
printed table (--format, --no-table). Imported by the subcommands' modules when their parser is built.
"""

from __future__ import annotations

import os

# Not `results/`: that folder holds the committed records, and a first run landing among them would
# mix into `compare results/`. The images set DLBENCH_OUT=/results (their mounted volume), so a run
# inside one writes there whatever this default is.
DEFAULT_OUT = "dlbench-results"
TABLE_FORMATS = ("markdown", "csv", "json")


def default_out() -> str:
    return os.environ.get("DLBENCH_OUT") or DEFAULT_OUT


def add_placement(p, torchrun: bool = True) -> None:
    """--platform, --device, --launcher (torchrun among them where the command runs DDP ranks) and
    --launcher-setting."""
    from runner.launch.launchers import LAUNCHERS
    from runner.machine import platforms

    p.add_argument("--platform", choices=list(platforms.PLATFORMS), help="default: $DLBENCH_PLATFORM, else detected")
    p.add_argument("--device", choices=platforms.DEVICES, help="default: the platform's (auto = cuda > mps > cpu)")
    p.add_argument("--launcher", choices=[n for n in LAUNCHERS if torchrun or n != "torchrun"], default="process",
                   help="how each framework's process is started (default: process, a subprocess here;"
                        " container: in an image, through Docker or podman's socket"
                        + ("; torchrun: PyTorch DistributedDataParallel ranks)" if torchrun else ")"))
    p.add_argument("--launcher-setting", action="append", default=[], metavar="KEY=VALUE",
                   help="a setting of the launcher, recorded with the run (repeatable): process: python,"
                        " grace_s; container: image, engine, gpus, python, grace_s"
                        + ("; torchrun: see --nproc" if torchrun else ""))


def add_data_dir(p) -> None:
    p.add_argument("--data-dir", help="dataset folder (default: $DLBENCH_DATA_DIR, else the user cache)")


def add_out(p) -> None:
    """--out for every command that writes records (run, sweep, tune, ensemble, per-sample-grads)."""
    p.add_argument("--out", default=default_out(),
                   help=f"folder for the records (default: $DLBENCH_OUT, else ./{DEFAULT_OUT}; results/ holds"
                        f" the repository's committed records)")


def add_table(p, no_table: bool = False) -> None:
    """--format of a printed table; with no_table also --no-table (commands that print one at the end)."""
    p.add_argument("--format", choices=TABLE_FORMATS, default="markdown",
                   help="the table's format (default markdown)")
    if no_table:
        p.add_argument("--no-table", action="store_true", help="do not print the table at the end")
