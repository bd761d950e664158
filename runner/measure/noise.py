"""Was the machine busy with other work while a run was timed? The verdict a record keeps in `host_noise`.

    python -m runner run ...      # the sampler measures; build.finish judges from the record's resources
    python -m runner compare ...  # a row with noisy runs says so, and times from its quiet runs

judge() reads only the record (its `resources` and `environment`), so a record written
today and an older one upgraded on read are judged by the same rule. A run is "noisy" when a measured
value is beyond one of the limits below (one reason per breach, with the value and the limit),
"unknown" when none of them was measured, "quiet" otherwise.
"""

from __future__ import annotations

# The limit on the others' CPU share, chosen by measurement on this project's 2-core VM (torch, synthetic
# data, --preset smoke --epochs 3, samples every 0.2 s; steady epochs of ~0.13 s when alone; issue 29;
# other helpers' work ran beside some of these, which is what it is meant to catch):
#   - quiet (nothing else running):               others 0.2 and 0.7 %,   steady epoch 0.131-0.136 s
#   - one busy loop beside it, 4 runs:             others 43.0-44.0 %,     steady 1.60-1.98 s (12-15x)
#   - two busy loops beside it, 4 runs:            others 36.6-64.1 %,     steady 0.35-3.06 s
#   - nothing injected, another helper's job ran:  others 16.7 %: steady 0.273 s (2x); 40.4 %: 1st epoch 30x
#   - a busy machine (others' test suites, load 3.3-6 on 2 cores), 0-2 busy loops: 11 runs read 38-84 %,
#     one (nothing injected, the others had paused) 0.6 % with its epochs at the quiet speed
# 10 % sits above a quiet machine's reading (< 1 %, a few % with a shell or an editor) and below the
# smallest share seen to slow the run (16.7 %: 2x). One busy process can take at most 100/n % of n
# cores, so on 10+ cores a single one may pass unflagged; the test injects one per core (2 on 2 cores read
# 36.6-64.1 % above: the run's own threads hold the rest).
OTHER_CPU_PERCENT_LIMIT = 10.0
# Any other process with a context on one of the run's GPUs shares its SMs and memory bandwidth.
GPU_OTHER_PROCESSES_LIMIT = 0
# The 1-minute load average is recorded (start, mean, max) but not judged: it lags (a run of seconds
# sees mostly the minute before it: one quiet run, others 0.6 %, epochs at full speed, read load 3.8
# on 2 cores right after a busy spell), and it counts this run's own threads (DataLoader workers,
# TF's pools), so a run with 8 workers on 2 cores would read "busy" by itself. The others' CPU share
# has neither fault.

METHOD = ("other processes' share of all cores (system CPU % less this run's processes', sampled every"
          " {interval} s during training), and on NVIDIA GPUs the processes other than this run's holding a"
          " context (NVML). Noisy when the others' mean share > {cpu:g} % or more than {gpu} other GPU processes;"
          " the others' maximum share and the 1-minute load average (start, mean, max) are kept, not judged.")


def _num(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def judge(record: dict) -> dict | None:
    """The record's host_noise block, or None if training never started (no resources sampled)."""
    resources = record.get("resources")
    if resources is None:
        return None
    host = resources.get("host") or {}
    cpu_mean, cpu_max = _num(host.get("other_cpu_percent_mean")), _num(host.get("other_cpu_percent_max"))
    load_mean, load_max = _num(host.get("load_avg_mean")), _num(host.get("load_avg_max"))
    start = (record.get("environment") or {}).get("load_avg_start")
    load_start = _num(start[0]) if isinstance(start, list) and start else None
    gpu_others = gpu_other_processes(resources.get("gpus"))

    reasons = []
    if cpu_mean is not None and cpu_mean > OTHER_CPU_PERCENT_LIMIT:
        # whole percent, unless rounding would show 10.4 % as the limit it passed ("used 10 % (limit 10 %)")
        shown = f"{cpu_mean:.0f}" if round(cpu_mean) > OTHER_CPU_PERCENT_LIMIT else f"{cpu_mean:.1f}"
        reasons.append(f"other processes used {shown} % of the CPU (limit {OTHER_CPU_PERCENT_LIMIT:g} %)")
    if gpu_others is not None and gpu_others > GPU_OTHER_PROCESSES_LIMIT:
        reasons.append(f"{gpu_others} other process{'es' * (gpu_others != 1)} used the GPU"
                       f" (limit {GPU_OTHER_PROCESSES_LIMIT})")
    measured = cpu_mean is not None or gpu_others is not None
    method = METHOD.format(interval=f"{resources.get('interval_s'):g}" if _num(resources.get("interval_s")) else "?",
                           cpu=OTHER_CPU_PERCENT_LIMIT, gpu=GPU_OTHER_PROCESSES_LIMIT)
    if not measured:
        method = ("nothing measured: the record has neither the others' CPU share nor GPU processes"
                  + (" (the load average alone is not judged)" if load_mean is not None else ""))
    return {"verdict": "noisy" if reasons else "quiet" if measured else "unknown", "reasons": reasons,
            "other_cpu_percent_mean": cpu_mean, "other_cpu_percent_max": cpu_max,
            "load_avg": {"start": load_start, "mean": load_mean, "max": load_max},
            "gpu_other_processes": gpu_others,
            "limits": {"other_cpu_percent_mean": OTHER_CPU_PERCENT_LIMIT, "gpu_other_processes": GPU_OTHER_PROCESSES_LIMIT},
            "method": method}


def gpu_other_processes(gpus) -> int | None:
    """The most other processes seen at once on any of the run's GPUs; None where none was counted."""
    counts = [g.get("other_processes_max") for g in gpus or [] if isinstance(g, dict)]
    counts = [c for c in counts if isinstance(c, int) and not isinstance(c, bool)]
    return max(counts) if counts else None


def is_noisy(record: dict) -> bool:
    return (record.get("host_noise") or {}).get("verdict") == "noisy"


def worst_reason(records: list[dict]) -> str | None:
    """The first reason of the most disturbed noisy run (by the others' mean CPU share), or None."""
    noisy = [r for r in records if is_noisy(r) and r["host_noise"]["reasons"]]
    if not noisy:
        return None
    worst = max(noisy, key=lambda r: r["host_noise"].get("other_cpu_percent_mean") or -1.0)
    return worst["host_noise"]["reasons"][0]
