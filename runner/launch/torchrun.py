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
import shutil
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
        super().__post_init__()
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

    @property
    def several(self) -> bool:
        """Whether the ranks meet at a c10d rendezvous (several nodes) rather than --standalone."""
        return self.nnodes > 1 or self.rdzv_endpoint is not None

    @property
    def uses_srun(self) -> bool:
        return self.srun if self.srun is not None else self.nnodes > 1

    def check_here(self, spec, device: str, environ=os.environ) -> None:
        """Refuse what cannot start from this machine, before anything starts (`run`, `verify`; a
        Slurm submission is started, and so checked, on its nodes): a rendezvous nobody named, an srun
        that is not here, and batch norm over several ranks on the CPU, which the backend would refuse
        in every rank, after torchrun's own traceback."""
        if self.several:
            if not self.rdzv_endpoint and not _nodelist(environ):
                raise UserError("launcher torchrun: several nodes need rdzv_endpoint=HOST:PORT"
                                " (or run inside a Slurm job)")
            if not (self.rdzv_id or environ.get("SLURM_JOB_ID")):
                raise UserError("launcher torchrun: several nodes need rdzv_id (or run inside a Slurm job)")
        if self.uses_srun and shutil.which("srun", path=environ.get("PATH")) is None:
            raise UserError(f"launcher torchrun: nnodes={self.nnodes} starts torchrun on each node through srun,"
                            f" which is not on PATH here (run inside a Slurm job, or srun=false and start"
                            f" it on each node)")
        from runner.machine import platforms
        from runner.workload import models

        # the model first: whether ranks run on the CPU may take a probe of the GPUs (device auto)
        if self.world_size > 1 and models.has_batchnorm(spec.model) and not platforms.on_cuda(device):
            raise UserError(f"launcher torchrun: {spec.model} has batch norm, which over {self.world_size} ranks"
                            f" needs SyncBatchNorm, which PyTorch runs on CUDA only, and device {device} is not"
                            f" CUDA here: use --nproc 1, or a CUDA GPU")

    def request_folder(self, request) -> str | None:
        # torchrun on several nodes reads the request on each: the output folder, which every node
        # sees (rank 0 writes the record there, whichever node it lands on).
        return request.out_dir if self.uses_srun else None

    def command(self, request_file: Path, framework: str = "torch", environ=os.environ) -> list[str]:
        """torchrun's command line (`framework` is always torch: the CLI refuses the others)."""
        run = [self.python or sys.executable, "-m", "torch.distributed.run"]
        if not self.several:
            run.append("--standalone")
        else:
            endpoint = self.rdzv_endpoint or f"{_first_node(environ)}:{RDZV_PORT}"
            job = self.rdzv_id or environ.get("SLURM_JOB_ID")
            if not job:
                raise UserError("launcher torchrun: several nodes need rdzv_id (or run inside a Slurm job)")
            run += [f"--nnodes={self.nnodes}", "--rdzv-backend=c10d", f"--rdzv-endpoint={endpoint}",
                    f"--rdzv-id={job}"]
        run += [f"--nproc-per-node={self.nproc_per_node}", "-m", CHILD, str(request_file)]
        if self.uses_srun:
            run = ["srun", f"--nodes={self.nnodes}", "--ntasks-per-node=1", "--kill-on-bad-exit=1", *run]
        return run


def _nodelist(environ) -> str | None:
    return environ.get("SLURM_JOB_NODELIST") or environ.get("SLURM_NODELIST")


def _scontrol(*args: str) -> str:
    try:
        out = subprocess.run(["scontrol", *args], capture_output=True, text=True, timeout=30)
    except OSError as e:
        raise UserError(f"launcher torchrun: cannot run scontrol: {e.strerror or e}") from None
    if out.returncode or not out.stdout.strip():
        raise UserError(f"launcher torchrun: scontrol {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout


def _first_node(environ) -> str:
    """The address of the first node of the Slurm allocation, where the rendezvous is: its NodeAddr
    (what Slurm itself reaches it at; the node's name on most clusters, not on every one)."""
    nodes = _nodelist(environ)
    if not nodes:
        raise UserError("launcher torchrun: several nodes need rdzv_endpoint=HOST:PORT (or run inside a Slurm job)")
    first = _scontrol("show", "hostnames", nodes).split()[0]
    fields = dict(f.partition("=")[::2] for f in _scontrol("show", "node", "-o", first).split())
    return fields.get("NodeAddr") or first
