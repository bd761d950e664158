"""What happens to a run when its processes are disturbed or its disk fills: real processes, real
signals, a real full filesystem (tmpfs). Each test reproduces a failure found by trying to break
dlbench (issue 20) and pins what it does now."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from conftest import ROOT, needs_torch, run_cli
from runner import records
from runner.launch import orchestrate
from runner.records import build


def _start(tmp_path, synthetic_dir, *extra, command="run"):
    args = [sys.executable, "-m", "runner", command, "--framework", "torch", "--dataset", "synthetic",
            "--data-dir", str(synthetic_dir), *map(str, extra)]
    if command == "run":
        args += ["--out", str(tmp_path / "out"), "--no-table"]
    return subprocess.Popen(args, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            start_new_session=True)


def _wait_for(proc, text, timeout=180):
    deadline, seen = time.monotonic() + timeout, []
    for line in proc.stderr:
        seen.append(line)
        if text in line:
            return seen
        assert time.monotonic() < deadline, "".join(seen)
    raise AssertionError(f"ended before {text!r}:\n" + "".join(seen))


def _end_group(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:  # everything in it has ended already
        pass


def _children(proc) -> list[psutil.Process]:
    return psutil.Process(proc.pid).children(recursive=True)


def _gone(pids, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]:
            return True
        time.sleep(0.2)
    return False


@needs_torch
@pytest.mark.slow
def test_sigint_to_the_runner_alone_is_recorded_as_sigint(tmp_path, synthetic_dir):
    """It was recorded as SIGTERM: the parent passed on a SIGTERM whatever it had received."""
    proc = _start(tmp_path, synthetic_dir, "--epochs", "200")
    try:
        _wait_for(proc, "epoch   2/200")
        proc.send_signal(signal.SIGINT)  # the runner alone, not its process group
        assert proc.wait(timeout=120) == 130
    finally:
        proc.kill()
    (path,) = (tmp_path / "out").glob("*.json")
    rec = records.read(path)
    assert rec["status"] == "interrupted" and rec["error"].startswith("interrupted by SIGINT after ")


@needs_torch
@pytest.mark.slow
def test_a_sigkilled_runner_takes_its_worker_with_it(tmp_path, synthetic_dir):
    """The worker kept training after `kill -9` of the runner; now it gets SIGTERM (the parent-death
    signal) and records what it finished."""
    proc = _start(tmp_path, synthetic_dir, "--epochs", "200")
    try:
        _wait_for(proc, "epoch   2/200")
        (child,) = _children(proc)
        proc.kill()
        proc.wait(timeout=10)
        assert _gone([child.pid]), "the worker outlived its parent"
    finally:
        _end_group(proc)
    (path,) = (tmp_path / "out").glob("*.json")
    rec = records.read(path)
    assert rec["status"] == "interrupted" and rec["error"].startswith("interrupted by SIGTERM after ")
    assert rec["metrics"]["epochs_completed"] >= 2


@needs_torch
@pytest.mark.slow
def test_sigterm_during_the_parity_check_keeps_the_finished_run(tmp_path, synthetic_dir):
    """Training had finished; the signal came during the check after it. The run was thrown away."""
    proc = _start(tmp_path, synthetic_dir, "--epochs", "1", "--seed", "97531", "--parity-steps", "60")
    try:
        _wait_for(proc, "parity: checking the first 60 steps")
        time.sleep(0.5)  # inside the check: the float64 reference for a new seed takes seconds
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 130
    finally:
        proc.kill()
    (path,) = (tmp_path / "out").glob("*.json")
    rec = records.read(path)
    assert rec["status"] == "ok" and rec["metrics"]["epochs_completed"] == 1
    assert rec["parity"]["status"] == "error" and "interrupted by SIGTERM during the check" in rec["parity"]["error"]


@needs_torch
@pytest.mark.slow
def test_verify_leaves_no_child_and_no_temp_folder_after_sigterm(tmp_path, synthetic_dir):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", "verify", "--framework", "torch", "--dataset", "synthetic",
         "--data-dir", str(synthetic_dir), "--seed", "8642", "--steps", "60"],
        cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "TMPDIR": str(tmp)})
    try:
        _wait_for(proc, "verify: torch")
        deadline = time.monotonic() + 60
        while not _children(proc) and time.monotonic() < deadline:
            time.sleep(0.1)
        pids = [c.pid for c in _children(proc)]
        assert pids and any(tmp.glob("dlbench-verify-*"))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 130
        assert _gone(pids), "verify left its child running"
    finally:
        _end_group(proc)
    assert not list(tmp.glob("dlbench-*")), list(tmp.iterdir())


@pytest.fixture
def small_disk(tmp_path):
    """A real filesystem of 8 MiB (tmpfs; needs root, as CI has)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(folder: Path, leave: int) -> None:
    free = shutil.disk_usage(folder).free
    with open(folder / "filler", "wb") as f:
        f.write(b"\0" * max(0, free - leave))


def test_a_run_is_refused_before_training_when_out_has_no_room(small_disk, synthetic_dir):
    """Training and parity used to finish, and then ENOSPC lost the run in three tracebacks."""
    _fill(small_disk, 1 * 2**20)
    out = run_cli("run", "--framework", "torch", "--dataset", "synthetic", "--data-dir", synthetic_dir,
                  "--out", small_disk, "--preset", "smoke")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"{small_disk}: 1.0 MiB free, a run needs 4 MiB" in out.stderr
    assert list(small_disk.iterdir()) == [small_disk / "filler"]


def test_a_record_that_no_longer_fits_is_kept_elsewhere(small_disk, capsys):
    """If the disk fills during the run anyway, the measured record is kept where it fits."""
    from sample_records import BASE
    from runner.request import RunRequest
    from runner.workload import harness
    from runner.workload.spec import Spec

    req = RunRequest(job="train", spec=Spec.from_dict(BASE["spec"]), framework="torch", device="cpu",
                     data_dir="/nowhere", out_dir=str(small_disk), hardware=BASE["hardware"],
                     environment=BASE["environment"])
    rec = build.skeleton(req)
    rec["status"] = "ok"
    _fill(small_disk, 0)
    path = build.finish(rec, req, harness.TrainLog(), wall_s=1.0)
    try:
        assert path.parent == build.unsaved_dir() and records.read(path)["run_id"] == req.run_id
        assert build.find(small_disk, req.run_id) == path
        err = capsys.readouterr().err
        assert f"could not write the record to {small_disk} (No space left on device); kept it at {path}" in err
    finally:
        path.unlink()


def test_another_run_on_the_machine_is_named_in_a_warning():
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "runner.launch.child"])
    try:
        warning = orchestrate.busy_warning()
        assert warning and str(sleeper.pid) in warning and "share the cores" in warning
    finally:
        sleeper.kill()
        sleeper.wait()


@needs_torch
@pytest.mark.slow
def test_a_tiny_sample_interval_is_raised_to_the_floor_and_said(tmp_path, synthetic_dir):
    out = run_cli("run", "--framework", "torch", "--dataset", "synthetic", "--data-dir", synthetic_dir,
                  "--preset", "smoke", "--sample-interval", "0.0001", "--parity-steps", "0",
                  "--out", "~/" + os.path.relpath(tmp_path, os.path.expanduser("~")))  # '~' is expanded
    assert out.returncode == 0, out.stderr[-2000:]
    assert "--sample-interval 0.0001 is below 0.1 s" in out.stderr
    (path,) = tmp_path.glob("*.json")
    assert records.read(path)["resources"]["interval_s"] == 0.1
