"""Timing one operation of a study: warm-up calls apart, every clock read after a device sync.

    python -m runner ensemble ...            # fprop / bprop of N models, per N
    python -m runner per-sample-grads ...    # the vectorized per-example gradients and the loop, per batch size

One call of `run` is one timed iteration. `sync(out)` waits until the device has finished `out`
(torch: torch.cuda.synchronize; JAX: block_until_ready; TF: a device sync or a host read), so the
time between the two clock reads is the device's work, not the host's dispatch. The device is idle
before each start (the previous iteration's sync, or the caller's after setup).
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable


def time_op(run: Callable[[], Any], sync: Callable[[Any], None], iterations: int, warmup: int,
            clock=time.perf_counter) -> tuple[Any, dict]:
    """Call `run` warmup + iterations times; (the last output, its timing row): n (the timed
    iterations), mean_s, std_s (sample std, 0 for one), min_s, max_s over the timed ones, and
    first_s, the very first call (tracing and compilation included: JAX's jit, TF's tf.function)."""
    times, first, out = [], None, None
    for i in range(warmup + iterations):
        t0 = clock()
        out = run()
        sync(out)
        seconds = clock() - t0
        if i == 0:
            first = seconds
        if i >= warmup:
            times.append(seconds)
    return out, summary(times, first)


def summary(times: list[float], first: float | None = None) -> dict:
    if not times:
        raise ValueError("no timed iterations")
    return {"n": len(times), "mean_s": statistics.fmean(times),
            "std_s": statistics.stdev(times) if len(times) > 1 else 0.0,
            "min_s": min(times), "max_s": max(times), "first_s": first}
