"""The frame every child job runs in: the train job (runner.jobs.train) and the micro-benchmark
jobs (runner.micro.job) plug their body into it.

    python -m runner.launch.child REQUEST.json   # what a launcher starts; JOBS there names the body

What the frame owns, once for every job: loading and re-verifying the data, creating the backend and
describing it in the record, the ladder that turns what the body raised into the record's status
(interrupted, unavailable, failed, and the job's own kinds), ignoring SIGINT/SIGTERM once the body has
ended (the record still has to be written), the one-line error on stderr, and the exit codes.
"""

from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path
from typing import Callable

from runner.errors import Interrupted, reason

# Per record status; a launcher, Slurm and the parent read them. below_target and pruned (a tuning
# trial its pruner stopped) end a run normally.
EXIT_CODES = {"ok": 0, "below_target": 0, "pruned": 0, "failed": 1, "unavailable": 3, "diverged": 4,
              "interrupted": 130}


def load_data(req, rec: dict):
    """The spec's dataset, checked against its pins again here: no step runs on bad bytes, even if
    the files changed after the parent checked them."""
    from runner.data import store

    t0 = time.perf_counter()
    data = store.load_for(req.spec, Path(req.data_dir))
    rec["timing"]["data_load_s"] = time.perf_counter() - t0
    rec["data"].update(origin=data.origin, sha256=data.sha256, verified=True)
    return data


def create_backend(req, rec: dict, options: dict):
    """The framework's backend, created (not set up: no weights, no data on the device yet) and
    described in the record: its device choice, precision settings and build."""
    from runner import backends
    from runner.machine import buildinfo

    backend = backends.create(req.framework, req.spec, req.device, options)
    info = backend.info()
    rec["framework"], rec["device"] = info["framework"], {**info["device"], "requested": req.device}
    rec["parallel"] = info.get("parallel") or rec["parallel"]
    rec["device"]["name"] = rec["device"]["name"] or rec["hardware"]["cpu"].get("brand")
    rec["framework"]["build"] = buildinfo.collect(req.framework)  # soft-fails field by field
    return backend


def guarded(req, rec: dict, body: Callable[[], None], interrupted: Callable[[str], None],
            own: tuple = ()) -> None:
    """Run `body`; what it raises becomes the record's status and error. `interrupted(why)` handles
    SIGINT/SIGTERM (runner.errors.Interrupted); `own` holds the job's (exception type, status) pairs,
    whose message is the error as it is. A framework that cannot run here is "unavailable" with its
    install hint; anything else "failed", its traceback in the log file only."""
    import signal

    from runner import backends, console
    from runner.backends.base import FrameworkUnavailable

    own_types = tuple(kind for kind, _ in own)
    try:
        body()
    except (Interrupted, KeyboardInterrupt) as e:
        interrupted(str(e) or "SIGINT")
    except FrameworkUnavailable as e:
        rec["status"], rec["error"] = "unavailable", f"{e} (install: {backends.install_hint(req.framework)})"
    except own_types as e:
        rec["status"], rec["error"] = next(status for kind, status in own if isinstance(e, kind)), str(e)
    except Exception as e:
        console.log_only(traceback.format_exc())
        rec["status"], rec["error"] = "failed", reason(e)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


def finish(req, rec: dict, details: bool = True) -> int:
    """The record's error in one line on stderr (with its log file where `details`), and the exit code."""
    if rec["error"]:
        where = f" (details: {Path(req.out_dir) / rec['log_file']})" if details and rec["log_file"] else ""
        print(f"[{req.framework}] {rec['status']}: {rec['error']}{where}", file=sys.stderr)
    return EXIT_CODES[rec["status"]]
