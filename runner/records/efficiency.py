"""How far a run is from its hardware's limit: the record's `efficiency` block.

    python -m runner run ...      # build.finish fills it from the finished record
    python -m runner compare results/ --columns gflops,peak,j_image,j_target

block() reads only the record (spec, timing, metrics, hardware, device, parallel, energy), so a
record written today and an older one upgraded on read get the same numbers:
  * flops_per_image: runner.workload.flops (forward + backward + elementwise + Adam / batch).
  * achieved_flops_per_s: flops_per_image x metrics.images_per_s, the images of one steady epoch
    (the median after the first) per second, over the whole global batch: in a data-parallel run,
    every device's images together.
  * peak_flops_per_s: runner.machine.peak (x devices for several GPUs; a CPU's is the whole CPU's).
  * joules_per_image: energy.joules over the images trained in the energy window (it spans the
    whole training loop: the first epoch's compilation and every evaluation included).
  * joules_to_target: the energy is known only in total, so its share up to the end of the target
    epoch (its evaluation included) in proportion to the time (training + evaluation).
"""

from __future__ import annotations

from runner.machine import peak
from runner.workload import flops

NOT_WHOLE = ("interrupted", "failed")  # stopped mid-epoch: the window holds images no list counts


def block(record: dict) -> dict | None:
    """The record's efficiency block, or None for a record of no training (an operation study)."""
    if record.get("kind", "train") != "train":
        return None
    errors: dict[str, str] = {}
    out = {"flops_per_image": None, "flops_method": flops.METHOD, "achieved_flops_per_s": None,
           "peak_flops_per_s": None, "peak_source": None, "percent_of_peak": None, "joules_per_image": None,
           "joules_to_target": None, "errors": errors}
    spec, metrics = record["spec"], record.get("metrics") or {}
    try:
        out["flops_per_image"] = flops.of_spec(spec)["total"]
    except KeyError:
        errors["flops_per_image"] = f"model {spec.get('model')!r} is not in this dlbench's catalog"
    rate = metrics.get("images_per_s")
    if out["flops_per_image"] is not None and rate:
        out["achieved_flops_per_s"] = out["flops_per_image"] * rate
    elif not rate:
        errors["achieved_flops_per_s"] = "no training throughput (no epoch finished)"
    out["peak_flops_per_s"], out["peak_source"], why = peak.peak(record)
    errors.update(why)
    if out["achieved_flops_per_s"] is not None and out["peak_flops_per_s"]:
        out["percent_of_peak"] = 100 * out["achieved_flops_per_s"] / out["peak_flops_per_s"]
    _energy(record, out, errors)
    return out


def _energy(record: dict, out: dict, errors: dict) -> None:
    joules, timing, spec = (record.get("energy") or {}).get("joules"), record.get("timing") or {}, record["spec"]
    if joules is None:
        errors["joules_per_image"] = errors["joules_to_target"] = "no energy measured (see energy.errors)"
        return
    if record.get("status") in NOT_WHOLE:
        errors["joules_per_image"] = errors["joules_to_target"] = (
            f"the run is {record['status']}: its energy window ends mid-epoch")
        return
    train = timing.get("epoch_train_s") or []
    steps = (spec.get("limit_train") or _n_train(spec)) // spec["batch_size"]
    images = len(train) * steps * spec["batch_size"]
    if images:
        out["joules_per_image"] = joules / images
    else:
        errors["joules_per_image"] = "no epoch trained in the energy window"
    epoch = (record.get("metrics") or {}).get("target_epoch")
    if epoch is None:
        errors["joules_to_target"] = "the target accuracy was not reached (or the spec sets none)"
        return
    spans = [t + (e or 0.0) for t, e in zip(train, timing.get("eval_s") or [])]
    if sum(spans) > 0:
        # total energy x the time share up to the end of the target epoch's evaluation
        out["joules_to_target"] = joules * sum(spans[:epoch]) / sum(spans)


def _n_train(spec: dict) -> int:
    from runner.data.catalog import DATASETS

    return DATASETS[spec["dataset"]].n_train
