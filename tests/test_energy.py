"""Energy: NVML counters and integrated power on the fake NVML, RAPL on a fake powercap tree, and
the real meter on this machine (no NVML, no powercap: null with reasons, never 0)."""

import sys
from pathlib import Path

import pytest

import fake_pynvml
from runner.measure import energy


class Clock:
    def __init__(self, *times):
        self.times = list(times)

    def __call__(self):
        return self.times.pop(0)


@pytest.fixture(autouse=True)
def _all_gpus_visible(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def _rapl(root: Path, zone: str, name: str, uj: int, max_uj: int = 262_143_328_850):
    d = root / zone
    d.mkdir(parents=True)
    (d / "name").write_text(name + "\n")
    (d / "energy_uj").write_text(f"{uj}\n")
    (d / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return d


def test_integrate_power_by_trapezoids():
    s = lambda t, w: {"t": t, "gpus": [{"index": 0, "power_w": w}, {"index": 1, "power_w": 1000.0}]}  # noqa: E731
    assert energy.integrate_power([s(0, 100.0), s(1, 100.0), s(2, 100.0)], 0) == 200.0
    assert energy.integrate_power([s(0, 0.0), s(2, 100.0)], 0) == 100.0   # a ramp: the mean power x time
    assert energy.integrate_power([s(0, 100.0)], 0) is None                # one reading is no integral
    assert energy.integrate_power([s(0, None), s(1, 50.0)], 0) is None


def test_this_machine_has_no_reading_and_says_why():
    got = energy.Meter().start().stop([], None, 1.0)
    assert got["joules"] is None and got["parts"] == [] and got["method"] == "none"
    assert got["scope"].startswith("nothing measured")
    assert got["errors"]["gpu"].startswith("NVML unavailable (")
    assert "cpu" in got["errors"] and got["window_s"] >= 0


def test_gpu_counter_difference(monkeypatch, tmp_path):
    gpus = [fake_pynvml.GPU(energy_mj=5_000_000, energy_step_mj=1_234_500)]
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml.make(gpus))
    got = energy.Meter(powercap=tmp_path, clock=Clock(10.0, 12.5)).start().stop([], [{"index": 0}], 1.0)
    assert got["joules"] == pytest.approx(1234.5)  # one step of the counter between the two reads
    assert got["method"] == "NVML total energy counter"
    assert got["scope"] == "GPU 0 NVIDIA H100 80GB HBM3 (whole board)"
    assert got["window_s"] == 2.5
    assert got["parts"] == [{"source": "gpu", "joules": pytest.approx(1234.5), "method": "NVML total energy counter",
                             "scope": "GPU 0 NVIDIA H100 80GB HBM3 (whole board)"}]
    assert set(got["errors"]) == {"cpu"}  # no RAPL zone under the empty tmp_path


def test_gpu_without_counter_integrates_the_samplers_power(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml.make([fake_pynvml.GPU(name="Tesla P100", energy_mj=None)]))
    samples = [{"t": t, "gpus": [{"index": 0, "power_w": 200.0}]} for t in (0.0, 0.5, 1.0, 1.5)]
    got = energy.Meter(powercap=tmp_path).start().stop(samples, [{"index": 0, "name": "Tesla P100"}], 0.5)
    assert got["joules"] == pytest.approx(300.0)
    assert got["method"] == "NVML power samples integrated (trapezoid, every 0.5 s)"
    assert got["scope"] == "GPU 0 Tesla P100 (whole board)"
    assert got["errors"]["gpus[0].energy_counter"] == "NVMLError_NotSupported: Not Supported"


def test_rapl_packages_sum_with_wraparound_and_skip_subzones(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml.make([], init_error=fake_pynvml.NVMLError_LibraryNotFound()))
    p0 = _rapl(tmp_path, "intel-rapl:0", "package-0", 1_000_000)
    p1 = _rapl(tmp_path, "intel-rapl:1", "package-1", 999_000_000, max_uj=1_000_000_000)
    _rapl(tmp_path, "intel-rapl:0:0", "core", 5)
    meter = energy.Meter(powercap=tmp_path).start()
    (p0 / "energy_uj").write_text("51000000\n")   # +50 J
    (p1 / "energy_uj").write_text("4000000\n")    # wrapped: +1 J to the top, +4 J after
    got = meter.stop([], None, 1.0)
    assert [p["scope"] for p in got["parts"]] == ["CPU package-0 (whole package, all processes)",
                                                   "CPU package-1 (whole package, all processes)"]
    assert [p["joules"] for p in got["parts"]] == [50.0, 5.0]
    assert got["joules"] == 55.0 and got["method"] == "RAPL powercap counter"
    assert got["scope"].count(" + ") == 1 and "gpu" in got["errors"]


def test_gpu_and_cpu_together_name_both(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml.make([fake_pynvml.GPU(energy_step_mj=10_000)]))
    zone = _rapl(tmp_path, "intel-rapl:0", "package-0", 0)
    meter = energy.Meter(powercap=tmp_path).start()
    (zone / "energy_uj").write_text("2500000\n")
    got = meter.stop([], [{"index": 0}], 1.0)
    assert got["joules"] == pytest.approx(12.5)
    assert got["method"] == "NVML total energy counter + RAPL powercap counter"
    assert got["errors"] == {}


def test_unreadable_or_unmoving_rapl_is_no_reading_not_zero(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml.make([], init_error=fake_pynvml.NVMLError_LibraryNotFound()))
    _rapl(tmp_path, "intel-rapl:0", "package-0", 7)          # does not move: 0 J is not a reading
    bad = tmp_path / "intel-rapl:1"
    (bad / "energy_uj").mkdir(parents=True)                  # unreadable (a folder where a file should be)
    got = energy.Meter(powercap=tmp_path).start().stop([], None, 1.0)
    assert got["joules"] is None and got["method"] == "none"
    assert "intel-rapl:1/energy_uj" in got["errors"]["cpu"]
