"""The matrix as a Slurm job array, against a real Slurm (slurmctld + slurmd + munged on localhost,
started by scripts/slurm-local.sh from a temp dir and stopped by PID): records, Slurm facts in them,
the merged table, status, a lost task resubmitted alone, a cancelled task's record, torchrun in sbatch."""

import json
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ROOT, local_slurm, needs_torch, run_cli

SMOKE = ["--dataset", "synthetic", "--preset", "smoke", "--device", "cpu", "--parity-steps", "5"]


@pytest.fixture(scope="session")
def slurm(tmp_path_factory, _isolated_caches):
    """A one-node Slurm for this session (SLURM_CONF set for every subprocess); skipped with the
    script's reason where it cannot run (not root, no apt, Slurm's ports taken)."""
    yield from local_slurm(tmp_path_factory.mktemp("slurm"))


def _records(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(Path(folder).glob("*.json"))]


def _submit(shared, *args, data):
    out = run_cli("slurm", "submit", *SMOKE, "--data-dir", data, "--out", shared, *args, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.split("job ")[1].split(",")[0]


def _wait(shared, timeout=600):
    out = run_cli("slurm", "wait", shared, "--timeout", timeout, "--poll", "0.5", timeout=timeout + 60)
    return out


def test_dry_run_prints_a_plain_sbatch_script_and_writes_nothing(tmp_path):
    out = run_cli("slurm", "submit", "--framework", "torch,jax", "--models", "lenet5,mlp", "--repeats", "2",
                  "--partition", "gpu", "--gpus-per-task", "1", "--time", "01:00:00", "--container", "/c/dl.sif",
                  "--sbatch=--account=abc", "--dataset", "synthetic", "--out", tmp_path / "run", "--dry-run",
                  timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "#!/bin/bash"
    for line in ("#SBATCH --array=0-7", "#SBATCH --partition=gpu", "#SBATCH --gpus-per-task=1",
                 "#SBATCH --time=01:00:00", "#SBATCH --account=abc", "#SBATCH --signal=B:TERM@60"):
        assert line in lines, line
    assert lines[-1].startswith("exec apptainer exec --nv --bind ") and " /c/dl.sif python -m runner slurm task " in lines[-1]
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@needs_torch
def test_a_four_task_array_leaves_four_records_and_one_table(slurm, tmp_path, synthetic_dir):
    shared = tmp_path / "shared"
    t0 = time.monotonic()
    # framework x model: models whose parity is established here (torch on cnn reads a 1.3e-4 step-1
    # gradient at 5 steps on synthetic data, JAX 6e-7: open, named in the closing note)
    job = _submit(shared, "--framework", "torch,jax", "--models", "lenet5,mlp", "--cpus-per-task", "2",
                  data=synthetic_dir)
    out = _wait(shared)
    took = time.monotonic() - t0
    assert out.returncode == 0, out.stdout + out.stderr
    print(f"\nslurm: 4-task array submitted and finished in {took:.1f} s")
    recs = _records(shared)
    assert sorted((r["framework"]["name"], r["spec"]["model"]) for r in recs) == [
        ("jax", "lenet5"), ("jax", "mlp"), ("torch", "lenet5"), ("torch", "mlp")]
    for r in recs:
        assert r["status"] == "ok" and r["parity"]["status"] == "pass", r["error"]
        assert r["platform"] == {"name": "slurm", "source": "detected"}
        sched = r["environment"]["scheduler"]
        assert sched["kind"] == "slurm" and sched["array_job_id"] == job and sched["partition"] == "debug"
        assert sched["nodes"] and sched["num_nodes"] == 1 and sched["cluster"] == "dlbench-local"
    assert sorted(r["environment"]["scheduler"]["array_task_id"] for r in recs) == ["0", "1", "2", "3"]
    assert (shared / "slurm" / "dlbench.sbatch").read_text().startswith("#!/bin/bash")
    table = run_cli("compare", shared, "--format", "json", timeout=60)
    assert table.returncode == 0, table.stderr
    assert len(json.loads(table.stdout)) == 4 and "skipped" not in table.stderr  # requests are not records

    # A task that left nothing (a node died): status shows the hole, resubmit reruns it alone.
    lost = next(p for p in shared.glob("*.json")
                if (lambda r: (r["framework"]["name"], r["spec"]["model"]))(json.loads(p.read_text())) == ("torch", "mlp"))
    lost.rename(tmp_path / lost.name)
    status = run_cli("slurm", "status", shared, timeout=60)
    assert status.returncode == 0 and status.stdout.count("missing") == 1, status.stdout
    again = run_cli("slurm", "resubmit", shared, timeout=60)
    assert again.returncode == 0 and "resubmitted task(s) 1 as job" in again.stdout, again.stdout + again.stderr
    assert _wait(shared).returncode == 0
    assert sorted((r["framework"]["name"], r["spec"]["model"]) for r in _records(shared)) == [
        ("jax", "lenet5"), ("jax", "mlp"), ("torch", "lenet5"), ("torch", "mlp")]
    nothing = run_cli("slurm", "resubmit", shared, timeout=60)
    assert "nothing to resubmit" in nothing.stdout


def test_dry_run_of_a_sweep_counts_grid_x_models_x_frameworks_x_repeats(tmp_path):
    out = run_cli("slurm", "submit", "--framework", "torch,jax", "--models", "lenet5,mlp", "--set", "batch_size=32,64",
                  "--repeats", "2", "--dataset", "synthetic", "--out", tmp_path / "run", "--dry-run", timeout=60)
    assert out.returncode == 0, out.stderr
    assert "#SBATCH --array=0-15" in out.stdout.splitlines()  # (2 models x 2 batches) x 2 frameworks x 2 repeats
    bad = run_cli("slurm", "submit", "--framework", "torch", "--set", "batch_size=32,lots", "--dataset", "synthetic",
                  "--out", tmp_path / "run", "--dry-run", timeout=60)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "batch_size" in bad.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@needs_torch
def test_a_sweep_as_a_job_array_leaves_its_points_and_the_sweep_table(slurm, tmp_path, synthetic_dir):
    """Every experiment runs through the same launchers: a sweep's grid points are array tasks."""
    shared = tmp_path / "shared"
    out = run_cli("slurm", "submit", *SMOKE, "--data-dir", synthetic_dir, "--out", shared, "--framework", "torch",
                  "--set", "batch_size=32,64", "--parity-steps", "0", "--cpus-per-task", "2", timeout=120)
    assert out.returncode == 0, out.stderr
    sweep_id = out.stdout.split("--id ")[1].split()[0]
    assert _wait(shared).returncode == 0
    recs = sorted(_records(shared), key=lambda r: r["spec"]["batch_size"])
    assert [(r["status"], r["spec"]["batch_size"]) for r in recs] == [("ok", 32), ("ok", 64)]
    assert [r["experiment"] for r in recs] == [
        {"kind": "sweep", "id": sweep_id, "point": {"batch_size": b}, "index": i, "size": 2, "state": None}
        for i, b in enumerate((32, 64))]
    table = run_cli("compare", shared, "--id", sweep_id, "--format", "json", timeout=60)
    assert table.returncode == 0, table.stderr
    rows = json.loads(table.stdout)
    assert sorted(r["point"]["batch_size"] for r in rows) == [32, 64] and all(r["n"] == 1 for r in rows), rows


@pytest.mark.slow
@needs_torch
def test_a_cancelled_task_records_that_it_was_interrupted(slurm, tmp_path, synthetic_dir):
    shared = tmp_path / "shared"
    job = _submit(shared, "--framework", "torch", "--epochs", "200", "--cpus-per-task", "2", data=synthetic_dir)
    log = shared / "slurm" / "logs" / f"{job}_0.out"
    deadline = time.monotonic() + 300
    try:
        while "/200  loss" not in (log.read_text() if log.exists() else ""):  # an epoch trained: past the imports
            assert time.monotonic() < deadline, "the task never started training"
            time.sleep(0.5)
    finally:
        subprocess.run(["scancel", f"{job}_0"], check=True, timeout=60)
    out = _wait(shared, timeout=300)
    (rec,) = _records(shared)
    assert rec["status"] == "interrupted" and "interrupted by SIGTERM" in rec["error"], rec["error"]
    assert rec["metrics"]["epochs_completed"] >= 1
    assert out.returncode == 1 and "interrupted" in out.stdout  # no result yet: resubmit would rerun it


@pytest.mark.slow
@needs_torch
def test_torchrun_inside_sbatch_two_ranks_one_record(slurm, tmp_path, synthetic_dir):
    shared = tmp_path / "shared"
    _submit(shared, "--framework", "torch", "--launcher", "torchrun", "--nproc", "2", "--cpus-per-task", "2",
            data=synthetic_dir)
    out = _wait(shared)
    assert out.returncode == 0, out.stdout + out.stderr
    (rec,) = _records(shared)
    assert rec["status"] == "ok" and rec["parity"]["status"] == "pass"
    assert rec["parallel"]["world_size"] == 2 and rec["parallel"]["comm_backend"] == "gloo"
    assert rec["launcher"]["name"] == "torchrun" and rec["environment"]["scheduler"]["kind"] == "slurm"


@pytest.mark.slow
@needs_torch
def test_the_real_sbatch_reads_quoted_values_as_written(slurm, tmp_path, synthetic_dir):
    """What tests/sbatch_script.py models, against the real sbatch: a folder with a space, quotes, # and
    $(...) is one --output pattern (it was cut at the space), a --sbatch value with them one comment.
    --hold keeps the task from running; scontrol shows what Slurm took."""
    shared = tmp_path / "a dir #1 \"q\" 'x' $(touch X)"
    job = _submit(shared, "--framework", "torch", "--sbatch=--hold", "--sbatch=--comment=a b #c \"d\" 'e' \\f",
                  data=synthetic_dir)
    try:
        show = subprocess.run(["scontrol", "show", "job", f"{job}_0"], capture_output=True, text=True, timeout=60)
    finally:
        subprocess.run(["scancel", job], timeout=60)
    fields = [line.strip() for line in show.stdout.splitlines()]
    assert f"StdOut={shared}/slurm/logs/{job}_0.out" in fields, show.stdout
    assert "Comment=a b #c \"d\" 'e' \\f" in fields, show.stdout
    assert sorted(p.name for p in shared.iterdir()) == ["slurm"] and not (ROOT / "X").exists()
