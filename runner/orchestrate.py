"""The parent side of `run`: one worker process per framework and repeat, then the table.

    python -m runner run --framework all --repeats 3

Probes the machine and makes sure the data is there and verified once, then starts the workers one
after another (never side by side: they would compete for the same cores). Ctrl-C or SIGTERM
reaches the running worker, which records what it finished; no further runs start.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from runner import probe, record
from runner.data import store
from runner.spec import Spec

GRACE_S = 120  # how long a signalled worker gets to write its record


@dataclass
class Outcome:
    framework: str
    status: str
    path: Path


def _data_source(data_dir) -> str:
    return "folder" if data_dir else "env" if os.environ.get("DLBENCH_DATA_DIR") else "cache"


def run_all(spec: Spec, frameworks: list[str], repeats: int, platform: dict, device: str, data_dir,
            out_dir: Path, command: str, options: dict | None = None,
            parity_steps: int = 0) -> tuple[list[Outcome], bool]:
    """Run every (framework, repeat); return the outcomes and whether the user interrupted.
    `options` maps framework -> backend options; `parity_steps` > 0 checks each completed run."""
    folder = store.ensure(spec.dataset, data_dir)
    hardware = probe.hardware()
    outcomes: list[Outcome] = []
    for name in frameworks:
        for repeat in range(repeats):
            req = {"run_id": uuid.uuid4().hex, "spec": spec.to_dict(), "framework": name, "device": device,
                   "platform": platform, "hardware": hardware, "data_dir": str(folder),
                   "data_source": _data_source(data_dir), "out_dir": str(out_dir), "command": command,
                   "repeat": repeat, "repeats": repeats, "options": (options or {}).get(name, {}),
                   "parity_steps": parity_steps}
            outcome, interrupted = _run_worker(req, spec)
            outcomes.append(outcome)
            if interrupted:
                return outcomes, True
            if outcome.status == "unavailable":
                break  # the next repeat would be unavailable too
    return outcomes, False


def _run_worker(req: dict, spec: Spec) -> tuple[Outcome, bool]:
    with tempfile.TemporaryDirectory(prefix="dlbench-") as tmp:
        req_path = Path(tmp) / "request.json"
        req_path.write_text(json.dumps(req))
        proc = subprocess.Popen([sys.executable, "-m", "runner.worker", str(req_path)])
        interrupted = False
        previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        try:
            code = proc.wait()
        except KeyboardInterrupt:
            interrupted = True
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            # A terminal's Ctrl-C has reached the worker already; a SIGTERM to us has not. The worker
            # ignores signals once it handles the first, so forwarding is always safe.
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
        finally:
            signal.signal(signal.SIGTERM, previous)
            if interrupted:
                signal.signal(signal.SIGINT, signal.default_int_handler)
    path = _find_record(Path(req["out_dir"]), req["run_id"])
    if path is None:  # the worker died before it could write (segfault, OOM kill, ...)
        path = _write_lost(req, spec, code, interrupted)
    status = record.read(path)["status"]
    return Outcome(req["framework"], status, path), interrupted or status == "interrupted"


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def _find_record(out_dir: Path, run_id: str) -> Path | None:
    found = sorted(out_dir.glob(f"*-{run_id[:12]}.json"))
    return found[0] if found else None


def _write_lost(req: dict, spec: Spec, code: int, interrupted: bool) -> Path:
    from runner import harness, worker

    rec = worker.skeleton(req, spec)
    how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
    rec["status"] = "interrupted" if interrupted else "failed"
    rec["error"] = f"worker process {how} without writing a record"
    return worker.finish(rec, spec, harness.TrainLog(), Path(req["out_dir"]), wall_s=None)
