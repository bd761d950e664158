"""The torchrun launcher: the child as N data-parallel ranks per node (PyTorch DistributedDataParallel).

    python -m runner run --framework torch --launcher torchrun --nproc 2        # gloo on CPU, NCCL on CUDA
    python -m runner verify --framework torch --launcher torchrun --nproc 2     # the gate, 2 ranks
    srun --nodes=2 --ntasks-per-node=1 python -m torch.distributed.run --nnodes=2 --rdzv-backend=c10d \\
        --rdzv-endpoint=HEAD:29500 --nproc-per-node=4 -m runner.launch.child REQUEST.json   # what nnodes>1 runs

torchrun (torch.distributed.run, run with the same interpreter) starts the ranks, sets RANK,
WORLD_SIZE, LOCAL_RANK and MASTER_ADDR/PORT, and ends them all when one fails; every rank runs
runner.launch.child on the same request file; rank 0 writes the one record (runner.workload.ranks).
One node: --standalone (a local rendezvous on a free port). Several nodes: torchrun once per node
under srun, meeting at a c10d rendezvous on the first node of the Slurm allocation; the request
file must then be on a folder every node sees (the Slurm launcher's shared folder).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from runner.errors import UserError
from runner.launch.launchers import CHILD, ProcessLauncher

RDZV_PORT = 29500


@dataclass(frozen=True)
class TorchrunLauncher(ProcessLauncher):
    """`nproc_per_node` ranks on each of `nnodes` nodes; the settings are recorded with every run."""

    name: ClassVar[str] = "torchrun"
    nproc_per_node: int = 2
    nnodes: int = 1
    rdzv_endpoint: str | None = None  # HOST:PORT of the c10d rendezvous; None: the first Slurm node
    rdzv_id: str | None = None        # None: the Slurm job id
    srun: bool | None = None          # start torchrun once per node through srun; None: when nnodes > 1

    def __post_init__(self):
        for name in ("nproc_per_node", "nnodes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"launcher torchrun: {name} must be a whole number >= 1, got {value!r}")

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes

    def check(self, spec) -> None:
        """Refuse, before anything starts, a world size that cannot split the spec's global batch."""
        if spec.batch_size % self.world_size:
            divisors = [n for n in range(1, spec.batch_size + 1) if spec.batch_size % n == 0]
            raise UserError(f"torchrun world size {self.world_size} ({self.nnodes} node(s) x {self.nproc_per_node})"
                            f" does not divide the global batch {spec.batch_size}: every rank must take an equal"
                            f" share (choose a world size from {', '.join(map(str, divisors))})")

    def command(self, request_file: Path, environ=os.environ) -> list[str]:
        run = [self.python or sys.executable, "-m", "torch.distributed.run"]
        multi = self.nnodes > 1 or self.rdzv_endpoint is not None
        if not multi:
            run.append("--standalone")
        else:
            endpoint = self.rdzv_endpoint or f"{_first_node(environ)}:{RDZV_PORT}"
            job = self.rdzv_id or environ.get("SLURM_JOB_ID")
            if not job:
                raise UserError("launcher torchrun: several nodes need rdzv_id (or run inside a Slurm job)")
            run += [f"--nnodes={self.nnodes}", "--rdzv-backend=c10d", f"--rdzv-endpoint={endpoint}",
                    f"--rdzv-id={job}"]
        run += [f"--nproc-per-node={self.nproc_per_node}", "-m", CHILD, str(request_file)]
        if self.srun if self.srun is not None else self.nnodes > 1:
            run = ["srun", f"--nodes={self.nnodes}", "--ntasks-per-node=1", "--kill-on-bad-exit=1", *run]
        return run


def _first_node(environ) -> str:
    """The first host of the Slurm allocation: where rank 0's node hosts the rendezvous."""
    nodes = environ.get("SLURM_JOB_NODELIST") or environ.get("SLURM_NODELIST")
    if not nodes:
        raise UserError("launcher torchrun: several nodes need rdzv_endpoint=HOST:PORT (or run inside a Slurm job)")
    out = subprocess.run(["scontrol", "show", "hostnames", nodes], capture_output=True, text=True, timeout=30)
    if out.returncode or not out.stdout.split():
        raise UserError(f"launcher torchrun: scontrol show hostnames {nodes} failed: {out.stderr.strip()}")
    return out.stdout.split()[0]
