"""Small statistics over repeated runs: median, bootstrap confidence intervals, CV, ratios.

    python -m runner compare results/ [--baseline framework=torch]   # the table's CI, CV and ratio columns
    python -m runner run --until-stable ...                           # repeats until cv() < threshold

The statistical unit is the run: each run's steady s/epoch (itself the median of its epochs 2..N) is
one value. Runs are independent processes; epochs within one run share a process, a heap and a
thermal state, so they are not. Confidence intervals are percentile bootstraps of the median
(scipy.stats.bootstrap) with a fixed seed, so the same records always print the same table. With
fewer than two values there is no interval: one run is an anecdote, and the table says so.

scipy is imported inside the functions: `python -m runner --help` stays instant.
"""

from __future__ import annotations

import math
import statistics

CONFIDENCE = 0.95
N_RESAMPLES = 9999
SEED = 0


def cv(values) -> float | None:
    """Coefficient of variation: sample standard deviation (ddof=1) / mean; None for fewer than two
    values or a zero mean."""
    values = [float(v) for v in values]
    if len(values) < 2:
        return None
    mean = statistics.fmean(values)
    if mean == 0:
        return None
    return statistics.stdev(values) / abs(mean)


def _bootstrap_ci(samples, statistic, confidence, n_resamples, seed) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic` over independent resamples of each sample."""
    import numpy as np
    from scipy.stats import bootstrap

    res = bootstrap(tuple(np.asarray(s, dtype=float) for s in samples), statistic, n_resamples=n_resamples,
                    vectorized=True, paired=False, confidence_level=confidence, method="percentile",
                    rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _median_along(x, axis=-1):
    import numpy as np

    return np.median(x, axis=axis)


def _ratio_of_medians(x, y, axis=-1):
    import numpy as np

    return np.median(x, axis=axis) / np.median(y, axis=axis)


def summary(values, confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> dict:
    """n, median, ci_low, ci_high (bootstrap CI of the median), cv, mean, min, max of `values`.
    No values: n 0, the rest None. One value: no CI, no CV. All values equal: CI (v, v)."""
    values = [float(v) for v in values if v is not None]
    n = len(values)
    if n == 0:
        return dict.fromkeys(("median", "ci_low", "ci_high", "cv", "mean", "min", "max"), None) | {"n": 0}
    out = {"n": n, "median": statistics.median(values), "ci_low": None, "ci_high": None, "cv": cv(values),
           "mean": statistics.fmean(values), "min": min(values), "max": max(values)}
    if n >= 2 and out["min"] == out["max"]:  # every resample is the same: scipy would warn, the answer is known
        out["ci_low"] = out["ci_high"] = out["min"]
    elif n >= 2:
        out["ci_low"], out["ci_high"] = _bootstrap_ci([values], _median_along, confidence, n_resamples, seed)
    return out


def ratio(values, baseline_values, confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES,
          seed: int = SEED) -> dict:
    """median(values) / median(baseline_values) with a bootstrap CI that resamples both groups
    independently (different runs, not pairs). CI None when either group has fewer than two values;
    ratio None when either group is empty or the baseline median is 0."""
    values = [float(v) for v in values if v is not None]
    base = [float(v) for v in baseline_values if v is not None]
    out = {"ratio": None, "ci_low": None, "ci_high": None, "n": len(values), "n_baseline": len(base)}
    if not values or not base or statistics.median(base) == 0:
        return out
    out["ratio"] = statistics.median(values) / statistics.median(base)
    if len(values) < 2 or len(base) < 2:
        return out
    if min(values) == max(values) and min(base) == max(base):  # degenerate: every resample gives the ratio
        out["ci_low"] = out["ci_high"] = out["ratio"]
    else:
        low, high = _bootstrap_ci([values, base], _ratio_of_medians, confidence, n_resamples, seed)
        # A resampled baseline median of 0 would give inf/nan: no honest interval then.
        if math.isfinite(low) and math.isfinite(high):
            out["ci_low"], out["ci_high"] = low, high
    return out
