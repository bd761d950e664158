"""Fixture records for the report tests: three rows on three platforms (CPU, an H100 with resources and
energy, a Colab row whose framework name is an HTML attack and whose parity failed), from make_record."""

from __future__ import annotations

import statistics

from runner.workload.spec import hash_of
from sample_records import make_record

EVIL = "<script>window.__xss=1</script><img src=x onerror=\"window.__xss=2\">"
H100 = {"index": 0, "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-1", "memory_total_bytes": 85520809984,
        "driver_version": "550.54.15", "cuda_driver_version": "12.4", "compute_capability": "9.0"}


def run(framework="torch", device="cpu", platform="cpu", epochs=(3.0, 2.0, 2.2), accs=(0.97, 0.991, 0.993),
        created="2026-11-23T15:00:00Z", **kw) -> dict:
    """A record with per-epoch times and accuracies and the derived numbers set as the harness would,
    for the 0.99 target."""
    r = make_record(framework=framework, device=device, epochs=list(epochs), test_acc=list(accs),
                    steady=statistics.median(epochs[1:]), **kw)
    r["spec"]["target_accuracy"] = 0.99
    r["spec_hash"] = hash_of(r["spec"])  # a record whose spec differs from its hash is refused on read
    r["platform"]["name"] = platform
    r["created_utc"] = created
    r["timing"]["compile_s"] = max(0.0, epochs[0] - r["timing"]["steady_epoch_s"])
    r["timing"]["wall_s"] = sum(epochs) + 10.0
    r["metrics"]["epochs_completed"] = len(epochs)
    elapsed = 0.0
    for i, (t, a) in enumerate(zip(epochs, accs)):
        elapsed += t
        if a >= 0.99:
            r["metrics"]["time_to_target_s"], r["metrics"]["target_epoch"] = elapsed, i + 1
            break
    r["command"] = f"python -m runner run --framework {framework} --platform {platform}"
    r["software"]["runner_git_sha"] = "0123abc" + framework[:3]
    return r


def gpu_run(**kw) -> dict:
    r = run(framework="jax", version="0.10.2", device="cuda", platform="cuda", epochs=(9.0, 1.0, 1.1),
            accs=(0.98, 0.985, 0.992), **kw)
    r["hardware"]["gpus"] = [H100]
    r["resources"] = {
        "interval_s": 1.0, "samples": 12, "window_s": 12.0, "samples_file": None,
        "host": {"system_cpu_percent_mean": 50.0, "system_cpu_percent_max": 60.0, "process_cpu_percent_mean": 101.0,
                 "process_cpu_percent_max": 110.0, "rss_bytes_mean": 3e9, "rss_bytes_max": 3.1e9,
                 "peak_rss_bytes": 3 * 2**30, "other_cpu_percent_mean": 0.5, "other_cpu_percent_max": 2.0,
                 "load_avg_mean": 1.1, "load_avg_max": 1.3},
        "gpus": [{"index": 0, "uuid": "GPU-1", "name": H100["name"], "util_percent_mean": 87.0,
                  "util_percent_max": 99.0, "power_w_mean": 312.0, "power_w_max": 400.0}],
        "device_peak_memory_bytes": 2**30, "device_peak_memory_source": "jax memory_stats", "errors": {}}
    r["energy"] = {"joules": 1234.5, "method": "nvml-energy-counter", "scope": "GPU 0 board", "window_s": 12.0,
                   "parts": [{"source": "gpu", "joules": 1234.5, "method": "nvml-energy-counter",
                              "scope": "GPU 0 board"}], "errors": {}}
    return r


def fleet() -> list[dict]:
    cpu = [run(epochs=(3.0, s, s), created=f"2026-11-23T15:0{i}:00Z") for i, s in enumerate((2.0, 2.4, 2.2))]
    evil = run(framework=EVIL, version="1<b>", platform="colab", parity="fail", epochs=(5.0, 4.0, 4.0),
               accs=(0.9, 0.95, 0.96), created="2026-11-23T16:00:00Z")
    evil["command"] = "python -m runner run </code><script>alert(1)</script>"
    return cpu + [gpu_run(created="2026-11-23T17:00:00Z"), evil]
