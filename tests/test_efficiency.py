"""The record's efficiency block: FLOP/s from the model count, the device's peak, energy per image."""

from __future__ import annotations

import copy

import pytest

from sample_records import BASE
from runner import records
from runner.machine import peak
from runner.records import efficiency
from runner.workload import flops


def _cpu(**over):
    cpu = {"brand": "Intel(R) Xeon(R) Gold", "vendor": "GenuineIntel", "arch": "x86_64", "physical_cores": 2,
           "logical_cores": 4, "usable_cores": 4, "freq_mhz": {"current": 2600.0, "min": 800.0, "max": 2450.0},
           "flags": {"avx2": True, "avx512f": False, "amx": False, "neon": False}}
    return {**cpu, **over}


def test_cpu_peak_is_cores_times_max_clock_times_isa_width():
    value, source, why = peak.cpu_peak(_cpu())
    assert value == pytest.approx(2 * 2.45e9 * 32) and why is None
    assert source == "2 physical cores x 2.45 GHz (probe's max clock) x 32 FP32 FLOP/cycle (AVX2+FMA, 2 FMA units assumed)"
    # AVX-512: 64 per cycle; fewer usable cores than physical (an affinity mask): the usable ones
    value, source, _ = peak.cpu_peak(_cpu(usable_cores=1, flags={"avx2": True, "avx512f": True}))
    assert value == pytest.approx(2.45e9 * 64) and source.startswith("1 usable cores")


@pytest.mark.parametrize("over, says", [
    ({"freq_mhz": {"current": 2600.0, "min": None, "max": None}}, "no maximum clock"),
    ({"flags": None}, "no CPU flags"),
    ({"flags": {"avx2": False, "avx512f": False, "neon": True}}, "NEON"),
    ({"vendor": "AuthenticAMD", "flags": {"avx2": True, "avx512f": True}}, "Zen 4"),
    ({"physical_cores": None, "usable_cores": None}, "no cores"),
])
def test_cpu_peak_is_unknown_never_guessed(over, says):
    value, source, why = peak.cpu_peak(_cpu(**over))
    assert value is None and source is None and says in why


@pytest.mark.parametrize("name, tflops", [
    ("NVIDIA H100 80GB HBM3", 67), ("NVIDIA H100 PCIe", 51), ("NVIDIA H200", 67), ("NVIDIA A100-SXM4-80GB", 19.5),
    ("NVIDIA A100 80GB PCIe", 19.5), ("Tesla V100-SXM2-16GB", 15.7), ("Tesla V100-PCIE-32GB", 14), ("Tesla T4", 8.1),
    ("NVIDIA L4", 30.3), ("NVIDIA A10G", 35.0), ("NVIDIA A10", 31.2), ("NVIDIA GeForce RTX 4090", 82.6),
    ("NVIDIA GeForce RTX 3090", 35.6), ("Tesla P100-PCIE-16GB", 9.3), ("Tesla P100-SXM2-16GB", 10.6)])
def test_gpu_peak_from_the_datasheet_table(name, tflops):
    value, source = peak.gpu_peak(name)
    assert value == pytest.approx(tflops * 1e12) and "TFLOP/s FP32" in source


def test_unknown_gpus_have_no_peak():
    assert peak.gpu_peak("NVIDIA GeForce RTX 3090 Ti") == (None, None)
    assert peak.gpu_peak("NVIDIA H100") == (None, None)  # which H100? not guessed
    assert peak.gpu_peak(None) == (None, None)


def _record(**over) -> dict:
    r = copy.deepcopy(BASE)
    for key, value in over.items():
        r[key] = value
    return r


def test_block_of_a_cpu_record():
    r = _record()
    r["hardware"]["cpu"] = _cpu()
    e = efficiency.block(r)
    per_image = flops.per_image("lenet5", 64)["total"]
    assert e["flops_per_image"] == per_image
    assert e["achieved_flops_per_s"] == pytest.approx(per_image * r["metrics"]["images_per_s"])
    assert e["peak_flops_per_s"] == pytest.approx(156.8e9)
    assert e["percent_of_peak"] == pytest.approx(100 * e["achieved_flops_per_s"] / 156.8e9)
    assert e["joules_per_image"] is None and "no energy" in e["errors"]["joules_per_image"]


def test_block_of_a_data_parallel_gpu_run_counts_every_device():
    r = _record(device={"kind": "cuda", "name": "NVIDIA H100 80GB HBM3", "requested": "cuda"})
    r["parallel"] = {**r["parallel"], "world_size": 2, "processes": 2, "devices": 2}
    e = efficiency.block(r)
    assert e["peak_flops_per_s"] == pytest.approx(2 * 67e12) and e["peak_source"].startswith("2 x 67 TFLOP/s")
    r["device"]["name"] = "NVIDIA Mystery 9000"
    e = efficiency.block(r)
    assert e["peak_flops_per_s"] is None and "Mystery" in e["errors"]["peak_flops_per_s"]
    assert e["achieved_flops_per_s"] is not None and e["percent_of_peak"] is None


def test_energy_per_image_and_to_target():
    r = _record()
    r["spec"] = {**r["spec"], "epochs": 4, "target_accuracy": 0.9}
    r["timing"] = {**r["timing"], "epoch_train_s": [3.0, 2.0, 2.0, 2.0], "eval_s": [1.0, 1.0, 1.0, 1.0]}
    r["metrics"] = {**r["metrics"], "target_epoch": 2}
    r["energy"] = {**r["energy"], "joules": 1300.0}
    e = efficiency.block(r)
    assert e["joules_per_image"] == pytest.approx(1300.0 / (4 * 2048))  # 32 steps of 64 per epoch
    assert e["joules_to_target"] == pytest.approx(1300.0 * 7 / 13)     # (3+1 + 2+1) of 13 s
    r["metrics"]["target_epoch"] = None
    assert "not reached" in efficiency.block(r)["errors"]["joules_to_target"]
    r["status"] = "interrupted"
    e = efficiency.block(r)
    assert e["joules_per_image"] is None and "mid-epoch" in e["errors"]["joules_per_image"]


def test_studies_have_no_block_and_an_unknown_model_says_so():
    assert efficiency.block({**BASE, "kind": "ensemble"}) is None
    r = _record()
    r["spec"] = {**r["spec"], "model": "vgg99"}
    e = efficiency.block(r)
    assert e["flops_per_image"] is None and "vgg99" in e["errors"]["flops_per_image"]


def test_upgraded_old_records_get_the_numbers():
    """The v5 -> v6 upgrader fills the block with the same function (BASE is a v5-era fixture upgraded)."""
    assert BASE["efficiency"]["flops_per_image"] == flops.per_image("lenet5", 64)["total"]
    r = _record()
    r["hardware"]["cpu"] = _cpu()
    r["energy"] = {**r["energy"], "joules": 50.0}
    r["efficiency"] = efficiency.block(r)
    records.validate(r)  # the schema takes every number the block writes
