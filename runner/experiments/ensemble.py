"""The parent side of `ensemble`: check the grid, make the spec and settings, one child per framework.

    python -m runner ensemble --framework torch,jax --models 1,2,4,8 --arch mlp4 --batch 64 --iterations 50

What the child measures and checks is runner.studies.ensemble; this module only decides what to ask
for and refuses what cannot run (one line, exit 2) before any child starts.
"""

from __future__ import annotations

from runner.errors import UserError
from runner import studies as child

JOB = "ensemble"
ARCHS = child.ARCHS                    # defined in runner.workload.models
FRAMEWORKS = tuple(child.FRAMEWORKS[JOB])


def plan(arch: str, models: list[int], batch: int, iterations: int, warmup: int, dataset: str, seed: int):
    """(spec, settings) for the children; UserError for anything that cannot run."""
    from runner.experiments import studies
    from runner.workload.spec import MAX_SEED, make_spec

    if arch not in ARCHS:
        raise UserError(f"unknown arch {arch!r} (choose from {', '.join(ARCHS)})")
    studies.at_least("--batch", batch, 1)
    studies.at_least("--iterations", iterations, 1)
    studies.at_least("--warmup", warmup, 0)
    spec = make_spec("standard", model=arch, dataset=dataset, batch_size=batch, seed=seed)
    if seed + max(models) - 1 > MAX_SEED:  # model i starts from seed + i: each one a valid seed too
        raise UserError(f"--seed {seed} with --models {max(models)}: model {max(models) - 1}'s seed would pass"
                        f" 2^64-1 ({MAX_SEED}); use --seed <= {MAX_SEED - max(models) + 1}")
    if spec.steps_per_epoch < max(models):
        raise UserError(f"--models {max(models)} x --batch {batch} needs {max(models) * batch} samples;"
                        f" {dataset} has {spec.n_train}")
    return spec, {"models": list(models), "batch": batch, "iterations": iterations, "warmup": warmup}
