"""The resource sampler: real on this machine (host readings, no NVML), GPU paths on the fake NVML."""

import sys
import time

import pytest

import fake_pynvml
from runner.measure.sampler import Sampler, other_cpu_percent, resource_summary


def _busy(seconds: float):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        sum(range(1000))


def test_real_sampler_reads_the_host_and_says_why_there_is_no_gpu():
    s = Sampler(interval_s=0.05).start()
    _busy(0.4)
    samples = s.stop()
    assert len(samples) >= 4  # the first, several on the interval, the last
    ts = [x["t"] for x in samples]
    assert ts == sorted(ts) and ts[0] == 0 and ts[-1] >= 0.4
    assert all(x["rss_bytes"] > 10 * 2**20 for x in samples)
    summary = resource_summary(samples, s.gpus)
    assert summary["host"]["process_cpu_percent_max"] > 20  # a busy Python loop: about one core
    assert 0 <= summary["host"]["system_cpu_percent_mean"] <= 100
    assert summary["host"]["rss_bytes_max"] >= summary["host"]["rss_bytes_mean"] > 0
    assert s.gpus is None and summary["gpus"] is None
    assert s.errors["gpus"].startswith("NVML unavailable (")
    assert "gpus" not in samples[0]


def test_stop_ends_the_thread_at_once():
    s = Sampler(interval_s=30).start()
    t0 = time.perf_counter()
    s.stop()
    assert time.perf_counter() - t0 < 1 and len(s.samples) == 2 and s._thread is None


def test_interval_must_be_positive():
    with pytest.raises(ValueError, match="> 0"):
        Sampler(interval_s=0)


def test_gpus_on_fake_nvml_follow_cuda_visible_devices(monkeypatch):
    gpus = [fake_pynvml.GPU(uuid="GPU-aaaa"), fake_pynvml.GPU(name="NVIDIA A100", uuid="GPU-bbbb", util=50,
                                                                power_mw=120_500, sm_mhz=1410)]
    nv = fake_pynvml.make(gpus)
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    s = Sampler(interval_s=0.02).start()
    time.sleep(0.1)
    samples = s.stop()
    assert s.gpus == [{"index": 1, "uuid": "GPU-bbbb", "name": "NVIDIA A100"}]
    assert all([g["index"] for g in x["gpus"]] == [1] for x in samples)
    (g,) = resource_summary(samples, s.gpus)["gpus"]
    assert g["util_percent_mean"] == g["util_percent_max"] == 50
    assert g["power_w_mean"] == 120.5 and g["sm_clock_mhz_max"] == 1410
    assert g["memory_used_bytes_max"] == 1_000_000_000
    assert nv.state["initialized"] == nv.state["shutdowns"] == 1  # closed again


def test_a_reading_nvml_does_not_support_is_null_with_its_reason_and_not_retried(monkeypatch):
    gpu = fake_pynvml.GPU(unsupported={"nvmlDeviceGetClockInfo"})
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml.make([gpu]))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    calls = []
    original = sys.modules["pynvml"].nvmlDeviceGetClockInfo
    monkeypatch.setattr(sys.modules["pynvml"], "nvmlDeviceGetClockInfo", lambda *a: calls.append(1) or original(*a))
    s = Sampler(interval_s=0.02).start()
    time.sleep(0.08)
    samples = s.stop()
    (g,) = resource_summary(samples, s.gpus)["gpus"]
    assert g["sm_clock_mhz_mean"] is None and g["sm_clock_mhz_max"] is None
    assert g["util_percent_mean"] == 87
    assert s.errors == {"gpus[0].sm_clock_mhz": "NVMLError_NotSupported: Not Supported"}
    assert len(calls) == 1


def test_the_other_processes_share_is_the_system_share_less_this_process_per_core():
    assert other_cpu_percent(80.0, 100.0, 2) == 30.0  # one of two cores ours, the other 60 % busy
    assert other_cpu_percent(49.0, 100.0, 2) == 0.0   # readings microseconds apart: clamped, never negative
    assert other_cpu_percent(None, 100.0, 2) is None and other_cpu_percent(50.0, 10.0, None) is None


def test_resource_summary_on_fixed_samples():
    samples = [
        {"t": 0.0, "system_cpu_percent": 10.0, "process_cpu_percent": 90.0, "rss_bytes": 100, "other_cpu_percent": 0.0,
         "load_avg": 1.5, "gpus": [{"index": 0, "util_percent": 0, "memory_used_bytes": 10, "power_w": 60.0, "sm_clock_mhz": None}]},
        {"t": 1.0, "system_cpu_percent": 30.0, "process_cpu_percent": None, "rss_bytes": 300, "other_cpu_percent": None,
         "load_avg": 2.5, "gpus": [{"index": 0, "util_percent": 100, "memory_used_bytes": 30, "power_w": 300.0, "sm_clock_mhz": None}]},
    ]
    got = resource_summary(samples, [{"index": 0, "uuid": "GPU-x", "name": "X"}])
    assert got["host"] == {"system_cpu_percent_mean": 20.0, "system_cpu_percent_max": 30.0,
                           "process_cpu_percent_mean": 90.0, "process_cpu_percent_max": 90.0,
                           "rss_bytes_mean": 200.0, "rss_bytes_max": 300, "other_cpu_percent_mean": 0.0,
                           "other_cpu_percent_max": 0.0, "load_avg_mean": 2.0, "load_avg_max": 2.5}
    assert got["gpus"] == [{"index": 0, "uuid": "GPU-x", "name": "X", "util_percent_mean": 50.0,
                            "util_percent_max": 100, "memory_used_bytes_mean": 20.0, "memory_used_bytes_max": 30,
                            "power_w_mean": 180.0, "power_w_max": 300.0, "sm_clock_mhz_mean": None,
                            "sm_clock_mhz_max": None}]
