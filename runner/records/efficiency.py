"""How far a run is from its hardware's limit: the record's `efficiency` block.

    python -m runner run ...      # build.finish fills it from the finished record

block() reads only the record (spec, timing, metrics, hardware, device, energy), so a record written
today and an older one upgraded on read get the same numbers.
"""

from __future__ import annotations


def block(record: dict) -> dict | None:
    """The record's efficiency block, or None for a record of no training (an operation study)."""
    if record.get("kind", "train") != "train":
        return None
    return {"flops_per_image": None, "flops_method": "not computed yet", "achieved_flops_per_s": None,
            "peak_flops_per_s": None, "peak_source": None, "percent_of_peak": None, "joules_per_image": None,
            "joules_to_target": None, "errors": {}}
