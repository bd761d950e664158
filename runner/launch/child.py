"""The one entry point every launcher starts: python -m runner.launch.child REQUEST.json

    python -m runner run ...      # job "train": one timed run -> one record (runner.jobs.train)
    python -m runner verify ...   # job "parity": the parity gate alone -> a result file (runner.parity.gate)
    python -m runner ensemble ... | per-sample-grads ...   # a micro-benchmark (runner.micro) -> one record each

A process, a container, a torchrun rank or a Slurm task all start this same module on the same
request file. It reads and validates the request, turns SIGINT/SIGTERM into `Interrupted` so the
job can record what it finished, keeps framework output in the run's log, and runs the job.
"""

from __future__ import annotations

import importlib
import signal
import sys
import time
from pathlib import Path

from runner.errors import Interrupted, UserError

# job -> "module:function(request, started) -> exit code"; imported only when that job runs
JOBS = {"train": "runner.jobs.train:main", "parity": "runner.parity.gate:run_job",
        "ensemble": "runner.micro.ensemble:run_job", "per_sample_grads": "runner.micro.per_sample_grads:run_job"}
EXIT_USAGE, EXIT_INTERRUPTED = 2, 130


def _on_signal(signum, frame):
    # Further signals must not interrupt the record write that follows.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Interrupted(signal.Signals(signum).name)


def _process_start() -> float:
    try:
        import psutil

        return psutil.Process().create_time()  # includes interpreter start and imports
    except Exception:
        return time.time()


def main(argv: list[str] | None = None) -> int:
    started = _process_start()
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m runner.launch.child REQUEST.json", file=sys.stderr)
        return EXIT_USAGE
    from runner import console
    from runner.workload import ranks
    from runner.request import RunRequest

    try:
        req = RunRequest.read(Path(argv[0]))
    except UserError as e:
        print(f"dlbench child: {e}", file=sys.stderr)
        return EXIT_USAGE
    module, func = JOBS[req.job].split(":")
    log = Path(req.out_dir) / req.log_name
    rank = ranks.rank()
    if rank:  # data-parallel: rank 0 speaks for the run; the others keep a log of their own beside its
        log = log.with_suffix(f".rank{rank}.log")
        import os

        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
    try:
        with console.framework_output_to(log):
            return getattr(importlib.import_module(module), func)(req, started)
    except Interrupted as e:  # before the job could take over (imports), nothing to record yet
        print(f"dlbench child: interrupted by {e} before the {req.job} job started", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
