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
import shlex
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


def request_path(shared: Path, index: int) -> Path:
    return Path(shared) / REQUESTS / f"task-{index:03d}.request"


def script(shared: Path, n_tasks: int, job: JobSettings, data_dir: str | None = None) -> str:
    """The sbatch script: plain, commented, and the same for every task (the array index picks the request)."""
    shared = Path(shared).resolve()
    lines = ["#!/bin/bash",
             f"# dlbench: {n_tasks} runs as one job array, each task one run request in {shared / REQUESTS}.",
             "# Written by `python -m runner slurm submit`; rerun some tasks with sbatch --array=3,5 THIS_FILE,",
             f"# or only the missing ones with: python -m runner slurm resubmit {shared}",
             f"#SBATCH --job-name={job.job_name}",
             f"#SBATCH --array=0-{n_tasks - 1}",
             f"#SBATCH --output={shared / LOGS}/%A_%a.out",
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
    lines += [f"#SBATCH {option}" for option in job.extra]
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


def _sbatch(args: list[str]) -> str:
    try:
        out = subprocess.run(["sbatch", "--parsable", *args], capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise UserError("sbatch not found: run this on a Slurm login node (or use --dry-run)") from None
    if out.returncode:
        raise UserError(f"sbatch failed: {out.stderr.strip() or out.stdout.strip()}")
    return out.stdout.strip().split(";")[0]


def _append_job(shared: Path, job_id: str, tasks: list[int]) -> None:
    line = json.dumps({"job_id": job_id, "tasks": tasks,
                       "submitted_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")})
    with open(Path(shared) / JOBS, "a") as f:
        f.write(line + "\n")


def submit(shared: Path, requests: list[RunRequest], job: JobSettings, dry_run: bool = False) -> str | None:
    """Write the requests and the script into `shared` and submit the array; None under dry_run (which
    writes nothing and prints the script)."""
    shared = Path(shared).resolve()
    text = script(shared, len(requests), job, requests[0].data_dir if requests else None)
    if dry_run:
        print(text, end="")
        return None
    if (shared / REQUESTS).exists() and any((shared / REQUESTS).iterdir()):
        raise UserError(f"{shared} already holds a submission ({REQUESTS}/): `python -m runner slurm resubmit"
                        f" {shared}` reruns its missing tasks; choose another --out for a new one")
    for sub in (REQUESTS, LOGS):
        (shared / sub).mkdir(parents=True, exist_ok=True)
    for i, req in enumerate(requests):
        atomic.write_bytes(request_path(shared, i), req.to_json().encode(), replace=False)
    atomic.write_bytes(shared / SCRIPT, text.encode(), replace=False)
    job_id = _sbatch([str(shared / SCRIPT)])
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
        print(f"sbatch --array={array} {shared / SCRIPT}")
        return None, again
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
