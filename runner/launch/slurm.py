"""The run matrix as one Slurm job array: one task per framework x model x repeat, one run request each.

    python -m runner slurm submit --framework all --models lenet5,mlp --repeats 3 --partition gpu \
        --gpus-per-task 1 --time 01:00:00 --out /shared/dlbench/run1 [--container dlbench.sif] [--dry-run]
    python -m runner slurm status /shared/dlbench/run1     # every task: its record's status, or Slurm's state
    python -m runner slurm wait /shared/dlbench/run1       # polls squeue until no task is pending or running
    python -m runner slurm resubmit /shared/dlbench/run1   # only the tasks without a completed record
    python -m runner compare /shared/dlbench/run1          # the merged table

The shared folder holds everything, readable: slurm/dlbench.sbatch (a plain script, kept, reusable:
`sbatch --array=3,5 slurm/dlbench.sbatch` reruns tasks 3 and 5), slurm/requests/task-NNN.request (one
run request each, runner.request), slurm/jobs.jsonl (one line per sbatch: job id and task indices),
slurm/logs/ (Slurm's output per task) and the records. Every array task runs `python -m runner slurm
task REQUEST` (task()), the parent side of one run on the compute node: it starts the child with the
request's launcher (a process, or torchrun ranks) and writes the `lost` record if the child left none.
A task Slurm ends (time limit, preemption, scancel) gets SIGTERM first (--signal B:TERM@60 for the
time limit): the child records "interrupted". A task that leaves nothing at all (a node that died, a
SIGKILL before the record) shows as "missing" in `status`, and `resubmit` runs exactly those again.

Plain sbatch rather than submitit: the scripts are what a user reads, keeps and reruns by hand, and
without slurmdbd (common on small clusters, and here) submitit cannot tell a job that died without a
result from one still running; squeue plus the records in the shared folder can.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from runner import atomic
from runner.errors import UserError
from runner.request import RunRequest

SCRIPT = "slurm/dlbench.sbatch"
JOBS = "slurm/jobs.jsonl"
REQUESTS = "slurm/requests"
LOGS = "slurm/logs"
ACTIVE = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING", "SIGNALING",
          "STAGE_OUT", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "STOPPED")
DONE = ("ok", "below_target", "diverged", "unavailable")  # a result: resubmitting would not change it
# Slurm's default MaxArraySize (slurm.conf): array indices 0..1000. A larger array is refused by sbatch
# only after dlbench wrote every request; a cluster with a larger limit says so with --max-array-size.
MAX_ARRAY_SIZE = 1001


@dataclass(frozen=True)
class JobSettings:
    """What the sbatch script asks Slurm for; None: the cluster's default."""

    partition: str | None = None
    gpus_per_task: int | None = None
    cpus_per_task: int | None = None
    time: str | None = None
    container: str | None = None      # an Apptainer image (.sif, or docker://...), run with apptainer exec
    nodes: int = 1                    # > 1 only for torchrun across nodes (its launcher runs srun)
    job_name: str = "dlbench"
    extra: tuple[str, ...] = ()       # further sbatch options, e.g. --account=abc, one per #SBATCH line
    python: str = sys.executable      # the interpreter with dlbench on the compute nodes (a shared venv)
    max_array_size: int = MAX_ARRAY_SIZE  # the cluster's MaxArraySize: more tasks are refused up front


# What may reach the script. `#SBATCH` lines are read by sbatch's own tokenizer, not a shell: it splits at
# whitespace, groups with '...' or "...", takes \ as an escape and an unquoted # as a comment, and reads
# any #SBATCH line holding "hetjob" or "packjob" (any case) as a heterogeneous-job separator. A newline
# would end the line (the rest becomes a command, and sbatch stops reading #SBATCH lines there). So
# values there are checked against what Slurm accepts and written in double quotes where needed
# (_sbatch_word); values in the exec line are shlex-quoted for bash. No value may hold a control
# character: a newline or NUL cannot be written into either safely, and the script is meant to be read.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1 (\x9b is a terminal's CSI)
_HETJOB = re.compile(r"hetjob|packjob", re.IGNORECASE)
# Slurm's --time: minutes, minutes:seconds, hours:minutes:seconds, days-hours, days-hours:minutes,
# days-hours:minutes:seconds; UNLIMITED / INFINITE in any case (ASCII digits only: \d takes any script's)
_TIME = re.compile(r"[0-9]+(:[0-9]+){0,2}|[0-9]+-[0-9]+(:[0-9]+){0,2}|unlimited|infinite", re.IGNORECASE)
_PARTITION = re.compile(r"[A-Za-z0-9_.-]+(,[A-Za-z0-9_.-]+)*")  # one partition or a comma list of them
_OPTION = re.compile(r"--([a-z][a-z0-9-]*)(?:=(.*))?", re.DOTALL)  # one long option: --key or --key=value
_PLAIN = re.compile(r"[A-Za-z0-9_.,:@%+=/-]+")  # written as is in a #SBATCH line; anything else is quoted
OWN = ("array", "output")  # the options the layout depends on: one request per index, logs in LOGS


def _text(flag: str, value: str) -> str:
    """`value` if it may go into the script at all: not empty, no control character."""
    if not value:
        raise UserError(f"{flag}: an empty value")
    if _CONTROL.search(value):
        raise UserError(f"{flag} {value!r}: no control characters (newline, NUL, tab...) in a value that goes"
                        f" into the sbatch script")
    try:
        value.encode()
    except UnicodeEncodeError:  # bytes that were not UTF-8 on the command line: the script is UTF-8 text
        raise UserError(f"{flag} {value!r}: not valid UTF-8") from None
    return value


def _sbatch_value(flag: str, value: str) -> str:
    """A value for a #SBATCH line: also no "hetjob"/"packjob", which would split the job in two."""
    _text(flag, value)
    if _HETJOB.search(value):
        raise UserError(f"{flag} {value!r}: sbatch reads a #SBATCH line holding 'hetjob' or 'packjob' as a"
                        f" heterogeneous-job separator; choose another name")
    return value


def _sbatch_word(value: str) -> str:
    """`value` as one token of sbatch's #SBATCH tokenizer: as is when plain, else in double quotes with
    backslash and " escaped by a backslash (the tokenizer's escape, inside quotes too)."""
    if _PLAIN.fullmatch(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _output(shared: Path) -> str:
    """The --output pattern for Slurm's log per task. In a file name pattern % starts a replacement (%A,
    %a), so a % of the path is written %%; a backslash turns every replacement off and is dropped (seen with
    Slurm 22.05: no log at all), so it is refused."""
    if "\\" in str(shared):
        raise UserError(f"--out {str(shared)!r}: no backslash in the folder (in Slurm's --output pattern it"
                        f" turns off %A/%a and is dropped: the logs would go to another folder)")
    return _sbatch_word(f"{str(shared / LOGS).replace('%', '%%')}/%A_%a.out")


def _extra(option: str) -> str:
    """One --sbatch option: a single long option token, --key or --key=value, as a #SBATCH word."""
    _sbatch_value("--sbatch", option)
    m = _OPTION.fullmatch(option)
    if not m:
        raise UserError(f"--sbatch {option!r}: one long sbatch option, --key or --key=value"
                        f" (e.g. --sbatch=--account=abc; repeat --sbatch for more)")
    key, value = m.group(1), m.group(2)
    if any(own.startswith(key) for own in OWN):  # getopt takes an unambiguous prefix (--arr) as the option
        raise UserError(f"--sbatch {option!r}: dlbench writes --{'/--'.join(OWN)} itself (one task per request,"
                        f" logs in {LOGS}/); use --max-array-size, or sbatch --array=... on the kept script")
    return f"--{key}" if value is None else f"--{key}={_sbatch_word(value)}"


def check(shared: Path | str, n_tasks: int, job: JobSettings, data_dir: str | None = None) -> None:
    """UserError (one line) for any value that cannot go into the sbatch script as what it says; called
    before anything is written (and by script(), so nothing unchecked is ever rendered)."""
    _text("--out", str(shared))
    if job.max_array_size < 1:
        raise UserError(f"--max-array-size must be >= 1, got {job.max_array_size}")
    if n_tasks < 1:
        raise UserError("no runs to submit")
    if n_tasks > job.max_array_size:
        raise UserError(f"{n_tasks} tasks: more than --max-array-size {job.max_array_size} allows in one job array"
                        f" (Slurm's default MaxArraySize is {MAX_ARRAY_SIZE}: indices 0-{MAX_ARRAY_SIZE - 1}); ask for"
                        f" fewer runs, or give your cluster's (scontrol show config | grep MaxArraySize)")
    shared = Path(shared).expanduser().resolve()
    _sbatch_value("--out", str(shared))
    _output(shared)
    if job.partition is not None and not _PARTITION.fullmatch(_sbatch_value("--partition", job.partition)):
        raise UserError(f"--partition {job.partition!r}: a partition name (letters, digits, _ . -) or a comma"
                        f" list of them")
    if job.time is not None and not _TIME.fullmatch(_sbatch_value("--time", job.time)):
        raise UserError(f"--time {job.time!r}: one of Slurm's formats: MINUTES, MINUTES:SECONDS,"
                        f" HOURS:MINUTES:SECONDS, DAYS-HOURS, DAYS-HOURS:MINUTES, DAYS-HOURS:MINUTES:SECONDS,"
                        f" UNLIMITED")
    for flag, value, least in (("--gpus-per-task", job.gpus_per_task, 0), ("--cpus-per-task", job.cpus_per_task, 1),
                               ("--nnodes", job.nodes, 1)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < least):
            raise UserError(f"{flag} must be a whole number >= {least}, got {value!r}")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", job.job_name):
        raise UserError(f"job name {job.job_name!r}: letters, digits, _ . - only")
    for option in job.extra:
        _extra(option)
    # The exec line: shlex-quoted words, but a word starting with - would be read as an option of exec
    # or of apptainer, whatever the quoting.
    if job.container is None:
        if _text("--python", job.python).startswith("-"):
            raise UserError(f"--python {job.python!r}: a path to an interpreter, not an option")
    else:
        if _text("--container", job.container).startswith("-"):
            raise UserError(f"--container {job.container!r}: an image (a .sif path or docker://...), not an option")
        # apptainer's --bind is SRC[:DEST[:OPTS]],...: a , or : inside a path would change the binds
        for flag, path in (("--out", str(shared)), ("--data-dir", data_dir)):
            if path is not None and (re.search(r"[,:]", _text(flag, path))):
                raise UserError(f"{flag} {path!r}: no ',' or ':' in a folder bound into the container"
                                f" (apptainer --bind reads them as separators)")
    if data_dir is not None:
        _text("--data-dir", data_dir)


def request_path(shared: Path, index: int) -> Path:
    return Path(shared) / REQUESTS / f"task-{index:03d}.request"


def script(shared: Path, n_tasks: int, job: JobSettings, data_dir: str | None = None) -> str:
    """The sbatch script: plain, commented, and the same for every task (the array index picks the request).
    Every value is checked first (check()); UserError for one that cannot be written safely."""
    check(shared, n_tasks, job, data_dir)
    shared = Path(shared).expanduser().resolve()
    lines = ["#!/bin/bash",
             f"# dlbench: {n_tasks} runs as one job array, each task one run request in {shared / REQUESTS}.",
             "# Written by `python -m runner slurm submit`; rerun some tasks with sbatch --array=3,5 THIS_FILE,",
             f"# or only the missing ones with: python -m runner slurm resubmit {shlex.quote(str(shared))}",
             f"#SBATCH --job-name={job.job_name}",
             f"#SBATCH --array=0-{n_tasks - 1}",
             f"#SBATCH --output={_output(shared)}",
             "# SIGTERM 60 s before the time limit: the run records 'interrupted' instead of vanishing",
             "#SBATCH --signal=B:TERM@60"]
    if job.nodes > 1:
        lines.append("# torchrun across nodes: one torchrun per node (srun), which starts that node's ranks")
        lines.append(f"#SBATCH --nodes={job.nodes}")
        lines.append("#SBATCH --ntasks-per-node=1")
    else:
        lines.append("#SBATCH --ntasks=1")
    for flag, value in (("partition", job.partition), ("gpus-per-task", job.gpus_per_task),
                        ("cpus-per-task", job.cpus_per_task), ("time", job.time)):
        if value is not None:
            lines.append(f"#SBATCH --{flag}={value}")
    lines += [f"#SBATCH {_extra(option)}" for option in job.extra]
    request = f"{shlex.quote(str(shared / REQUESTS))}/task-$(printf %03d \"$SLURM_ARRAY_TASK_ID\").request"
    run = f"python -m runner slurm task {request}"
    lines += ["set -euo pipefail"]
    if job.container:
        nv = " --nv" if job.gpus_per_task else ""
        binds = ",".join(dict.fromkeys(str(p) for p in (shared, data_dir) if p))
        lines += ["# dlbench and its frameworks come from the image; the shared and data folders keep their paths",
                  f"exec apptainer exec{nv} --bind {shlex.quote(binds)} {shlex.quote(job.container)} {run}"]
    else:
        root = Path(__file__).resolve().parents[2]
        lines += [f"cd {shlex.quote(str(root))}   # this dlbench checkout (or any folder, where it is installed)",
                  f"exec {shlex.quote(job.python)} -m runner slurm task {request}"]
    return "\n".join(lines) + "\n"


NO_SBATCH = "sbatch not found: run this on a Slurm login node (or use --dry-run)"


def require_sbatch() -> None:
    """UserError unless sbatch is on PATH: checked before anything is written, so a login node without
    Slurm leaves no half-made submission behind (which would block the next one in the same --out)."""
    if shutil.which("sbatch") is None:
        raise UserError(NO_SBATCH)


def _sbatch(args: list[str]) -> str:
    try:
        out = subprocess.run(["sbatch", "--parsable", *args], capture_output=True, text=True, timeout=120)
    except FileNotFoundError:  # gone since require_sbatch looked
        raise UserError(NO_SBATCH) from None
    if out.returncode:
        raise UserError(f"sbatch failed: {' '.join((out.stderr.strip() or out.stdout.strip()).split())}")
    return out.stdout.strip().split(";")[0]


def _append_job(shared: Path, job_id: str, tasks: list[int]) -> None:
    line = json.dumps({"job_id": job_id, "tasks": tasks,
                       "submitted_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")})
    with open(Path(shared) / JOBS, "a") as f:
        f.write(line + "\n")


def submit(shared: Path, requests: list[RunRequest], job: JobSettings, dry_run: bool = False) -> str | None:
    """Write the requests and the script into `shared` and submit the array; None under dry_run (which
    writes nothing and prints the script)."""
    text = script(shared, len(requests), job, requests[0].data_dir if requests else None)  # checks every value
    shared = Path(shared).expanduser().resolve()
    if dry_run:
        print(text, end="")
        return None
    if (shared / REQUESTS).exists() and any((shared / REQUESTS).iterdir()):
        raise UserError(f"{shared} already holds a submission ({REQUESTS}/): `python -m runner slurm resubmit"
                        f" {shared}` reruns its missing tasks; choose another --out for a new one")
    require_sbatch()
    made: list[Path] = []  # what this call created, removed again if the submission fails
    try:
        for sub in (REQUESTS, LOGS):
            for folder in reversed([shared / sub, *(shared / sub).parents]):
                if not folder.exists():
                    folder.mkdir()
                    made.append(folder)
        for i, req in enumerate(requests):
            atomic.write_bytes(request_path(shared, i), req.to_json().encode(), replace=False)
            made.append(request_path(shared, i))
        atomic.write_bytes(shared / SCRIPT, text.encode(), replace=False)
        made.append(shared / SCRIPT)
        job_id = _sbatch([str(shared / SCRIPT)])
    except (UserError, OSError) as e:
        for path in reversed(made):  # files first, then the folders made for them (empty by then)
            (path.rmdir if path.is_dir() else path.unlink)()
        if isinstance(e, OSError):
            raise UserError(f"--out {shared}: {e.strerror or e}") from None
        raise
    _append_job(shared, job_id, list(range(len(requests))))
    return job_id


def _jobs(shared: Path) -> list[dict]:
    path = Path(shared) / JOBS
    if not path.exists():
        raise UserError(f"{shared}: no Slurm submission here ({JOBS} is missing)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _squeue(job_ids: list[str]) -> dict[str, str]:
    """'JOBID_TASK' -> state for the array tasks Slurm still knows (finished ones drop out after a while)."""
    states: dict[str, str] = {}
    for job_id in job_ids:
        try:
            out = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-j", job_id, "-o", "%i|%T"],
                                 capture_output=True, text=True, timeout=60)
        except FileNotFoundError:
            raise UserError("squeue not found: run this on a Slurm login node") from None
        if out.returncode:  # a job Slurm has forgotten (purged): its tasks are known by their records only
            continue
        for line in out.stdout.splitlines():
            task, _, state = line.strip().partition("|")
            states[task] = state.split()[0] if state else ""
    return states


def status(shared: Path) -> list[dict]:
    """One row per task: index, framework, model, repeat, job, state (the record's status; else Slurm's
    state; else 'missing': the task ended and left no record), record (its path or None)."""
    from runner.records import build

    shared = Path(shared).resolve()
    jobs = _jobs(shared)
    latest = {t: j["job_id"] for j in jobs for t in j["tasks"]}  # a resubmission supersedes
    queue = _squeue(list(dict.fromkeys(latest.values())))
    rows = []
    for index in sorted(latest):
        req = RunRequest.read(request_path(shared, index))
        record = build.find(Path(req.out_dir), req.run_id)
        job_id = latest[index]
        if record is not None:
            from runner import records

            state = records.read(record)["status"]
        else:
            slurm = queue.get(f"{job_id}_{index}") or (queue.get(job_id) if len(latest) == 1 else None)
            state = slurm if slurm in ACTIVE else f"missing ({slurm})" if slurm else "missing"
        rows.append({"task": index, "framework": req.framework, "model": req.spec.model,
                     "repeat": req.repeat.index + 1, "job": f"{job_id}_{index}", "state": state,
                     "record": str(record) if record else None})
    return rows


def render(rows: list[dict]) -> str:
    from tabulate import tabulate

    return tabulate([{**r, "record": Path(r["record"]).name if r["record"] else "-"} for r in rows],
                    headers="keys", tablefmt="simple", disable_numparse=True)


def wait(shared: Path, timeout_s: float | None = None, poll_s: float = 2.0) -> list[dict]:
    """Poll until no task is pending or running (squeue; `sbatch --wait` polls far more slowly)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        rows = status(shared)
        if not any(r["state"] in ACTIVE for r in rows):
            return rows
        if deadline is not None and time.monotonic() > deadline:
            raise UserError(f"slurm wait: {sum(r['state'] in ACTIVE for r in rows)} task(s) still pending or"
                            f" running after {timeout_s:g} s")
        time.sleep(poll_s)


def resubmit(shared: Path, dry_run: bool = False) -> tuple[str | None, list[int]]:
    """Submit again, as one array, every task without a result (missing, failed, interrupted), each
    with a fresh run id; earlier records stay. Returns the job id and the task indices."""
    import uuid

    shared = Path(shared).resolve()
    again = [r["task"] for r in status(shared) if r["state"] not in DONE and r["state"] not in ACTIVE]
    if not again:
        return None, []
    array = ",".join(map(str, again))
    if dry_run:
        print(f"sbatch --array={array} {shlex.quote(str(shared / SCRIPT))}")
        return None, again
    require_sbatch()  # before the requests get their new run ids
    for index in again:
        path = request_path(shared, index)
        req = replace(RunRequest.read(path), run_id=uuid.uuid4().hex)
        atomic.write_bytes(path, req.to_json().encode(), replace=True)
    job_id = _sbatch([f"--array={array}", str(shared / SCRIPT)])
    _append_job(shared, job_id, again)
    return job_id, again


def task(request_file: Path) -> int:
    """One array task on its compute node: the run with the request's own launcher, and its record
    whatever happens (runner.records.build.lost for a child that left none)."""
    from runner.launch import launchers
    from runner.records import build

    req = RunRequest.read(Path(request_file))
    launcher = launchers.get(req.launcher.name, **req.launcher.settings)
    os.makedirs(req.out_dir, exist_ok=True)
    end = launcher.start(Path(request_file), req)  # on the shared folder: torchrun ranks on every node read it
    if build.find(Path(req.out_dir), req.run_id) is None:
        build.lost(req, end.describe(), interrupted=end.interrupted is not None)
    return 0 if end.code == 0 else 1
