"""Host noise: the verdict on hand-built records, --until-stable leaving noisy runs out, and a real
run with busy processes started beside it."""

import copy
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from conftest import needs_torch, run_cli
from runner import records
from runner.launch import orchestrate
from runner.launch.orchestrate import Outcome, Repeats
from runner.measure import noise
from sample_records import make_record


def _record(other=None, other_max=None, load=None, start=None, cores=2, gpus=None, resources=True):
    r = make_record(steady=1.0)
    if not resources:
        r["resources"] = None
        return r
    r["resources"]["host"].update(other_cpu_percent_mean=other, other_cpu_percent_max=other_max,
                                  load_avg_mean=load, load_avg_max=load)
    r["resources"]["gpus"] = gpus
    r["environment"]["load_avg_start"] = start
    r["hardware"]["cpu"]["logical_cores"] = cores
    return r


def test_a_quiet_run_within_every_limit_is_quiet_and_keeps_what_was_measured():
    got = noise.judge(_record(other=3.2, other_max=9.0, load=1.9, start=[0.4, 0.3, 0.2], cores=2,
                              gpus=[{"index": 0, "other_processes_max": 0}]))
    assert got["verdict"] == "quiet" and got["reasons"] == []
    assert got["other_cpu_percent_mean"] == 3.2 and got["other_cpu_percent_max"] == 9.0
    assert got["load_avg"] == {"start": 0.4, "mean": 1.9, "max": 1.9} and got["gpu_other_processes"] == 0
    assert got["limits"] == {"other_cpu_percent_mean": 10.0, "gpu_other_processes": 0}
    assert "sampled every 1 s" in got["method"]
    records.validate({**make_record(), "host_noise": got})


def test_each_breach_is_one_reason_with_the_measured_value_and_the_limit():
    got = noise.judge(_record(other=61.4, other_max=90.0, load=3.4, cores=2,
                              gpus=[{"index": 0, "other_processes_max": 1}, {"index": 1, "other_processes_max": 2}]))
    assert got["verdict"] == "noisy"
    assert got["reasons"] == ["other processes used 61 % of the CPU (limit 10 %)",
                              "2 other processes used the GPU (limit 0)"]
    assert got["gpu_other_processes"] == 2  # the most on any one GPU
    records.validate({**make_record(), "host_noise": got})
    one = noise.judge(_record(other=0.0, cores=2, gpus=[{"index": 0, "other_processes_max": 1}]))
    assert one["reasons"] == ["1 other process used the GPU (limit 0)"]


def test_the_limit_is_exclusive_and_the_load_average_is_kept_not_judged():
    assert noise.judge(_record(other=10.0))["verdict"] == "quiet"
    assert noise.judge(_record(other=10.1))["verdict"] == "noisy"
    # measured: a quiet run right after a busy spell read load 3.8 on 2 cores (it lags a minute)
    got = noise.judge(_record(other=0.6, load=3.8, start=[4.0, 2.0, 1.0], cores=2))
    assert got["verdict"] == "quiet" and got["load_avg"] == {"start": 4.0, "mean": 3.8, "max": 3.8}


def test_nothing_measured_is_unknown_and_no_resources_is_no_block():
    got = noise.judge(_record())
    assert got["verdict"] == "unknown" and got["reasons"] == [] and "nothing measured" in got["method"]
    alone = noise.judge(_record(load=1.0))  # the load average alone is not judged
    assert alone["verdict"] == "unknown" and "load average alone is not judged" in alone["method"]
    assert noise.judge(_record(resources=False)) is None


def test_a_v5_record_is_judged_on_the_mean_share_it_kept(tmp_path):
    import json

    v5 = copy.deepcopy(make_record())
    del v5["host_noise"], v5["efficiency"]
    v5["schema_version"] = 5
    for k in ("other_cpu_percent_mean", "other_cpu_percent_max", "load_avg_mean", "load_avg_max"):
        del v5["resources"]["host"][k]
    v5["resources"]["host"].update(system_cpu_percent_mean=90.0, process_cpu_percent_mean=100.0)
    v5["hardware"]["cpu"]["logical_cores"] = 2
    (tmp_path / "v5.json").write_text(json.dumps(v5))
    got = records.read(tmp_path / "v5.json")["host_noise"]
    assert got["verdict"] == "noisy" and got["reasons"] == ["other processes used 40 % of the CPU (limit 10 %)"]


def test_a_share_just_past_the_limit_is_not_rounded_onto_it():
    got = noise.judge(_record(other=10.4, other_max=30.0, load=1.0, cores=2))
    assert got["reasons"] == ["other processes used 10.4 % of the CPU (limit 10 %)"]
    assert noise.judge(_record(other=10.0, other_max=30.0, load=1.0, cores=2))["verdict"] == "quiet"


# -- --until-stable --------------------------------------------------------------------------------

def _outcomes(*runs):
    return [Outcome("torch", "ok", Path(f"r{i}.json"), t, noisy) for i, (t, noisy) in enumerate(runs)]


def test_until_stable_leaves_noisy_runs_out_of_the_cv(capsys):
    repeats = Repeats(minimum=2, until_stable=True, cv_threshold=0.03, maximum=10)
    # with the noisy 2.0 s run the CV is ~40 %: stable only because it is left out
    mine = _outcomes((1.00, False), (2.00, True), (1.01, False), (1.02, False))
    assert orchestrate._another("torch", mine, repeats) is False
    assert "CV 1.0 % < 3 % after 3 quiet runs (1 noisy run not counted): stable" in capsys.readouterr().err
    # two quiet runs and a noisy one: the noisy one would make it unstable, the quiet ones are stable
    assert orchestrate._another("torch", _outcomes((1.0, False), (1.01, False), (5.0, True)), repeats) is False


def test_until_stable_asks_for_more_while_too_few_runs_are_quiet(capsys):
    repeats = Repeats(minimum=2, until_stable=True, cv_threshold=0.03, maximum=10)
    assert orchestrate._another("torch", _outcomes((1.0, True), (1.0, True), (1.0, False)), repeats) is True
    err = capsys.readouterr().err
    assert "CV n/a >= 3 % after 1 quiet run (2 noisy runs not counted): one more (cap 10)" in err


def test_max_repeats_caps_all_runs_noisy_ones_included(capsys):
    repeats = Repeats(minimum=2, until_stable=True, cv_threshold=0.03, maximum=3)
    assert orchestrate._another("torch", _outcomes((1.0, True), (1.0, False), (2.0, True)), repeats) is False
    assert "after 1 quiet run (2 noisy runs not counted), the cap of 3 runs: NOT stable" in capsys.readouterr().err


def test_without_noisy_runs_the_message_is_as_before(capsys):
    repeats = Repeats(minimum=2, until_stable=True, cv_threshold=0.03, maximum=10)
    assert orchestrate._another("torch", _outcomes((1.0, False), (1.0, False)), repeats) is False
    assert "CV 0.0 % < 3 % after 2 runs: stable" in capsys.readouterr().err


# -- a real run beside injected load --------------------------------------------------------------

@needs_torch
@pytest.mark.slow
def test_a_real_run_beside_busy_processes_is_recorded_noisy(tmp_path, synthetic_dir):
    """One busy loop per logical core beside a tiny run: others hold about half the CPU or more
    whatever the machine's speed, far beyond the 10 % limit, so the record says noisy and why."""
    cores = psutil.cpu_count() or 1
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)]
    try:
        out = run_cli("run", "--framework", "torch", "--dataset", "synthetic", "--preset", "smoke", "--epochs", "2",
                      "--parity-steps", "0", "--sample-interval", "0.02", "--data-dir", synthetic_dir,
                      "--out", tmp_path, "--no-table")
    finally:
        for p in busy:
            p.kill()
            p.wait()
    assert out.returncode == 0, out.stderr
    (path,) = tmp_path.glob("*.json")
    rec = records.read(path)
    hn = rec["host_noise"]
    assert rec["resources"]["samples"] >= 3
    assert hn["verdict"] == "noisy", hn
    assert hn["other_cpu_percent_mean"] > noise.OTHER_CPU_PERCENT_LIMIT
    assert hn["reasons"][0].startswith("other processes used ") and "% of the CPU (limit 10 %)" in hn["reasons"][0]
    assert hn["other_cpu_percent_max"] >= hn["other_cpu_percent_mean"]
    assert hn["load_avg"]["mean"] is not None and hn["load_avg"]["start"] is not None
    # the record re-judged on read gives the same verdict (the upgrader and finish use one rule)
    assert noise.judge(rec) == hn
    # compare marks the row
    compared = run_cli("compare", tmp_path)
    assert compared.returncode == 0 and "noisy host: other processes used" in compared.stdout
