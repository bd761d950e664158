"""Issue 27, case 1: every value that reaches the sbatch script of `slurm submit` is checked or quoted.
Each failure reproduced: a newline in --out/--partition/--sbatch/--time wrote a command into the script
(and sbatch then ignored every #SBATCH line after it), a path with a space broke #SBATCH --output=, any
--time and any array size went through, negative GPU/CPU counts went through, a login node without
sbatch kept a half-made submission, and --models 1,,2 dropped the empty item. The script is read here
the way sbatch and bash read it (tests/sbatch_script.py); the CLI runs as a user runs it."""

import os
import shlex
from pathlib import Path

import pytest

from conftest import ROOT, run_cli
from runner.errors import UserError
from runner.launch import slurm
from sbatch_script import commands, fake, fake_bin, files, run, sbatch_options

DRY = ["slurm", "submit", "--framework", "torch", "--dataset", "synthetic", "--dry-run"]


def _refused(out, flag: str) -> None:
    """Exit 2, one line on stderr naming the flag, no script printed."""
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.count("\n") == 1 and out.stderr.startswith(f"dlbench: error: {flag}"), out.stderr
    assert out.stdout == ""


@pytest.mark.parametrize("flag, value", [
    ("--out", "dir\ntouch PWNED #"),
    ("--partition", "gpu\ntouch PWNED"),
    ("--sbatch", "--account=abc\ntouch PWNED"),
    ("--time", "01:00:00\ntouch PWNED"),
    ("--python", "python\ntouch PWNED"),
    ("--container", "dl.sif\ntouch PWNED"),
])
def test_a_newline_in_a_value_is_refused_before_any_script_is_written(tmp_path, flag, value):
    """The old script carried `touch PWNED #/slurm/requests...` as a line of its own."""
    out_dir = value if flag == "--out" else tmp_path / "run"
    args = [*DRY, "--out", out_dir] + ([] if flag == "--out" else [f"{flag}={value}"])
    _refused(run_cli(*args, timeout=60), flag)
    assert not (tmp_path / "run").exists() and not (ROOT / "PWNED").exists()


def test_the_old_injection_ran_and_hid_the_array_from_sbatch(tmp_path):
    """What the check prevents, on the script the old code wrote for --out $'dir\\ntouch PWNED #': bash
    runs `touch PWNED`, and sbatch stops reading #SBATCH lines at that command (--array, --output lost)."""
    old = ("#!/bin/bash\n#SBATCH --job-name=dlbench\n#SBATCH --array=0-0\n"
           "# or only the missing ones with: python -m runner slurm resubmit /x/dir\ntouch PWNED #\n"
           "#SBATCH --output=/x/dir\ntouch PWNED #/slurm/logs/%A_%a.out\nexec python -m runner slurm task x\n")
    assert "--output=/x/dir" not in sbatch_options(old) and "--array=0-0" in sbatch_options(old)
    bin_dir = fake_bin(tmp_path / "bin")
    (bin_dir / "touch").symlink_to("/usr/bin/touch")
    args, _ = run(old, _work(tmp_path), bin_dir)
    assert (tmp_path / "work" / "PWNED").exists() and args[0] == "python"


def _job(**kw) -> slurm.JobSettings:
    return slurm.JobSettings(**{"python": "python", **kw})  # the fake one on PATH in run()


def test_a_folder_with_spaces_quotes_and_a_hash_is_one_output_pattern(tmp_path):
    """`#SBATCH --output=/a dir/...` was read by sbatch as --output=/a and a stray `dir/...` argument."""
    shared = tmp_path / "a dir #1 \"q\" 'x' $(touch X) 50%"
    text = slurm.script(shared, 3, _job(partition="gpu"), None)
    options = sbatch_options(text)
    assert options[:3] == ["--job-name=dlbench", "--array=0-2",
                           f"--output={str(shared).replace('%', '%%')}/slurm/logs/%A_%a.out"]
    args, code = run(text, _work(tmp_path), fake_bin(tmp_path / "bin"))
    assert code == 0 and args[-1] == f"{shared}/slurm/requests/task-007.request"


def _work(tmp_path: Path) -> Path:
    (tmp_path / "work").mkdir(exist_ok=True)
    return tmp_path / "work"


def test_a_backslash_or_the_word_for_a_heterogeneous_job_in_the_folder_is_refused(tmp_path):
    """A backslash in --output turns off %A/%a (every task one log); 'hetjob' splits the job in two."""
    for name, words in (("back\\slash", "no backslash"), ("my-HetJob-runs", "heterogeneous-job separator")):
        with pytest.raises(UserError, match=words):
            slurm.script(tmp_path / name, 1, _job())


@pytest.mark.parametrize("value", ["90", "90:30", "01:00:00", "2-0", "2-12:30", "2-12:30:15", "UNLIMITED", "infinite"])
def test_slurm_time_formats_are_written(tmp_path, value):
    assert f"--time={value}" in sbatch_options(slurm.script(tmp_path, 1, _job(time=value)))


@pytest.mark.parametrize("value", ["1:00:00:00", "1h", "-5", "2-", "1:", "", " 10", "10 --array=0-9", "١٠"])
def test_anything_else_as_time_is_refused(tmp_path, value):
    with pytest.raises(UserError, match="--time"):
        slurm.script(tmp_path, 1, _job(time=value))


@pytest.mark.parametrize("value", ["gpu --array=0-99", "gpu#x", "gpu,", "", "a b"])
def test_a_partition_is_a_name_or_a_comma_list(tmp_path, value):
    with pytest.raises(UserError, match="--partition"):
        slurm.script(tmp_path, 1, _job(partition=value))
    assert "--partition=gpu,debug" in sbatch_options(slurm.script(tmp_path, 1, _job(partition="gpu,debug")))


def test_sbatch_options_are_one_long_option_each_with_any_value_quoted(tmp_path):
    extra = ("--account=abc", "--exclusive", "--comment=a b #c \"d\" 'e' \\f", "--constraint=a100&nvlink")
    options = sbatch_options(slurm.script(tmp_path, 1, _job(extra=extra)))
    assert options[-len(extra):] == list(extra)
    for bad, words in (("-A abc", "one long sbatch option"), ("--account abc", "one long sbatch option"),
                       ("rm -rf x", "one long sbatch option"), ("--array=0-5000", "writes --array"),
                       ("--arr=0-5000", "writes --array"), ("--output=/tmp/x", "writes --array/--output"),
                       ("--comment=hetjob", "heterogeneous")):
        with pytest.raises(UserError, match=words):
            slurm.script(tmp_path, 1, _job(extra=(bad,)))


def test_negative_gpu_or_cpu_counts_are_refused(tmp_path):
    for flag, value in (("--gpus-per-task", "-1"), ("--cpus-per-task", "-2"), ("--cpus-per-task", "0")):
        out = run_cli(*DRY, "--out", tmp_path / "run", flag, value, timeout=60)
        _refused(out, flag)
    assert "--gpus-per-task=0" in sbatch_options(slurm.script(tmp_path, 1, _job(gpus_per_task=0)))


def test_an_array_larger_than_the_stated_maximum_is_refused_before_anything_is_written(tmp_path):
    out = run_cli(*DRY, "--out", tmp_path / "run", "--repeats", "1002", timeout=60)
    _refused(out, "1002 tasks: more than --max-array-size 1001")
    at_most = run_cli(*DRY, "--out", tmp_path / "run", "--repeats", "1001", timeout=60)
    assert at_most.returncode == 0 and "#SBATCH --array=0-1000" in at_most.stdout.splitlines()
    larger = run_cli(*DRY, "--out", tmp_path / "run", "--repeats", "1002", "--max-array-size", "5000", timeout=60)
    assert larger.returncode == 0 and "#SBATCH --array=0-1001" in larger.stdout.splitlines()
    smaller = run_cli(*DRY, "--out", tmp_path / "run", "--repeats", "3", "--max-array-size", "2", timeout=60)
    _refused(smaller, "3 tasks: more than --max-array-size 2")
    assert not (tmp_path / "run").exists()


def test_python_and_container_are_quoted_and_never_an_option(tmp_path):
    text = slurm.script(tmp_path, 1, _job(python="/a b/py'thon"))
    assert commands(text)[-1].startswith(f"exec {shlex.quote('/a b/py' + chr(39) + 'thon')} -m runner ")
    for kw, flag in ((dict(python="-c"), "--python"), (dict(container="--bind=/:/host"), "--container")):
        with pytest.raises(UserError, match=flag):
            slurm.script(tmp_path, 1, _job(**kw))
    with pytest.raises(UserError, match="apptainer --bind"):
        slurm.script(tmp_path / "a,b", 1, _job(container="dl.sif"))


def test_models_with_an_empty_item_are_refused(tmp_path):
    """`--models lenet5,,mlp` ran lenet5 and mlp: a typo taken for a list of two."""
    out = run_cli(*DRY, "--models", "lenet5,,mlp", "--out", tmp_path / "run", timeout=60)
    _refused(out, "--models 'lenet5,,mlp': an empty value in the list")


def _submit_env(bin_dir: Path) -> dict:
    return {**os.environ, "PATH": str(bin_dir)}


def test_without_sbatch_nothing_is_written(tmp_path, synthetic_dir):
    """The old submit wrote every request and the script, then found no sbatch: the folder then held a
    'submission' that blocked the next one."""
    empty = tmp_path / "bin"
    empty.mkdir()
    shared = tmp_path / "shared"
    shared.mkdir()
    out = run_cli("slurm", "submit", "--framework", "torch", "--dataset", "synthetic", "--data-dir", synthetic_dir,
                  "--out", shared, timeout=60, env=_submit_env(empty))
    assert out.returncode == 2 and out.stderr == (
        "dlbench: error: sbatch not found: run this on a Slurm login node (or use --dry-run)\n")
    assert files(shared) == set()
    out = run_cli("slurm", "submit", "--framework", "torch", "--dataset", "synthetic", "--data-dir", synthetic_dir,
                  "--out", tmp_path / "new", timeout=60, env=_submit_env(empty))
    assert out.returncode == 2 and not (tmp_path / "new").exists()


def test_a_failed_sbatch_takes_back_what_submit_wrote(tmp_path, synthetic_dir):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text("#!/bin/sh\necho 'sbatch: error: Invalid account' >&2\necho 'or partition' >&2\n"
                                    "exit 1\n")
    (bin_dir / "sbatch").chmod(0o755)
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "kept.txt").write_text("the user's")
    args = ["slurm", "submit", "--framework", "torch", "--dataset", "synthetic", "--data-dir", synthetic_dir,
            "--out", shared]
    out = run_cli(*args, timeout=60, env=_submit_env(bin_dir))
    assert out.returncode == 2 and out.stderr == (
        "dlbench: error: sbatch failed: sbatch: error: Invalid account or partition\n")
    assert files(shared) == {"kept.txt"}
    fake(bin_dir / "sbatch", "sbatch")  # now it succeeds (and records): the same --out takes the submission
    (bin_dir / "sbatch").write_text((bin_dir / "sbatch").read_text() + "echo 42\n")
    out = run_cli(*args, timeout=60, env={**_submit_env(bin_dir), "DLBENCH_TEST_RECORD": str(tmp_path / "rec")})
    assert out.returncode == 0 and out.stdout.startswith("slurm: job 42, 1 task(s)"), out.stderr
    assert (tmp_path / "rec").read_bytes().split(b"\0")[:-1] == [
        b"sbatch", b"--parsable", str(shared / "slurm" / "dlbench.sbatch").encode()]
