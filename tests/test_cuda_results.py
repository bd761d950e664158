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


def _script(out: Path, budget: int, synthetic_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OUT": str(out), "BUDGET_S": str(budget), "FRAMEWORKS": "torch", "REPEATS": "1",
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
    runner records what it finished. (400 epochs once finished inside the 90 s on a fast clone.)"""
    epochs = 1_000_000
    proc = _script(tmp_path / "out", 90, synthetic_dir, "--epochs", str(epochs))
    assert proc.returncode == 0, proc.stderr
    log = (tmp_path / "out" / "session.log").read_text()
    assert "torch: interrupted by the budget (exit 130)" in log, log
    [rec] = _tarred(tmp_path / "out")
    assert rec["status"] == "interrupted" and len(rec["timing"]["epoch_train_s"]) < epochs
