"""Was the machine busy with other work while a run was timed? The verdict a record keeps in `host_noise`.

    python -m runner run ...      # the sampler measures; build.finish judges from the record's resources

judge() reads only the record (its `resources` and `environment`), so a record written today and an
older one upgraded on read are judged by the same rule.
"""

from __future__ import annotations


def judge(record: dict) -> dict | None:
    """The record's host_noise block, or None if training never started (no resources sampled)."""
    if record.get("resources") is None:
        return None
    return {"verdict": "unknown", "reasons": [], "other_cpu_percent_mean": None, "other_cpu_percent_max": None,
            "load_avg": {"start": None, "mean": None, "max": None}, "gpu_other_processes": None,
            "limits": {}, "method": "not measured yet"}
