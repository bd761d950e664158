"""The command line as a user runs it: real subprocesses, real PyTorch, real records."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import FRAMEWORK_MODULES, ROOT, needs_jax, needs_tf, needs_torch, run_cli
from runner import records


def _records(folder):
    return [records.read(p) for p in sorted(folder.glob("*.json"))]


def test_no_framework_is_imported_with_the_package():
    code = ("import sys, runner, runner.cli, runner.workload.spec, runner.report.compare, runner.records, runner.backends,"
            " runner.launch.orchestrate, runner.jobs.train, runner.workload.harness, runner.data.store, runner.machine.probe,"
            " runner.workload.layouts, runner.parity.float64, runner.parity.gate, runner.parity.verify, runner.backends.torch_backend,"
            " runner.backends.tf_backend, runner.backends.jax_backend;"
            " runner.cli.build_parser();"
            f" print([m for m in {FRAMEWORK_MODULES!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_a_subcommand_imports_only_its_own_cli_module_and_help_none():
    """main builds the parser of the subcommand it runs (with runner.cli.arguments, the flags several
    share); the others are named by their summary alone."""
    code = ("import sys; from runner import cli; cli.build_parser({only!r});"
            " print(sorted(m for m in sys.modules if m.startswith('runner.cli.')))")
    def loaded(only):
        out = subprocess.run([sys.executable, "-c", code.format(only=only)], capture_output=True, text=True, cwd=ROOT,
                             check=True)
        return out.stdout.strip()
    assert loaded("") == "[]"
    assert loaded("compare") == "['runner.cli.arguments', 'runner.cli.compare']"  # + the shared flags
    assert "runner.cli.tune" not in loaded("run") and "runner.cli.slurm" not in loaded("run")


def test_help_lists_the_subcommands():
    out = run_cli("--help")
    assert out.returncode == 0
    for word in ("run", "verify", "data", "compare", "probe"):
        assert word in out.stdout
    assert "--limit-train" in run_cli("run", "--help").stdout


@pytest.mark.parametrize("args, message", [
    (["--epochs", "0"], "epochs must be a whole number >= 1, got 0"),
    (["run", "--framework", "caffe"], "unknown framework caffe"),
    (["run", "--limit-train", "99999", "--dataset", "synthetic"], "exceeds the 4096 samples of synthetic"),
    (["run", "--repeats", "0"], "--repeats must be >= 1"),
    (["compare", "/nonexistent/records"], "no such file or folder"),
    (["run", "--option", "jax.loop=while"], "jax option loop='while': choose from step, scan"),
    (["verify", "--option", "loop=scan"], "expected FRAMEWORK.KEY=VALUE"),
    (["verify", "--steps", "0"], "--steps must be >= 1"),
    (["run", "--cv-threshold", "0.05"], "--cv-threshold needs --until-stable"),
    (["run", "--until-stable", "--repeats", "1"], "--until-stable needs --repeats >= 2"),
    (["run", "--until-stable", "--max-repeats", "2"], "--max-repeats (2) is below --repeats (3)"),
    (["run", "--until-stable", "--cv-threshold", "0"], "--cv-threshold must be > 0"),
    (["run", "--sample-interval", "0"], "--sample-interval must be > 0"),
    # issue 27: an empty --out was taken as the current folder
    (["run", "--out", ""], "--out '': an empty folder name (name a folder, e.g. --out dlbench-results)"),
    (["run", "--out", " "], "--out ' ': an empty folder name (name a folder, e.g. --out dlbench-results)"),
    # issue 27: a seed past 2^64-1 was accepted, by its flag and by --set
    (["run", "--seed", str(2**64)], f"seed must be a whole number from 0 to 2^64-1 (18446744073709551615), got {2**64}"),
    (["run", "--set", f"seed={2**64}"],
     f"seed must be a whole number from 0 to 2^64-1 (18446744073709551615), got {2**64}"),
    (["verify", "--seed", "-1"], "seed must be a whole number from 0 to 2^64-1 (18446744073709551615), got -1"),
    # issue 27: --steps past one epoch was cut to the epoch's steps (32 in smoke) without a word
    (["verify", "--preset", "smoke", "--framework", "torch", "--steps", "100000"],
     "--steps 100000 exceeds the 32 steps of one epoch here (2048 training samples / batch 64); the parity"
     " check compares steps of epoch 0: use --steps <= 32"),
    (["verify", "--framework", "torch", "--batch-size", "60000", "--steps", "2"],
     "--steps 2 exceeds the 1 steps of one epoch here (60000 training samples / batch 60000); the parity"
     " check compares steps of epoch 0: use --steps <= 1"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    out = run_cli(*args)
    assert out.returncode == 2
    # `--framework all` (the default) first names each framework it skips (flux, where no Julia is)
    lines = [line for line in out.stderr.strip().splitlines() if " not installed, skipped (" not in line]
    assert lines == [f"dlbench: error: {message}"] or (len(lines) == 1 and message in lines[0])


def test_unknown_platform_from_env_is_refused():
    out = run_cli("run", "--preset", "smoke", env={**os.environ, "DLBENCH_PLATFORM": "toaster"})
    assert out.returncode == 2 and "unknown platform 'toaster' from DLBENCH_PLATFORM" in out.stderr


@needs_torch
@pytest.mark.slow
@pytest.mark.parametrize("env, folder", [({}, "dlbench-results"), ({"DLBENCH_OUT": "elsewhere"}, "elsewhere")])
def test_records_go_to_an_untracked_folder_by_default_or_to_DLBENCH_OUT(tmp_path, synthetic_dir, env, folder):
    """issue 27: the default --out was results/, the committed records' folder; the images set DLBENCH_OUT."""
    cmd = [sys.executable, "-m", "runner", "run", "--framework", "torch", "--preset", "smoke", "--dataset",
           "synthetic", "--data-dir", str(synthetic_dir), "--limit-train", "256", "--parity-steps", "0",
           "--platform", "cpu", "--no-table"]
    environ = {k: v for k, v in os.environ.items() if k != "DLBENCH_OUT"}
    environ.update(PYTHONPATH=str(ROOT), **env)
    out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=environ)
    assert out.returncode == 0, out.stderr
    assert [p.name for p in tmp_path.iterdir()] == [folder]
    (rec,) = _records(tmp_path / folder)
    assert rec["status"] == "ok"
    ignored = subprocess.run(["git", "check-ignore", "-q", "dlbench-results/x.json"], cwd=ROOT)
    assert ignored.returncode == 0  # git status stays clean after a first run in the repository


def test_the_default_out_is_not_the_committed_results_folder():
    out = run_cli("run", "--help")
    assert "default: $DLBENCH_OUT, else ./dlbench-results" in " ".join(out.stdout.split())
    for command in ("ensemble", "per-sample-grads", "sweep", "tune"):
        assert "else ./dlbench-results" in " ".join(run_cli(command, "--help").stdout.split()), command


@needs_torch
@pytest.mark.slow
def test_smoke_run_writes_one_valid_record(tmp_path, synthetic_dir):
    out = run_cli("run", "--framework", "torch", "--preset", "smoke", "--dataset", "synthetic",
                  "--data-dir", synthetic_dir, "--out", tmp_path, "--platform", "cpu")
    assert out.returncode == 0, out.stderr
    (rec,) = _records(tmp_path)
    assert rec["status"] == "ok" and rec["error"] is None
    assert rec["framework"]["name"] == "torch" and rec["device"]["kind"] == "cpu"
    assert rec["platform"] == {"name": "cpu", "source": "flag"}
    assert rec["data"]["verified"] and rec["data"]["source"] == "folder" and rec["data"]["n_train"] == 2048
    assert rec["spec"]["epochs"] == 1 and rec["spec"]["limit_train"] == 2048
    assert rec["metrics"]["epochs_completed"] == 1 and len(rec["timing"]["epoch_train_s"]) == 1
    assert 0 < rec["metrics"]["train_loss"][0] < 2.31  # below ln(10): it learned something
    assert rec["metrics"]["images_per_s"] > 0 and rec["timing"]["wall_s"] > rec["timing"]["total_train_s"]
    assert "epoch 1/1" in out.stderr and "ETA" in out.stderr
    assert "| torch 2.13.0" in out.stdout or "| torch " in out.stdout
    # where it ran and what it used (schema v3)
    assert rec["hardware"]["gpus"] is None and "NVML" in rec["hardware"]["errors"]["gpus"]
    assert rec["hardware"]["cpu"]["logical_cores"] >= 1 and rec["environment"]["os"]["system"] == "Linux"
    assert rec["framework"]["build"]["version"] == rec["framework"]["version"]
    res = rec["resources"]
    assert res["samples"] >= 2 and res["interval_s"] == 1.0 and res["samples_file"] is None
    assert res["host"]["peak_rss_bytes"] >= res["host"]["rss_bytes_max"] > 50 * 2**20
    assert res["gpus"] is None and res["device_peak_memory_bytes"] is None
    assert "host memory" in res["errors"]["device_peak_memory"]
    assert rec["energy"]["joules"] is None and rec["energy"]["method"] == "none"
    assert set(rec["energy"]["errors"]) == {"gpu", "cpu"}
    assert rec["repeat"] == {"index": 0, "of": 1, "policy": "fixed", "max": 1, "cv_threshold": None}


@needs_torch
@pytest.mark.slow
def test_repeats_make_one_record_each_and_one_row(tmp_path, synthetic_dir):
    out = run_cli("run", "--framework", "torch", "--dataset", "synthetic", "--epochs", "2", "--limit-train", "512",
                  "--limit-test", "256", "--repeats", "2", "--data-dir", synthetic_dir, "--out", tmp_path)
    assert out.returncode == 0, out.stderr
    recs = _records(tmp_path)
    assert sorted(r["repeat"]["index"] for r in recs) == [0, 1] and len({r["run_id"] for r in recs}) == 2
    assert out.stdout.count("| torch") == 1 and "2/2" in out.stdout
    compared = run_cli("compare", tmp_path, "--format", "json")
    (row,) = json.loads(compared.stdout)
    assert row["runs"] == 2 and row["steady_epoch_s"] is not None


@needs_torch
@pytest.mark.slow
@pytest.mark.parametrize("threshold, runs, verdict", [("1.5", 2, "stable"), ("0.000001", 3, "NOT stable")])
def test_until_stable_adds_runs_until_the_cv_is_low_or_the_cap(tmp_path, synthetic_dir, threshold, runs, verdict):
    out = run_cli("run", "--framework", "torch", "--dataset", "synthetic", "--epochs", "3", "--limit-train", "256",
                  "--limit-test", "128", "--parity-steps", "0", "--until-stable", "--repeats", "2",
                  "--max-repeats", "3", "--cv-threshold", threshold, "--data-dir", synthetic_dir, "--out", tmp_path,
                  "--no-table")
    assert out.returncode == 0, out.stderr
    recs = _records(tmp_path)
    assert {(r["repeat"]["policy"], r["repeat"]["of"], r["repeat"]["max"], r["repeat"]["cv_threshold"])
            for r in recs} == {("until-stable", 2, 3, float(threshold))}
    noisy = sum(r["host_noise"]["verdict"] == "noisy" for r in recs)
    if noisy:  # a busy machine (CI): noisy runs do not count toward stability (tests/test_noise.py)
        assert f"({noisy} noisy run" in out.stderr and len(recs) <= 3
        return
    assert sorted(r["repeat"]["index"] for r in recs) == list(range(runs))
    assert f"after {runs} runs" in out.stderr and verdict in out.stderr
    assert "[torch/cpu #2 (until stable, 2-3)] epoch" in out.stderr


@needs_torch
@pytest.mark.slow
def test_samples_go_to_a_side_file_beside_the_record(tmp_path, synthetic_dir):
    out = run_cli("run", "--framework", "torch", "--dataset", "synthetic", "--epochs", "2", "--limit-train", "1024",
                  "--parity-steps", "0", "--sample-interval", "0.1", "--samples", "--data-dir", synthetic_dir,
                  "--out", tmp_path, "--no-table")
    assert out.returncode == 0, out.stderr
    (rec,) = _records(tmp_path)
    side = tmp_path / rec["resources"]["samples_file"]
    assert side.name.endswith(".samples.jsonl") and side.name.startswith(rec["created_utc"][:4])
    lines = [json.loads(x) for x in side.read_text().splitlines()]
    assert len(lines) == rec["resources"]["samples"] >= 3 and rec["resources"]["interval_s"] == 0.1
    assert max(x["rss_bytes"] for x in lines) == rec["resources"]["host"]["rss_bytes_max"]
    assert [x["t"] for x in lines] == sorted(x["t"] for x in lines)
    assert run_cli("compare", tmp_path).returncode == 0  # the side file is not taken for a record


def _start_long_run(tmp_path, synthetic_dir, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "runner", "run", "--framework", "torch", "--dataset", "synthetic",
         "--epochs", "200", "--data-dir", str(synthetic_dir), "--out", str(tmp_path), "--no-table"],
        cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, **kwargs)


def _disturb_long_run(tmp_path, synthetic_dir, after_epoch, disturb, **popen):
    """Start a 200-epoch run, call `disturb(proc)` once `after_epoch` epochs are done; return the
    exit code and the one record the run left."""
    proc = _start_long_run(tmp_path, synthetic_dir, **popen)
    try:
        _wait_for_epoch(proc, after_epoch)
        disturb(proc)
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    (rec,) = _records(tmp_path)
    return code, rec


def _wait_for_epoch(proc, n=1, timeout=120):
    deadline = time.monotonic() + timeout
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if f"epoch {n:>3}/200" in line:
            return seen
        assert time.monotonic() < deadline, "".join(seen)
    raise AssertionError("run ended early:\n" + "".join(seen))


@needs_torch
@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGTERM to the runner", "Ctrl-C to the process group"])
def test_interruption_leaves_an_interrupted_record(tmp_path, synthetic_dir, how):
    def disturb(proc):
        if how.startswith("SIGTERM"):
            proc.send_signal(signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGINT)  # what a terminal does on Ctrl-C

    code, rec = _disturb_long_run(tmp_path, synthetic_dir, 2, disturb, start_new_session=True)
    assert code == 130
    assert rec["status"] == "interrupted" and "interrupted by SIG" in rec["error"]
    assert 2 <= rec["metrics"]["epochs_completed"] < 200
    assert len(rec["metrics"]["test_accuracy"]) == rec["metrics"]["epochs_completed"]


@needs_torch
@pytest.mark.slow
def test_divergence_stops_the_run(tmp_path, synthetic_dir):
    out = run_cli("run", "--framework", "torch", "--dataset", "synthetic", "--epochs", "5", "--lr", "1e12",
                  "--data-dir", synthetic_dir, "--out", tmp_path)
    assert out.returncode == 1
    (rec,) = _records(tmp_path)
    assert rec["status"] == "diverged" and "training loss is nan" in rec["error"]
    assert rec["metrics"]["train_loss"][-1] is None and len(rec["metrics"]["train_loss"]) < 5


@needs_torch
@pytest.mark.slow
def test_unavailable_device_gives_an_unavailable_record(tmp_path, synthetic_dir):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = run_cli("run", "--framework", "torch", "--device", "cuda", "--preset", "smoke", "--dataset", "synthetic",
                  "--data-dir", synthetic_dir, "--out", tmp_path, "--repeats", "3")
    assert out.returncode == 1
    (rec,) = _records(tmp_path)  # one record, not three: the next repeats would fail the same way
    assert rec["status"] == "unavailable" and "device cuda requested" in rec["error"] and "install" in rec["error"]


@needs_torch
def test_worker_refuses_unverified_data_and_records_why(tmp_path, synthetic_dir):
    """No training step on bad bytes, even if the data changed after the parent checked it."""
    from runner.machine import probe
    from runner.request import RunRequest
    from runner.workload.spec import make_spec

    folder = tmp_path / "data"
    folder.mkdir()
    for f in synthetic_dir.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    labels = folder / "train-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:-1] + b"\x09")
    spec = make_spec("smoke", dataset="synthetic")
    req = RunRequest(job="train", spec=spec, framework="torch", device="cpu", data_dir=str(folder),
                     out_dir=str(tmp_path / "out"), platform={"name": "cpu", "source": "flag"},
                     data_source="folder", command="test", hardware=probe.hardware(),
                     environment=probe.environment())
    req.write(tmp_path / "req.json")
    out = subprocess.run([sys.executable, "-m", "runner.launch.child", str(tmp_path / "req.json")], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    (rec,) = _records(tmp_path / "out")
    assert rec["status"] == "failed" and "train-labels-idx1-ubyte: expected sha256" in rec["error"]
    assert rec["data"]["verified"] is False and rec["metrics"]["epochs_completed"] == 0


def test_data_fetch_and_verify(tmp_path):
    out = run_cli("data", "fetch", "--dataset", "synthetic", "--data-dir", tmp_path)
    assert out.returncode == 0 and "all files verified" in out.stdout
    assert run_cli("data", "verify", "--dataset", "synthetic", "--data-dir", tmp_path).returncode == 0
    (tmp_path / "synthetic" / "t10k-images-idx3-ubyte").unlink()  # each dataset in a folder of its own
    out = run_cli("data", "verify", "--dataset", "synthetic", "--data-dir", tmp_path)
    assert out.returncode == 1 and "missing" in out.stdout and "1 file(s) missing" in out.stderr


def test_compare_cli_skips_garbage_with_a_warning(tmp_path):
    from sample_records import make_record

    records.write(make_record(steady=1.5), tmp_path)
    (tmp_path / "junk.json").write_text("{")
    out = run_cli("compare", tmp_path)
    assert out.returncode == 0
    assert "1.50" in out.stdout and "skipped" in out.stderr and "1 file(s) skipped" in out.stderr


@pytest.mark.slow
def test_probe_reports_this_machine():
    out = run_cli("probe", "--json")
    assert out.returncode == 0
    info = json.loads(out.stdout)
    assert info["hardware"]["cpu"]["physical_cores"] >= 1 and info["hardware"]["memory_bytes"] > 0
    if not info["hardware"]["gpus"]:  # no GPU here: null-ish and a reason, never a guess
        assert "gpus" in info["hardware"]["errors"]
    assert run_cli("probe").returncode == 0


@needs_torch
@pytest.mark.slow
def test_a_worker_killed_outright_still_leaves_a_failed_record(tmp_path, synthetic_dir):
    """SIGKILL (the OOM killer's signal) gives the worker no chance: the parent records it."""
    import psutil

    def kill_the_worker(proc):
        (worker,) = psutil.Process(proc.pid).children()
        worker.kill()

    code, rec = _disturb_long_run(tmp_path, synthetic_dir, 1, kill_the_worker)
    assert code == 1
    assert rec["status"] == "failed" and rec["error"] == "worker process killed by SIGKILL without writing a record"
    assert rec["spec"]["epochs"] == 200 and rec["metrics"]["epochs_completed"] == 0


@needs_torch
@needs_tf
@needs_jax
@pytest.mark.slow
def test_verify_prints_the_table_and_passes_for_all_three(synthetic_dir):
    out = run_cli("verify", "--framework", "torch,tensorflow,jax", "--dataset", "synthetic",
                  "--data-dir", synthetic_dir, "--steps", "10", "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    results = json.loads(out.stdout)
    assert [r["framework"]["name"] for r in results] == ["torch", "tensorflow", "jax"]
    for r in results:
        p = r["parity"]
        assert (p["status"], p["steps"], p["failed"]) == ("pass", 10, []), r
        assert p["checks"]["grad_rel_diff"]["value"] < 1e-5 and p["checks"]["trajectory_max_diff"]["value"] < 1e-4
        assert p["replicas"] == 8 and p["trajectory_envelope"] > 0 and p["checked_steps"][0] == 1
    table = run_cli("verify", "--framework", "jax", "--dataset", "synthetic", "--data-dir", synthetic_dir,
                    "--steps", "3")
    assert table.returncode == 0
    assert "| jax 0.10" in table.stdout and "| pass" in table.stdout and "limits:" in table.stdout


@needs_tf
@needs_jax
@pytest.mark.slow
def test_runs_record_their_options_and_parity(tmp_path, synthetic_dir):
    out = run_cli("run", "--framework", "tensorflow,jax", "--preset", "smoke", "--dataset", "synthetic",
                  "--data-dir", synthetic_dir, "--out", tmp_path, "--platform", "cpu", "--epochs", "2",
                  "--option", "jax.loop=scan", "--option", "tensorflow.loop=step", "--parity-steps", "5")
    assert out.returncode == 0, out.stderr[-2000:]
    recs = {r["framework"]["name"]: r for r in _records(tmp_path)}
    # every option is recorded, the defaults too (the data path: resident, no loader workers)
    assert recs["jax"]["framework"]["options"] == {"loop": "scan", "devices": "1", "loader": "resident", "workers": "0"}
    assert recs["tensorflow"]["framework"]["options"] == {"loop": "step", "jit_compile": "off", "loader": "resident",
                                                          "workers": "0"}
    for r in recs.values():
        assert r["status"] == "ok" and r["metrics"]["epochs_completed"] == 2
        assert r["parity"]["status"] == "pass" and r["parity"]["steps"] == 5
        assert r["timing"]["compile_s"] is not None
    assert "jax 0.10.2 (loop=scan)" in out.stdout and "| pass" in out.stdout


@needs_torch
@pytest.mark.slow
def test_parity_steps_0_skips_the_check(tmp_path, synthetic_dir):
    out = run_cli("run", "--framework", "torch", "--preset", "smoke", "--dataset", "synthetic",
                  "--data-dir", synthetic_dir, "--out", tmp_path, "--parity-steps", "0")
    assert out.returncode == 0, out.stderr[-2000:]
    (rec,) = _records(tmp_path)
    assert rec["parity"] is None and "unchecked" in out.stdout
