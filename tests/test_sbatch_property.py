"""Property-based (hypothesis): arbitrary strings (newlines, NULs, quotes, $(...), backslashes, %, 300+
characters) thrown at every value of `slurm submit` that reaches the sbatch script. Either the value is
refused (UserError: one line, the CLI's exit 2), or the script says exactly what was asked: its #SBATCH
lines, read as sbatch's tokenizer reads them, are exactly the expected options, and run with bash under
fake sbatch/srun/apptainer/python that only record their arguments, it runs exactly the expected command
and creates no file."""

import shlex
import tempfile
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is not installed: pip install 'dlbench[dev]'")
from hypothesis import HealthCheck, event, given, settings, strategies as st  # noqa: E402

from conftest import ROOT  # noqa: E402
from runner.errors import UserError  # noqa: E402
from runner.launch import slurm  # noqa: E402
from sbatch_script import commands, fake, fake_bin, files, run, sbatch_options  # noqa: E402

HOSTILE = ["\n", "\r", "\x00", "\t", "\x1b[2J", "\x9b", "'", '"', "\\", "#", " ", "$(touch X)", "`touch X`",
           "; touch X", "%", "%A", ",", ":", "=", "-", "--", "hetjob", "PackJob", "é", "\u2028", "\udcff", "*", "~"]
pieces = st.sampled_from(HOSTILE) | st.text(max_size=8)
hostile = (st.lists(pieces, max_size=6).map("".join)
           | st.text(min_size=300, max_size=340)
           | st.lists(pieces, min_size=1, max_size=3).map(lambda p: "".join(p) * 60))  # 300+ characters, mostly

# Each value: a usual one, or an arbitrary string (only --time/--partition have a fixed vocabulary).
VALUES = {
    "out": st.sampled_from(["run", "a b", "x'y\"z", "$(touch X)", "50%"]) | hostile,
    "partition": st.sampled_from([None, "gpu", "gpu,debug"]) | hostile,
    "time": st.sampled_from([None, "90", "1-12:00:00", "UNLIMITED"]) | hostile,
    "extra": st.lists(st.sampled_from(["--account=abc", "--exclusive"]) | hostile.map(lambda v: "--comment=" + v)
                      | hostile, max_size=3).map(tuple),
    "python": st.sampled_from(["python", "py thon", "py'$(touch X)"]) | hostile,
    "container": st.sampled_from([None, "dl.sif", "docker://x/y:1", "a b.sif"]) | hostile,
    "data_dir": st.sampled_from([None, "/data", "/da ta/$(touch X)"]) | hostile,
    "gpus_per_task": st.none() | st.integers(-2, 4),
    "cpus_per_task": st.none() | st.integers(-2, 4),
}


def _expected_options(shared: Path, n: int, v: dict) -> list[str]:
    out = [f"--job-name=dlbench", f"--array=0-{n - 1}", f"--output={str(shared).replace('%', '%%')}/slurm/logs/%A_%a.out",
           "--signal=B:TERM@60", "--ntasks=1"]
    for flag in ("partition", "gpus_per_task", "cpus_per_task", "time"):
        if v[flag] is not None:
            out.append(f"--{flag.replace('_', '-')}={v[flag]}")
    return out + list(v["extra"])


def _check(v: dict) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bin_dir = fake_bin(tmp / "bin")
        work = tmp / "work"
        work.mkdir()
        shared = str(tmp / "shared") + "/" + v["out"]
        python = v["python"]
        if python != "python" and not python.startswith("-"):  # a fake of that name, in 50-character folders
            name = "py-" + python.replace("/", "_")
            python = str(bin_dir.joinpath(*[name[i:i + 50] for i in range(0, len(name), 50)]))
        job = slurm.JobSettings(partition=v["partition"], gpus_per_task=v["gpus_per_task"],
                                cpus_per_task=v["cpus_per_task"], time=v["time"], container=v["container"],
                                extra=v["extra"], python=python)
        try:
            text = slurm.script(shared, 3, job, v["data_dir"])
        except UserError as e:
            event(f"refused: {str(e).split(' ')[0]}")
            assert "\n" not in str(e) and "\r" not in str(e) and str(e), str(e)  # the CLI's one line, exit 2
            return
        resolved = Path(shared).resolve()
        assert text.endswith("\n")
        assert sbatch_options(text) == _expected_options(resolved, 3, v)
        assert len(commands(text)) == (2 if v["container"] else 3)  # set -euo pipefail, [cd ...,] exec ...
        if v["container"] is None and python != "python":
            Path(python).parent.mkdir(parents=True, exist_ok=True)
            fake(Path(python), '"$0"')  # records the path bash was given: the exec line's first word, exactly
        before, root = files(tmp), set(p.name for p in ROOT.iterdir())
        args, code = run(text, work, bin_dir)
        request = f"{resolved}/slurm/requests/task-007.request"
        if v["container"] is None:
            assert args == [python, "-m", "runner", "slurm", "task", request]
        else:
            binds = ",".join(dict.fromkeys(p for p in (str(resolved), v["data_dir"]) if p))
            assert args == ["apptainer", "exec", *(["--nv"] if v["gpus_per_task"] else []), "--bind", binds,
                            v["container"], "python", "-m", "runner", "slurm", "task", request]
        assert code == 0
        event("written and run")
        assert files(tmp) == before and set(p.name for p in ROOT.iterdir()) == root  # nothing else ran


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(sorted(VALUES)), data=st.data())
def test_one_arbitrary_value_is_refused_or_written_exactly(field, data):
    """One value arbitrary, the others usual: each field's refusal and quoting on its own."""
    v = {"out": "run", "partition": "gpu", "time": "01:00:00", "extra": ("--account=abc",), "python": "python",
         "container": None, "data_dir": None, "gpus_per_task": 1, "cpus_per_task": 2}
    if field == "data_dir":
        v["container"] = "dl.sif"  # the data folder reaches the script only as a bind
    v[field] = data.draw(VALUES[field], label=field)
    _check(v)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(v=st.fixed_dictionaries(VALUES))
def test_all_values_arbitrary_at_once_are_refused_or_written_exactly(v):
    _check(v)
