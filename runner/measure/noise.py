"""Was the machine busy with other work while a run was timed? The verdict a record keeps in `host_noise`.

    python -m runner run ...      # the sampler measures; build.finish judges from the record's resources
    python -m runner compare ...  # a row with noisy runs says so, and times from its quiet runs

judge() reads only the record (its `resources`, `environment` and `hardware`), so a record written
today and an older one upgraded on read are judged by the same rule. A run is "noisy" when a measured
value is beyond one of the limits below (one reason per breach, with the value and the limit),
"unknown" when none of them was measured, "quiet" otherwise.
"""

from __future__ import annotations

# The limits, chosen by measurement on a 2-core VM (torch, synthetic data, smoke preset, 3 epochs,
# samples every 0.2 s; issue 29; every number taken beside other helpers' work, so the machine was never
# idle):
#   - with nothing of ours beside the run, other processes read 0-5 % on an idle machine (a shell, the
#     sampler's own parent); with other developers' test suites beside it they read 48-64 %;
#   - one busy loop started beside the run (what the test injects) adds 14-25 points on top of whatever
#     ran already, and on an idle 2-core machine alone takes 30-50 % (it shares the cores with the
#     run's 2 threads), slowing the steady epoch by 1.3-3x.
# 10 % sits well above an idle machine's few percent and well below the ~30 % one busy process takes
# of 2 cores (on n cores it takes up to 100/n %; on 16+ cores one busy process may stay under the
# limit: it also disturbs the run less, and the load average below sees it).
OTHER_CPU_PERCENT_LIMIT = 10.0
# The 1-minute load average counts runnable threads; this run alone adds at most about one per core
# (its intra-op threads). More than 1.5 per core on average over the timed window means others wanted
# at least half the machine besides it. The load average lags (a 1-minute mean, ~15 % of a step shows
# after 10 s): it catches a machine that was already busy, the CPU share above catches load that starts
# during the run. Judged on the mean sampled during the run; its value at the start is kept, not judged
# (under repeats it includes the previous run of the same benchmark).
LOAD_PER_CORE_LIMIT = 1.5
# Any other process with a context on one of the run's GPUs shares its SMs and memory bandwidth.
GPU_OTHER_PROCESSES_LIMIT = 0

METHOD = ("other processes' share of all cores (system CPU % less this run's processes', sampled every"
          " {interval} s during training) and the 1-minute load average per logical core, sampled likewise;"
          " on NVIDIA GPUs, the processes other than this run's holding a context (NVML). Limits: others'"
          " mean CPU share > {cpu:g} %, mean load > {load:g} per core, more than {gpu} other GPU"
          " processes. The others' maximum share and the load at the start are kept, not judged.")


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
    cores = _num(((record.get("hardware") or {}).get("cpu") or {}).get("logical_cores"))
    gpu_others = gpu_other_processes(resources.get("gpus"))

    reasons = []
    if cpu_mean is not None and cpu_mean > OTHER_CPU_PERCENT_LIMIT:
        reasons.append(f"other processes used {cpu_mean:.0f} % of the CPU (limit {OTHER_CPU_PERCENT_LIMIT:g} %)")
    if load_mean is not None and cores and load_mean / cores > LOAD_PER_CORE_LIMIT:
        reasons.append(f"load average {load_mean:.1f} on {cores:g} cores (limit {LOAD_PER_CORE_LIMIT:g} per core,"
                       f" {LOAD_PER_CORE_LIMIT * cores:g})")
    if gpu_others is not None and gpu_others > GPU_OTHER_PROCESSES_LIMIT:
        reasons.append(f"{gpu_others} other process{'es' * (gpu_others != 1)} used the GPU"
                       f" (limit {GPU_OTHER_PROCESSES_LIMIT})")
    measured = cpu_mean is not None or (load_mean is not None and cores) or gpu_others is not None
    method = METHOD.format(interval=f"{resources.get('interval_s'):g}" if _num(resources.get("interval_s")) else "?",
                           cpu=OTHER_CPU_PERCENT_LIMIT, load=LOAD_PER_CORE_LIMIT, gpu=GPU_OTHER_PROCESSES_LIMIT)
    if not measured:
        method = "nothing measured: the record has neither the others' CPU share, the load average nor GPU processes"
    return {"verdict": "noisy" if reasons else "quiet" if measured else "unknown", "reasons": reasons,
            "other_cpu_percent_mean": cpu_mean, "other_cpu_percent_max": cpu_max,
            "load_avg": {"start": load_start, "mean": load_mean, "max": load_max},
            "gpu_other_processes": gpu_others,
            "limits": {"other_cpu_percent_mean": OTHER_CPU_PERCENT_LIMIT, "load_avg_per_core_mean": LOAD_PER_CORE_LIMIT,
                       "gpu_other_processes": GPU_OTHER_PROCESSES_LIMIT},
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
