"""The parent side of `per-sample-grads`: check the sizes, make the spec and settings, one child per framework.

    python -m runner per-sample-grads --framework torch,jax,tensorflow --batch-sizes 16,64,256

What the child measures and checks is runner.studies.per_sample_grads; this module only decides what
to ask for and refuses what cannot run (one line, exit 2) before any child starts.
"""

from __future__ import annotations

from runner import studies as child

JOB = "per_sample_grads"
FRAMEWORKS = tuple(child.FRAMEWORKS[JOB])
MODEL = "lenet5"


def plan(batch_sizes: list[int], iterations: int, warmup: int, dataset: str, seed: int):
    """(spec, settings) for the children: the spec's batch is the largest size (each size takes the
    first B examples of that batch); UserError for anything that cannot run (make_spec refuses a
    batch larger than the dataset)."""
    from runner.experiments import studies
    from runner.workload.spec import make_spec

    studies.at_least("--iterations", iterations, 1)
    studies.at_least("--warmup", warmup, 0)
    spec = make_spec("standard", model=MODEL, dataset=dataset, batch_size=max(batch_sizes), seed=seed)
    return spec, {"model": MODEL, "batch_sizes": list(batch_sizes), "iterations": iterations, "warmup": warmup}
