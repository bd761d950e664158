"""The resource sampler: real on this machine (host readings, no NVML), GPU paths on the fake NVML."""

import os
import subprocess
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
    start = time.perf_counter()
    # Busy until the thread has sampled on its interval at least twice (a loaded machine delays it),
    # and for 0.4 s at least.
    while len(s.samples) < 3 or time.perf_counter() - start < 0.4:
        _busy(0.05)
        assert time.perf_counter() - start < 120, "the sampler thread took no sample in 2 minutes"
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
         "load_avg": 1.5, "gpus": [{"index": 0, "util_percent": 0, "memory_used_bytes": 10, "power_w": 60.0, "sm_clock_mhz": None,
                                                   "other_processes": 2}]},
        {"t": 1.0, "system_cpu_percent": 30.0, "process_cpu_percent": None, "rss_bytes": 300, "other_cpu_percent": None,
         "load_avg": 2.5, "gpus": [{"index": 0, "util_percent": 100, "memory_used_bytes": 30, "power_w": 300.0, "sm_clock_mhz": None,
                                                   "other_processes": 0}]},
    ]
    got = resource_summary(samples, [{"index": 0, "uuid": "GPU-x", "name": "X"}])
    assert got["host"] == {"system_cpu_percent_mean": 20.0, "system_cpu_percent_max": 30.0,
                           "process_cpu_percent_mean": 90.0, "process_cpu_percent_max": 90.0,
                           "rss_bytes_mean": 200.0, "rss_bytes_max": 300, "other_cpu_percent_mean": 0.0,
                           "other_cpu_percent_max": 0.0, "load_avg_mean": 2.0, "load_avg_max": 2.5}
    assert got["gpus"] == [{"index": 0, "uuid": "GPU-x", "name": "X", "util_percent_mean": 50.0,
                            "util_percent_max": 100, "memory_used_bytes_mean": 20.0, "memory_used_bytes_max": 30,
                            "power_w_mean": 180.0, "power_w_max": 300.0, "sm_clock_mhz_mean": None,
                            "sm_clock_mhz_max": None, "other_processes_max": 2}]


def _gpu_session(monkeypatch, **gpu):
    nv = fake_pynvml.make([fake_pynvml.GPU(**gpu)])
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return nv


def test_other_processes_on_a_gpu_are_counted_and_this_run_and_its_children_are_not(monkeypatch):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        # pid 1 and the test's parent exist here and are not this run's; this process and its child are
        gpu = fake_pynvml.GPU(compute_pids=[os.getpid(), child.pid, 1], graphics_pids=[os.getppid(), 1])
        nv = fake_pynvml.make([gpu])
        monkeypatch.setitem(sys.modules, "pynvml", nv)
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        s = Sampler(interval_s=0.02).start()
        time.sleep(0.1)
        gpu.compute_pids, gpu.graphics_pids = [os.getpid()], []  # the others leave mid-run
        time.sleep(0.1)
        samples = s.stop()
    finally:
        child.kill()
        child.wait()
    counts = [x["gpus"][0]["other_processes"] for x in samples]
    assert counts[0] == 2 and counts[-1] == 0 and set(counts) == {0, 2}
    (g,) = resource_summary(samples, s.gpus)["gpus"]
    assert g["other_processes_max"] == 2 and "other_processes_mean" not in g
    assert not any("other_processes" in k for k in s.errors)


def test_a_pid_from_another_pid_namespace_is_not_counted_and_said_once(monkeypatch):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # reaped: its PID names no process here, as a host PID seen from a container
    _gpu_session(monkeypatch, compute_pids=[gone.pid, 1])
    s = Sampler(interval_s=0.02).start()
    time.sleep(0.06)
    samples = s.stop()
    assert {x["gpus"][0]["other_processes"] for x in samples} == {1}
    assert "1 process(es) by a PID this PID namespace does not have" in s.errors["gpus.other_processes_unseen"]


def test_a_gpu_that_cannot_list_processes_reads_null_with_its_reason_once(monkeypatch):
    _gpu_session(monkeypatch, unsupported={"nvmlDeviceGetComputeRunningProcesses"})
    s = Sampler(interval_s=0.02).start()
    time.sleep(0.06)
    samples = s.stop()
    assert all(x["gpus"][0]["other_processes"] is None for x in samples)
    assert all(x["gpus"][0]["util_percent"] == 87 for x in samples)  # the other readings go on
    assert s.errors["gpus[0].other_processes"] == "NVMLError_NotSupported: Not Supported"
    assert resource_summary(samples, s.gpus)["gpus"][0]["other_processes_max"] is None


def test_the_runs_child_processes_count_as_its_own_cpu_not_as_other_processes():
    """A DataLoader worker is the run's own work: its CPU is added to this process' before the
    others' share is taken."""
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        s = Sampler(interval_s=0.05).start()
        deadline = time.monotonic() + 10
        while child.pid not in s._own_pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert child.pid in s._own_pids()
        time.sleep(0.3)
        run = s._run_cpu()
        s.stop()
    finally:
        child.kill()
        child.wait()
    assert run > 0  # the busy child's CPU, read as this run's


def test_children_that_start_and_end_between_two_readings_count_as_the_runs_cpu():
    """torch.compile's C compiler, a short epoch's DataLoader worker: gone before the next reading,
    their CPU time still reaches this process' children times, and the run's share, not the others'."""
    import resource

    s = Sampler(interval_s=60).start()  # no reading from the thread in between: only the two below
    try:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.time()
        s._run_cpu()
        for _ in range(3):  # each ends before the next reading
            subprocess.run([sys.executable, "-c", "import time\nt = time.process_time()\n"
                            "while time.process_time() - t < 0.2: pass"], check=True)
        run = s._run_cpu()
        wall = time.time() - t0
    finally:
        s.stop()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    children = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    assert children >= 0.6
    counted = run / 100 * wall  # the run's CPU seconds the sampler counted over the same window
    assert 0.8 * children <= counted <= 1.2 * children, (counted, children)
