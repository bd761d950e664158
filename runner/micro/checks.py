"""The micro-benchmarks' correctness checks: distances between two results, each with a limit, as records keep them.

    python -m runner ensemble ...            # each model in the batch vs that model alone, model 0 vs float64
    python -m runner per-sample-grads ...    # vectorized vs a loop of single-example gradients, and vs float64

The distances are the parity gate's (runner.parity.gate), for the same reason: float32 rounds at
6e-8, and the longest sums here have a few thousand terms, so honest float32 results sit ~1e-7 apart
(a different kernel for the batched call included) and far inside the gate's limits; a wrong model,
layout or example lands near 1.
"""

from __future__ import annotations

import numpy as np

LOGITS_LIMIT = 1e-5   # max |a - b| / max(1, max |b|): the gate's logits_max_diff
GRAD_LIMIT = 1e-4     # ||a - b|| / ||b|| over every parameter: the gate's grad_rel_diff


def scaled_max_diff(a, b) -> float:
    """max |a - b| / max(1, max |b|), in float64."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(b)))))


def grad_rel_diff(a: dict, b: dict) -> float:
    """||a - b|| / ||b||, every parameter of one model (or one example) as one vector, in float64."""
    num = sum(float(np.sum((np.asarray(a[k], np.float64) - np.asarray(b[k], np.float64)) ** 2)) for k in b)
    den = sum(float(np.sum(np.asarray(b[k], np.float64) ** 2)) for k in b)
    return float(np.sqrt(num) / np.sqrt(den)) if den > 0 else float(np.sqrt(num))


def per_example_rel_diff(a: dict, b: dict) -> float:
    """The largest grad_rel_diff over examples of per-example gradients {name: (B, ...)}."""
    n = len(next(iter(b.values())))
    return max(grad_rel_diff({k: v[i] for k, v in a.items()}, {k: v[i] for k, v in b.items()}) for i in range(n))


def check(name: str, value: float, limit: float, **extra) -> dict:
    """One entry of the record's study.checks (extra keys, e.g. the size it belongs to, ride along).
    A value that is not finite (NaN from a broken kernel) fails, recorded as null (JSON has no NaN)."""
    value = float(value)
    if not np.isfinite(value):
        return {"name": name, "value": None, "limit": limit, "passed": False, **extra}
    return {"name": name, "value": value, "limit": limit, "passed": bool(value <= limit), **extra}
