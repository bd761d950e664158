"""Data-parallel runs of the same workload: torchrun DDP ranks (gloo on the CPU) and JAX sharding over
2 virtual CPU devices, each passing the parity gate against the float64 single-process reference;
the record's `parallel` block; the table's row key and scaling column; refused world sizes."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, needs_jax, needs_torch, run_cli
from runner.launch import launchers
from runner.workload import ranks
from runner.workload.spec import make_spec
from sample_records import make_record


def _only_record(folder: Path) -> dict:
    (path,) = Path(folder).glob("*.json")  # exactly one record, whatever the world size
    return json.loads(path.read_text())


def _assert_parity_passed(rec: dict) -> None:
    parity = rec["parity"]
    assert parity["status"] == "pass" and parity["failed"] == [], parity
    for name, check in parity["checks"].items():  # every check measured, each within its limit
        assert check["value"] is not None and abs(check["value"]) <= check["limit"], (name, check)


@pytest.mark.slow
@needs_torch
def test_two_torchrun_ranks_train_the_same_workload_and_pass_parity(tmp_path, synthetic_dir):
    out = run_cli("run", "--framework", "torch", "--launcher", "torchrun", "--nproc", "2", "--preset", "smoke",
                  "--dataset", "synthetic", "--data-dir", synthetic_dir, "--device", "cpu", "--out", tmp_path,
                  "--no-table", timeout=600)
    assert out.returncode == 0, out.stderr
    rec = _only_record(tmp_path)  # rank 1 wrote none
    assert rec["status"] == "ok"
    assert rec["parallel"] == {"world_size": 2, "processes": 2, "devices": 2,
                               "strategy": "torch DistributedDataParallel", "comm_backend": "gloo",
                               "global_batch": 64, "per_rank_batch": 32,
                               "timing": "rank 0's clock after a barrier: the slowest rank's time"}
    assert rec["launcher"]["name"] == "torchrun" and rec["launcher"]["settings"]["nproc_per_node"] == 2
    _assert_parity_passed(rec)  # 32 steps of the 2-rank run against the single-process float64 reference
    # the same training as one process: the smoke run's numbers match the single-process fixture's ranges
    assert rec["metrics"]["epochs_completed"] == 1 and rec["metrics"]["train_loss"][0] == pytest.approx(1.4694, abs=1e-3)
    assert out.stderr.count("parity: checking") == 1  # rank 1 speaks only into its own log
    logs = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert len(logs) == 2 and logs[1].endswith(".rank1.log")


@pytest.mark.parametrize("args, message", [
    (["--framework", "torch", "--launcher", "torchrun", "--nproc", "3"],
     "torchrun world size 3 (1 node(s) x 3) does not divide the global batch 64"),
    (["--framework", "torch", "--nproc", "2"], "--nproc and --nnodes need --launcher torchrun"),
    (["--framework", "jax", "--launcher", "torchrun"], "--launcher torchrun starts PyTorch ranks"),
])
def test_a_world_size_that_cannot_run_the_spec_is_refused_before_anything_starts(tmp_path, args, message):
    out = run_cli("run", *args, "--preset", "smoke", "--dataset", "synthetic", "--out", tmp_path, timeout=60)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and message in out.stderr, out.stderr
    assert not list(tmp_path.iterdir())


def test_the_torchrun_command_one_node_and_several():
    one = launchers.get("torchrun", nproc_per_node=4, python="py").command(Path("/r.json"))
    assert one == ["py", "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=4", "-m",
                   "runner.launch.child", "/r.json"]
    two = launchers.get("torchrun", nproc_per_node=4, nnodes=2, python="py")
    cmd = launchers.get("torchrun", nproc_per_node=4, nnodes=2, python="py", rdzv_endpoint="n1:29500").command(
        Path("/shared/r.request"), environ={"SLURM_JOB_ID": "77"})
    assert cmd[:4] == ["srun", "--nodes=2", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    assert "--nnodes=2" in cmd and "--rdzv-endpoint=n1:29500" in cmd and "--rdzv-id=77" in cmd
    assert two.world_size == 8
    with pytest.raises(Exception, match="does not divide the global batch 64"):
        launchers.get("torchrun", nproc_per_node=3, nnodes=2).check(make_spec("smoke"))
    with pytest.raises(Exception, match="nproc_per_node must be a whole number >= 1"):
        launchers.get("torchrun", nproc_per_node=0)


def test_rank_comes_from_torchrun_first_then_a_multi_task_slurm_step():
    assert ranks.rank({}) == 0 and ranks.is_writer({})
    assert ranks.rank({"RANK": "1", "SLURM_PROCID": "0", "SLURM_STEP_NUM_TASKS": "2"}) == 1
    assert ranks.rank({"SLURM_PROCID": "3", "SLURM_STEP_NUM_TASKS": "4"}) == 3
    assert ranks.rank({"SLURM_PROCID": "3"}) == 0  # one task per step (an array task): its own rank 0
    assert ranks.rank({"JAX_PROCESS_ID": "1"}) == 1 and not ranks.is_writer({"JAX_PROCESS_ID": "1"})
    assert ranks.world_size({"WORLD_SIZE": "4"}) == 4 and ranks.local_rank({"LOCAL_RANK": "1"}) == 1


JAX_PROBE = """
import json, numpy as np
from runner.backends.jax_backend import JaxBackend
from runner.workload import reference
from runner.workload.spec import make_spec
spec = make_spec("smoke", dataset="synthetic")
b = JaxBackend(spec, "cpu", {"devices": "2"})
x = np.zeros((64, 28, 28), np.float32); y = np.zeros(64, np.int64)
b.setup(reference.initial_params(spec), x, y, x[:8], y[:8])
order = b._put(reference.epoch_order(spec, 0)[:1].astype(np.int32), b.rows_split)
zeros = b._put((np.zeros((), np.float32), np.zeros((), np.int32), np.zeros((), np.int32)))
carry = (b.params, b.opt_state, *zeros)  # weights, Adam moments, loss sum, correct, step counter
hlo = b._step.lower(carry, order, b._put(b._corrections(1)), b.train_x, b.train_y).compile().as_text()
try:
    JaxBackend(spec, "cpu", {"devices": "4"})
    too_many = None
except Exception as e:
    too_many = str(e)
print(json.dumps({"devices": [str(d) for d in b.params["fc1"]["kernel"].sharding.device_set],
                  "all_reduce": "all-reduce" in hlo, "batch_shards": len(order.sharding.device_set),
                  "parallel": b.info()["parallel"], "too_many": too_many}))
"""


@pytest.mark.slow
@needs_jax
def test_jax_shards_the_batch_over_two_devices_and_all_reduces_the_gradient():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", JAX_PROBE], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env=env)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(got["devices"]) == 2 and got["batch_shards"] == 2  # weights on both, each batch split
    assert got["all_reduce"]  # XLA averages the gradient across the two devices inside the step
    assert got["parallel"]["world_size"] == 2 and got["parallel"]["per_rank_batch"] == 32
    assert "devices=4: jax sees 2 cpu device(s)" in got["too_many"]


@pytest.mark.slow
@needs_jax
def test_jax_on_two_devices_passes_parity(tmp_path, synthetic_dir):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    out = run_cli("run", "--framework", "jax", "--option", "jax.devices=2", "--preset", "smoke", "--dataset",
                  "synthetic", "--data-dir", synthetic_dir, "--device", "cpu", "--out", tmp_path, "--no-table",
                  timeout=600, env=env)
    assert out.returncode == 0, out.stderr
    rec = _only_record(tmp_path)
    assert rec["status"] == "ok" and rec["framework"]["options"]["devices"] == "2"
    assert rec["parallel"]["devices"] == 2 and rec["parallel"]["strategy"].startswith("jax.sharding")
    _assert_parity_passed(rec)


def test_data_parallel_rows_stay_apart_and_get_a_scaling_column():
    from runner.report import compare

    def rec(devices, steady, **kw):
        r = make_record(steady=steady, **kw)
        r["parallel"].update(world_size=devices, processes=devices, devices=devices,
                             per_rank_batch=64 // devices)
        return r

    recs = [rec(1, 4.0), rec(1, 4.2), rec(2, 2.5), rec(4, 1.6),
            rec(2, 9.0, framework="jax", version="0.10.2")]  # jax has no 1-device row: no scaling
    table = compare.rows(recs)
    by = {(r["framework"], r["devices"]): r for r in table}
    assert len(table) == 4 and by[("torch", 1)]["runs"] == 2  # never merged across device counts
    assert by[("torch", 2)]["speedup"] == pytest.approx(4.1 / 2.5)
    assert by[("torch", 4)]["efficiency"] == pytest.approx(4.1 / 1.6 / 4)
    assert by[("torch", 1)]["speedup"] is None and by[("jax", 2)]["speedup"] is None
    text = compare.render(table)
    assert "scaling (speed-up, efficiency)" in text and "1.64x, 82 %" in text and "| cpu x4 " in text
    base = {(r["framework"], r["devices"]): r for r in compare.rows(recs, baseline="framework=torch,devices=1")}
    assert base[("torch", 1)]["baseline"] and base[("torch", 2)]["ratio_to_baseline"] == pytest.approx(2.5 / 4.1)


@pytest.mark.slow
@needs_torch
def test_a_rank_that_dies_still_leaves_one_record(tmp_path, synthetic_dir):
    import psutil

    cmd = [sys.executable, "-m", "runner", "run", "--framework", "torch", "--launcher", "torchrun", "--nproc", "2",
           "--preset", "smoke", "--dataset", "synthetic", "--data-dir", str(synthetic_dir), "--epochs", "300",
           "--out", str(tmp_path), "--no-table"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not any("/300  loss" in p.read_text() for p in tmp_path.glob("logs/*.log")):
            assert proc.poll() is None and time.monotonic() < deadline, "the run never started training"
            time.sleep(0.5)
        rank1 = [p for p in psutil.Process(proc.pid).children(recursive=True)
                 if "runner.launch.child" in p.cmdline() and p.environ().get("RANK") == "1"]
        assert len(rank1) == 1
        rank1[0].kill()  # SIGKILL: rank 1 can record nothing; torchrun ends rank 0
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err
    rec = _only_record(tmp_path)  # rank 0's, or the parent's for it
    assert rec["status"] in ("failed", "interrupted") and rec["error"], rec["status"]
    assert rec["parallel"]["world_size"] == 2 and rec["launcher"]["name"] == "torchrun"


@pytest.mark.slow
@needs_jax
def test_jax_across_two_processes_joins_through_jax_distributed_and_passes_parity(tmp_path, synthetic_dir):
    """What srun with 2 tasks does on a cluster (JAX reads Slurm's variables there); here the
    coordinates come by hand: 2 processes, 1 CPU device each, gloo collectives between them."""
    import socket

    from runner.request import RunRequest

    req = RunRequest(job="train", spec=make_spec("smoke", dataset="synthetic"), framework="jax", device="cpu",
                     data_dir=str(synthetic_dir), out_dir=str(tmp_path), options={"loop": "step", "devices": "all"},
                     parity_steps=32, launcher=launchers.get("process").describe())
    path = req.write(tmp_path / "task.request")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    procs = [subprocess.Popen([sys.executable, "-m", "runner.launch.child", str(path)], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env={**env, "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}", "JAX_NUM_PROCESSES": "2",
                                   "JAX_PROCESS_ID": str(i)}) for i in range(2)]
    try:
        errs = [p.communicate(timeout=600)[1] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], errs
    rec = _only_record(tmp_path)  # process 0's
    assert rec["status"] == "ok" and rec["parallel"]["processes"] == 2 and rec["parallel"]["devices"] == 2
    _assert_parity_passed(rec)
