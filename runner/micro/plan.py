"""What a micro-benchmark asks its children for: the checks and plans made before any child starts.

    python -m runner ensemble --framework torch,jax --models 1,2,4,8 --arch mlp4 --batch 64 --iterations 50
    python -m runner per-sample-grads --framework torch,jax,tensorflow --batch-sizes 16,64,256

`ensemble` and `per_sample` turn the command line into (spec, settings) for the children, refusing
what cannot run (one line, exit 2); what the children measure and check is runner.micro.ensemble and
runner.micro.per_sample_grads.
"""

from __future__ import annotations

from runner.errors import UserError
from runner.micro import ARCHS, FRAMEWORKS

ENSEMBLE, PER_SAMPLE = "ensemble", "per_sample_grads"  # the jobs (runner.launch.child.JOBS)
PER_SAMPLE_MODEL = "lenet5"


def ensemble(arch: str, models: list[int], batch: int, iterations: int, warmup: int, dataset: str, seed: int):
    """(spec, settings) for the ensemble children; UserError for anything that cannot run."""
    from runner.workload.spec import MAX_SEED, make_spec

    if arch not in ARCHS:
        raise UserError(f"unknown arch {arch!r} (choose from {', '.join(ARCHS)})")
    at_least("--batch", batch, 1)
    at_least("--iterations", iterations, 1)
    at_least("--warmup", warmup, 0)
    spec = make_spec("standard", model=arch, dataset=dataset, batch_size=batch, seed=seed)
    if seed + max(models) - 1 > MAX_SEED:  # model i starts from seed + i: each one a valid seed too
        raise UserError(f"--seed {seed} with --models {max(models)}: model {max(models) - 1}'s seed would pass"
                        f" 2^64-1 ({MAX_SEED}); use --seed <= {MAX_SEED - max(models) + 1}")
    if spec.steps_per_epoch < max(models):
        raise UserError(f"--models {max(models)} x --batch {batch} needs {max(models) * batch} samples;"
                        f" {dataset} has {spec.n_train}")
    return spec, {"models": list(models), "batch": batch, "iterations": iterations, "warmup": warmup}


def per_sample(batch_sizes: list[int], iterations: int, warmup: int, dataset: str, seed: int):
    """(spec, settings) for the per-sample-grads children: the spec's batch is the largest size (each
    size takes the first B examples of that batch); UserError for anything that cannot run (make_spec
    refuses a batch larger than the dataset)."""
    from runner.workload.spec import make_spec

    at_least("--iterations", iterations, 1)
    at_least("--warmup", warmup, 0)
    spec = make_spec("standard", model=PER_SAMPLE_MODEL, dataset=dataset, batch_size=max(batch_sizes), seed=seed)
    return spec, {"model": PER_SAMPLE_MODEL, "batch_sizes": list(batch_sizes), "iterations": iterations,
                  "warmup": warmup}


def frameworks_of(job: str) -> tuple[str, ...]:
    return tuple(FRAMEWORKS[job])


def parse_sizes(flag: str, text: str) -> list[int]:
    """"1,2,4,8" -> [1, 2, 4, 8] (sorted, each once); UserError unless every one is a whole number >= 1
    (an empty item too: runner.lists)."""
    from runner.lists import items

    try:
        sizes = [int(t) for t in items(flag, text)]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise UserError(f"{flag} {text!r}: expected whole numbers >= 1, comma-separated (e.g. 1,2,4,8)")
    return sorted(set(sizes))


def frameworks_for(text: str, supported: tuple[str, ...], study: str) -> list[str]:
    """--framework for a study: names it supports, or 'all' (the supported ones that are installed)."""
    from runner import backends

    if text.strip() == "all":
        chosen = [f for f in supported if backends.installed(f)]
        if not chosen:
            raise UserError(f"{study}: none of {', '.join(supported)} is installed")
        return chosen
    chosen = backends.parse_frameworks(text)
    wrong = [f for f in chosen if f not in supported]
    if wrong:
        raise UserError(f"{study} runs on {', '.join(supported)}, not {', '.join(wrong)}")
    return chosen


def at_least(flag: str, value: int, low: int) -> int:
    if value < low:
        raise UserError(f"{flag} must be >= {low}, got {value}")
    return value
