"""Which rank this process is when a launcher starts several (torchrun, srun): its share of the workload, and who writes.

    python -m runner run --launcher torchrun --nproc 2   # torchrun sets RANK, WORLD_SIZE, LOCAL_RANK
    srun python -m runner.launch.child REQUEST.json      # Slurm sets SLURM_PROCID, SLURM_NTASKS

Every rank runs the same job on the same request; only rank 0 prints progress and writes the record
or the parity result, so a data-parallel run leaves exactly one record, as a single process does.
"""

from __future__ import annotations

import os


def _int(name: str, environ) -> int | None:
    try:
        return int(environ[name])
    except (KeyError, ValueError):
        return None


def rank(environ=os.environ) -> int:
    """The global rank: torchrun's RANK first (under srun+torchrun SLURM_PROCID is the node's task),
    then JAX_PROCESS_ID (a JAX process group given by hand), else Slurm's task id when the step has
    several tasks, else 0."""
    several = (_int("SLURM_STEP_NUM_TASKS", environ) or 1) > 1
    for name in ("RANK", "JAX_PROCESS_ID", "SLURM_PROCID" if several else ""):
        value = _int(name, environ) if name else None
        if value is not None:
            return value
    return 0


def world_size(environ=os.environ) -> int:
    return _int("WORLD_SIZE", environ) or 1


def local_rank(environ=os.environ) -> int:
    return _int("LOCAL_RANK", environ) or 0


def is_writer(environ=os.environ) -> bool:
    """Whether this process writes the run's record (or parity result) and prints its progress."""
    return rank(environ) == 0
