"""Reference initial weights and batch order, made with NumPy so every framework starts alike.

    python -m runner verify      # (parity gate) loads these into every backend

Both depend on the spec only: the same (seed, model) gives the same bytes on every machine.
"""

from __future__ import annotations

import numpy as np

from runner.workload.models import buffers, params
from runner.workload.spec import Spec

# The init stream is keyed apart from the epoch streams: NumPy's SeedSequence treats trailing
# zero words as absent, so (seed,) and (seed, 0) would otherwise collide with epoch 0.
INIT_STREAM = 0x494E4954  # "INIT"


def initial_params(spec: Spec) -> dict[str, np.ndarray]:
    """Canonical-layout float32 parameters in order: conv and dense weights (and biases where the
    layer has them) each U(-1/sqrt(fan_in), 1/sqrt(fan_in)), drawn one after another from one
    stream; batch norm's gamma 1 and beta 0, drawing nothing (so models without BN keep their bytes)."""
    if spec.init != "uniform_fan_in":  # the only scheme defined (PyTorch's default for conv/linear)
        raise ValueError(f"no reference initializer for {spec.init!r}")
    rng = np.random.default_rng([spec.seed, INIT_STREAM])
    out = {}
    for p in params(spec.model):
        if p.init == "uniform_fan_in":
            bound = 1.0 / np.sqrt(p.fan_in)
            out[p.name] = rng.uniform(-bound, bound, size=p.shape).astype(np.float32)
        else:
            out[p.name] = _constant(p)
    return out


def initial_buffers(model: str) -> dict[str, np.ndarray]:
    """Canonical float32 buffers in order (BN: running_mean 0, running_var 1); {} without BN."""
    return {p.name: _constant(p) for p in buffers(model)}


def _constant(p) -> np.ndarray:
    return (np.ones if p.init == "ones" else np.zeros)(p.shape, np.float32)


def epoch_order(spec: Spec, epoch: int) -> np.ndarray:
    """Sample indices for `epoch` (0-based): a permutation seeded by (seed, epoch), cut to full
    batches (drop_last), so shapes never change under jit. Shape: (steps, batch_size), int64."""
    perm = np.random.default_rng([spec.seed, epoch]).permutation(spec.n_train)
    steps = spec.steps_per_epoch
    return perm[: steps * spec.batch_size].reshape(steps, spec.batch_size)
