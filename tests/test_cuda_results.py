"""scripts/cuda_results.sh, the recipe a session lent a GPU machine runs, exercised here on the CPU
(DEVICE=cpu, a synthetic smoke spec): the gate, the runs, the budget that interrupts a run without
losing what it recorded, and the tarball that comes back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from conftest import ROOT, needs_torch

pytestmark = [needs_torch, pytest.mark.slow]


def _script(out: Path, budget: int, synthetic_dir: Path, *extra: str, env=None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env or {}), "OUT": str(out), "BUDGET_S": str(budget), "FRAMEWORKS": "torch", "REPEATS": "1",
           "DEVICE": "cpu", "PYTHON": sys.executable,
           "EXTRA": " ".join(["--preset", "smoke", "--dataset", "synthetic", "--data-dir", str(synthetic_dir),
                              *extra])}
    return subprocess.run(["bash", str(ROOT / "scripts" / "cuda_results.sh")], env=env, capture_output=True,
                          text=True, timeout=budget + 120)


def _tarred(out: Path) -> list[dict]:
    with tarfile.open(out / "records.tar.gz") as tar:
        return [json.load(tar.extractfile(m)) for m in tar.getmembers() if m.name.endswith(".json")]


def test_the_recipe_checks_parity_runs_and_tars_the_records(tmp_path, synthetic_dir):
    proc = _script(tmp_path / "out", 600, synthetic_dir)
    assert proc.returncode == 0, proc.stderr
    log = (tmp_path / "out" / "session.log").read_text()
    assert "verify: exit 0" in log and "torch: exit 0" in log and "done: 1 record(s)" in log
    assert "| pass" in (tmp_path / "out" / "verify.log").read_text()
    [rec] = _tarred(tmp_path / "out")
    assert (rec["status"], rec["framework"]["name"], rec["device"]["kind"]) == ("ok", "torch", "cpu")
    assert rec["parity"]["status"] == "pass" and len(rec["timing"]["epoch_train_s"]) == 1


def test_the_budget_interrupts_the_running_run_and_keeps_its_record(tmp_path, synthetic_dir):
    """A million smoke epochs (two billion samples) end only by the budget's SIGINT, on any machine: the
    runner records what it finished. (400 epochs once finished inside 90 s on a fast clone.) VERIFY=0:
    the run starts at once, with the budget less the script's start (> MIN_LEFT_S, 30 s) left."""
    epochs = 1_000_000
    proc = _script(tmp_path / "out", 45, synthetic_dir, "--epochs", str(epochs), env={"VERIFY": "0"})
    assert proc.returncode == 0, proc.stderr
    log = (tmp_path / "out" / "session.log").read_text()
    assert "verify: skipped (VERIFY=0)" in log and not (tmp_path / "out" / "verify.log").exists()
    assert "torch: interrupted by the budget (exit 130)" in log, log
    [rec] = _tarred(tmp_path / "out")
    assert rec["status"] == "interrupted" and len(rec["timing"]["epoch_train_s"]) < epochs


def test_runs_name_each_mode_and_every_record_keeps_its_options(tmp_path, synthetic_dir):
    """RUNS: one `run` per FRAMEWORK[:KEY=VALUE,...] entry, in order; verify once per framework."""
    proc = _script(tmp_path / "out", 600, synthetic_dir, env={"RUNS": "torch torch:loader=dataloader,workers=1"})
    assert proc.returncode == 0, proc.stderr
    log = (tmp_path / "out" / "session.log").read_text()
    assert "runs torch torch:loader=dataloader,workers=1" in log and "done: 2 record(s)" in log
    assert "torch: exit 0" in log and "torch:loader=dataloader,workers=1: exit 0" in log
    assert (tmp_path / "out" / "run-torch-loader=dataloader-workers=1.log").exists()
    options = sorted((r["framework"]["options"]["loader"], r["framework"]["options"]["workers"])
                     for r in _tarred(tmp_path / "out"))
    assert options == [("dataloader", "1"), ("resident", "0")]  # the default run, then the mode asked for


def test_the_device_script_installs_what_it_carries_and_runs_from_the_checkout(tmp_path, synthetic_dir):
    """scripts/device/run.sh as the lent machine runs it: carried wheels into a folder of its own
    (on PYTHONPATH), then the recipe; here the carry holds one real wheel, built from a tiny package."""
    carry = tmp_path / "carry"
    (carry / "wheels").mkdir(parents=True)
    wheel = carry / "wheels" / "dlbench_probe_pkg-1.0-py3-none-any.whl"
    import zipfile
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("dlbench_probe_pkg.py", "CARRIED = True\n")
        z.writestr("dlbench_probe_pkg-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: dlbench-probe-pkg\nVersion: 1.0\n")
        z.writestr("dlbench_probe_pkg-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr("dlbench_probe_pkg-1.0.dist-info/RECORD", "")
    out, site = tmp_path / "out", tmp_path / "site"
    env = {**os.environ, "OUT": str(out), "CARRY": str(carry), "SITE": str(site), "HOME_DIR": str(tmp_path / "home"),
           "RUNS": "torch", "DEVICE": "cpu", "PYTHON": sys.executable, "BUDGET_S": "600",
           "EXTRA": f"--preset smoke --dataset synthetic --data-dir {synthetic_dir}"}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "device" / "run.sh")], env=env, capture_output=True,
                          text=True, timeout=720)
    assert proc.returncode == 0, proc.stderr
    assert (site / "dlbench_probe_pkg.py").exists()
    log = (out / "session.log").read_text()
    assert "runs torch, repeats 1, device cpu" in log and "torch: exit 0" in log and "done: 1 record(s)" in log
    [rec] = _tarred(out)
    assert (rec["status"], rec["parity"]["status"]) == ("ok", "pass")


def test_without_out_the_device_script_says_so_and_runs_nothing(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "device" / "run.sh")], env=env, capture_output=True, text=True)
    assert proc.returncode != 0 and "set OUT to the folder for the results" in proc.stderr


def test_prepare_packs_verified_mnist_that_the_store_accepts_as_a_source(tmp_path):
    """prepare.sh (WHEELS=0: no download) gzips the four verified MNIST files; a data folder holding only
    those verifies, as the store on the device machine will check them."""
    carry = tmp_path / "carry"
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "device" / "prepare.sh")], capture_output=True, text=True,
                          env={**os.environ, "CARRY": str(carry), "PYTHON": sys.executable, "WHEELS": "0"}, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (carry / "data" / "mnist").iterdir()) == [
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    verify = subprocess.run([sys.executable, "-m", "runner", "data", "fetch", "--dataset", "mnist", "--data-dir",
                             str(carry / "data")], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert verify.returncode == 0, verify.stderr
    assert "folder" in verify.stderr + verify.stdout
