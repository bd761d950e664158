"""Bad launcher settings are one line before anything starts, and torchrun starts on several nodes:
python= looked at (never run), a program gone by start time, grace_s out of range, --nnodes 2 outside
and inside a Slurm job (a real two-node Slurm on localhost, scripts/slurm-local.sh start DIR 2), and
batch norm over CPU ranks refused before torchrun prints its own traceback."""

import json
import os
import subprocess
import sys
import time

import pytest

from conftest import ROOT, local_slurm, needs_torch, run_cli
from runner.errors import UserError
from runner.launch import launchers
from runner.request import Repeat, RunRequest, Sampling
from runner.workload.spec import make_spec

SMOKE = ["--framework", "torch", "--dataset", "synthetic", "--preset", "smoke"]
NO_SLURM = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}


def _one_line_error(out: subprocess.CompletedProcess, message: str) -> None:
    assert out.returncode == 2, out.stderr
    assert out.stderr == f"dlbench: error: {message}\n"


def _program(folder, name="python-copy", mode=0o755):
    path = folder / name
    path.write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
    path.chmod(mode)
    return path


@pytest.fixture
def not_executable(tmp_path):
    return _program(tmp_path, "python-noexec", 0o644)


@pytest.mark.parametrize("setting, message", [
    ("python=/nonexistent", "python=/nonexistent: no such file"),
    ("python=dlbench-no-such-python", "python=dlbench-no-such-python: not found on PATH"),
    ("python=/", "python=/: not a file"),
    ("python=NOEXEC", "python=NOEXEC: not executable (chmod +x, or another python=)"),
    ("python=", "python= is empty: give the interpreter's path (or 'none' for the framework's own)"),
])
@pytest.mark.parametrize("command", [["run"], ["sweep", "--set", "batch_size=32,64"],
                                     ["run", "--launcher", "torchrun", "--nproc", "1"]],
                         ids=["run", "sweep", "torchrun"])
def test_an_interpreter_that_cannot_start_is_one_line_before_anything_starts(tmp_path, not_executable, command,
                                                                             setting, message):
    setting, message = (s.replace("NOEXEC", str(not_executable)) for s in (setting, message))
    launcher = "torchrun" if "torchrun" in command else "process"
    out = run_cli(*command, *SMOKE, "--out", tmp_path / "out", "--launcher-setting", setting, timeout=120)
    _one_line_error(out, f"launcher {launcher}: {message}")
    assert not (tmp_path / "out").exists()


def test_the_interpreter_is_looked_at_never_run(tmp_path):
    """A wrapper may block whenever it runs (tune's tests pass one): the check must not start it."""
    marker = tmp_path / "ran"
    wrapper = tmp_path / "wrapper"
    wrapper.write_text(f"#!/bin/sh\ntouch {marker}\nsleep 600\n")
    wrapper.chmod(0o755)
    for name in ("process", "torchrun"):
        launchers.from_args(name, [f"python={wrapper}"]).preflight()
    bare = launchers.get("process", python="sh")  # a bare name: found on PATH
    bare.preflight()
    assert not marker.exists()


def _request(launcher, tmp_path) -> RunRequest:
    return RunRequest(job="train", spec=make_spec("smoke", dataset="synthetic"), framework="torch", device="cpu",
                      data_dir=str(tmp_path), out_dir=str(tmp_path / "out"), options={}, command="test",
                      repeat=Repeat(index=0, of=1, policy="fixed", max=1), sampling=Sampling(),
                      launcher=launcher.describe())


@pytest.mark.parametrize("name", ["process", "torchrun"])
@pytest.mark.parametrize("change, reason", [(lambda p: p.unlink(), "No such file or directory"),
                                            (lambda p: p.chmod(0o644), "Permission denied")],
                         ids=["removed", "made-unexecutable"])
def test_an_interpreter_gone_between_the_check_and_the_start_is_the_same_one_line(tmp_path, name, change, reason):
    program = _program(tmp_path)
    launcher = launchers.from_args(name, [f"python={program}"], **({"nproc_per_node": 1} if name == "torchrun" else {}))
    launcher.preflight()  # passes: the file is there and executable
    change(program)
    with pytest.raises(UserError) as err:
        launchers.launch(_request(launcher, tmp_path), launcher)
    assert str(err.value) == f"launcher {name}: cannot start {program}: {reason}"


@pytest.mark.parametrize("value, shown", [("nan", "nan"), ("inf", "inf"), ("-inf", "-inf"), ("1e400", "1e400"),
                                          ("-1", "-1")])
def test_grace_s_must_be_finite_and_not_negative(tmp_path, value, shown):
    out = run_cli("run", *SMOKE, "--out", tmp_path / "out", "--launcher-setting", f"grace_s={value}", timeout=120)
    _one_line_error(out, f"--launcher-setting 'grace_s={value}': grace_s must be a finite number >= 0, got {shown}")
    assert not (tmp_path / "out").exists()


def test_grace_s_out_of_range_is_refused_by_every_launcher():
    for name in ("process", "torchrun", "container"):  # from a request or the API too: never into the JSON
        with pytest.raises(UserError, match=f"launcher {name}: grace_s must be a finite number of seconds >= 0,"
                                            f" got nan"):
            launchers.get(name, grace_s=float("nan"))
        with pytest.raises(UserError, match=f"launcher {name}: grace_s must be .* >= 0, got -1"):
            launchers.get(name, grace_s=-1)
    assert launchers.get("process", grace_s=0).grace_s == 0  # no grace at all is a choice


def test_several_nodes_outside_slurm_need_a_rendezvous(tmp_path):
    out = run_cli("run", *SMOKE, "--out", tmp_path / "out", "--launcher", "torchrun", "--nnodes", "2",
                  timeout=120, env=NO_SLURM)
    _one_line_error(out, "launcher torchrun: several nodes need rdzv_endpoint=HOST:PORT (or run inside a Slurm job)")
    out = run_cli("run", *SMOKE, "--out", tmp_path / "out", "--launcher", "torchrun", "--nnodes", "2",
                  "--launcher-setting", "rdzv_endpoint=127.0.0.1:29400", timeout=120, env=NO_SLURM)
    _one_line_error(out, "launcher torchrun: several nodes need rdzv_id (or run inside a Slurm job)")
    assert not (tmp_path / "out").exists()


def test_srun_that_is_not_here_is_one_line(tmp_path):
    env = {**NO_SLURM, "PATH": os.path.dirname(sys.executable)}  # this python, and no srun
    out = run_cli("run", *SMOKE, "--out", tmp_path / "out", "--launcher", "torchrun", "--nnodes", "2",
                  "--launcher-setting", "rdzv_endpoint=127.0.0.1:29400", "--launcher-setting", "rdzv_id=x",
                  timeout=120, env=env)
    _one_line_error(out, "launcher torchrun: nnodes=2 starts torchrun on each node through srun, which is not on"
                         " PATH here (run inside a Slurm job, or srun=false and start it on each node)")


def test_the_torchrun_command_takes_the_framework_where_start_passes_it(monkeypatch):
    """start() passes (request_file, framework) to every launcher's command: torchrun read the framework
    as the environment ('str' object has no attribute 'get') on every start with several nodes."""
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    launcher = launchers.get("torchrun", nnodes=2, rdzv_endpoint="n1:29500", python="py")
    cmd = launcher.command("/shared/r.json", "torch")
    assert cmd[:4] == ["srun", "--nodes=2", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    assert cmd[4:] == ["py", "-m", "torch.distributed.run", "--nnodes=2", "--rdzv-backend=c10d",
                       "--rdzv-endpoint=n1:29500", "--rdzv-id=7", "--nproc-per-node=2", "-m", "runner.launch.child",
                       "/shared/r.json"]


@pytest.mark.parametrize("command", [["run"], ["verify"]])
def test_batch_norm_over_cpu_ranks_is_refused_before_torchrun_starts(tmp_path, command):
    out = run_cli(*command, *SMOKE, "--model", "resnet18", "--device", "cpu", "--launcher", "torchrun",
                  "--nproc", "2", *(["--out", tmp_path / "out"] if command == ["run"] else []), timeout=120)
    _one_line_error(out, "launcher torchrun: resnet18 has batch norm, which over 2 ranks needs SyncBatchNorm, which"
                         " PyTorch runs on CUDA only, and device cpu is not CUDA here: use --nproc 1, or a CUDA GPU")
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def two_node_slurm(tmp_path_factory, _isolated_caches):
    """A real Slurm with two nodes (two slurmd on this host) for this module; skipped with the script's
    reason where it cannot run (not root, no apt, Slurm's ports taken: test_slurm's one-node cluster)."""
    yield from local_slurm(tmp_path_factory.mktemp("slurm2"), nodes=2)


@pytest.mark.slow
@needs_torch
def test_run_with_two_nodes_in_a_slurm_allocation(two_node_slurm, tmp_path, synthetic_dir):
    """What a user types inside `salloc --nodes=2`: torchrun once per node through srun, meeting at the
    first node's address; one record from rank 0, the other node's rank keeps its own log."""
    out_dir = tmp_path / "out"
    t0 = time.monotonic()
    out = subprocess.run(["salloc", "--nodes=2", sys.executable, "-m", "runner", "run", *SMOKE, "--data-dir",
                          synthetic_dir, "--out", out_dir, "--launcher", "torchrun", "--nnodes", "2", "--nproc", "1"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    print(f"\ntwo-node torchrun run under salloc: {time.monotonic() - t0:.1f} s")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    (path,) = out_dir.glob("*.json")
    rec = json.loads(path.read_text())
    assert rec["status"] == "ok" and rec["parity"]["status"] == "pass", rec["error"]
    assert rec["parallel"]["world_size"] == 2 and rec["parallel"]["comm_backend"] == "gloo"
    assert rec["launcher"] == {"name": "torchrun", "settings": {
        "python": None, "grace_s": 120.0, "nproc_per_node": 1, "nnodes": 2, "rdzv_endpoint": None,
        "rdzv_id": None, "srun": None}}
    sched = rec["environment"]["scheduler"]
    assert sched["kind"] == "slurm" and sched["num_nodes"] == 2 and sched["nodes"] == "node[1-2]"
    logs = sorted(p.name for p in (out_dir / "logs").iterdir())
    assert logs == [f"torch-{rec['run_id'][:12]}.log", f"torch-{rec['run_id'][:12]}.rank1.log"]
    assert {p.name for p in out_dir.iterdir()} == {"logs", path.name}  # the shared request folder is gone
