"""The parent side of `run`: one worker process per framework and repeat, then the table.

    python -m runner run --framework all --repeats 3
    python -m runner run --framework torch --until-stable --cv-threshold 0.03 --max-repeats 10

Probes the machine and makes sure the data is there and verified once, then starts the workers one
after another (never side by side: they would compete for the same cores). Ctrl-C or SIGTERM
reaches the running worker, which records what it finished; no further runs start.

Under --until-stable a framework gets runs until the coefficient of variation of its runs' steady
epoch times falls below the threshold, or the cap is reached (the way the Phoronix Test Suite
decides how often to run a test).
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

from runner.machine import probe
from runner import records
from runner.data import store
from runner.workload.spec import Spec

GRACE_S = 120  # how long a signalled worker gets to write its record


@dataclass
class Outcome:
    framework: str
    status: str
    path: Path
    steady_epoch_s: float | None = None


@dataclass(frozen=True)
class Repeats:
    """How many runs per framework: `minimum`, and under until_stable more, up to `maximum`, until
    the runs' steady epoch times have a coefficient of variation below `cv_threshold`."""

    minimum: int = 1
    until_stable: bool = False
    cv_threshold: float = 0.03
    maximum: int = 10

    def request(self) -> dict:
        if not self.until_stable:
            return {"repeats": self.minimum, "repeat_policy": "fixed", "max_repeats": self.minimum,
                    "cv_threshold": None}
        return {"repeats": self.minimum, "repeat_policy": "until-stable", "max_repeats": self.maximum,
                "cv_threshold": self.cv_threshold}


def _data_source(data_dir) -> str:
    return "folder" if data_dir else "env" if os.environ.get("DLBENCH_DATA_DIR") else "cache"


def run_all(spec: Spec, frameworks: list[str], repeats: Repeats | int, platform: dict, device: str, data_dir,
            out_dir: Path, command: str, options: dict | None = None, parity_steps: int = 0,
            sample_interval: float = 1.0, write_samples: bool = False) -> tuple[list[Outcome], bool]:
    """Run every framework `repeats` times; return the outcomes and whether the user interrupted.
    `options` maps framework -> backend options; `parity_steps` > 0 checks each completed run;
    the resource sampler reads every `sample_interval` s (`write_samples`: keep every sample)."""
    if isinstance(repeats, int):
        repeats = Repeats(minimum=repeats)
    folder = store.ensure(spec.dataset, data_dir)
    hardware, environment = probe.hardware(), probe.environment()
    outcomes: list[Outcome] = []
    for name in frameworks:
        mine: list[Outcome] = []
        while True:
            req = {"run_id": uuid.uuid4().hex, "spec": spec.to_dict(), "framework": name, "device": device,
                   "platform": platform, "hardware": hardware, "environment": environment,
                   "data_dir": str(folder), "data_source": _data_source(data_dir), "out_dir": str(out_dir),
                   "command": command, "repeat": len(mine), **repeats.request(),
                   "options": (options or {}).get(name, {}), "parity_steps": parity_steps,
                   "sample_interval": sample_interval, "write_samples": write_samples}
            outcome, interrupted = _run_worker(req, spec)
            outcomes.append(outcome)
            mine.append(outcome)
            if interrupted:
                return outcomes, True
            if outcome.status == "unavailable" or not _another(name, mine, repeats):
                break
    return outcomes, False


def _another(name: str, mine: list[Outcome], repeats: Repeats) -> bool:
    """Whether `name` gets one more run after `mine`; says why under --until-stable."""
    from runner.measure import stats

    if len(mine) < repeats.minimum:
        return True
    if not repeats.until_stable:
        return False
    if mine[-1].status not in records.COMPLETED:
        print(f"[{name}] until-stable: run {len(mine)} ended {mine[-1].status}; no more runs", file=sys.stderr)
        return False
    times = [o.steady_epoch_s for o in mine if o.steady_epoch_s is not None]
    cv = stats.cv(times)
    shown = "n/a" if cv is None else f"{100 * cv:.1f} %"
    if cv is not None and cv < repeats.cv_threshold:
        print(f"[{name}] until-stable: CV {shown} < {100 * repeats.cv_threshold:g} % after {len(mine)} runs: stable",
              file=sys.stderr)
        return False
    if len(mine) >= repeats.maximum:
        print(f"[{name}] until-stable: CV {shown} after {len(mine)} runs, the cap: NOT stable", file=sys.stderr)
        return False
    print(f"[{name}] until-stable: CV {shown} >= {100 * repeats.cv_threshold:g} % after {len(mine)} runs:"
          f" one more (cap {repeats.maximum})", file=sys.stderr)
    return True


def _run_worker(req: dict, spec: Spec) -> tuple[Outcome, bool]:
    with tempfile.TemporaryDirectory(prefix="dlbench-") as tmp:
        req_path = Path(tmp) / "request.json"
        req_path.write_text(json.dumps(req))
        proc = subprocess.Popen([sys.executable, "-m", "runner.launch.worker", str(req_path)])
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
    rec = records.read(path)
    status = rec["status"]
    return (Outcome(req["framework"], status, path, rec["timing"]["steady_epoch_s"]),
            interrupted or status == "interrupted")


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def _find_record(out_dir: Path, run_id: str) -> Path | None:
    found = sorted(out_dir.glob(f"*-{run_id[:12]}.json"))
    return found[0] if found else None


def _write_lost(req: dict, spec: Spec, code: int, interrupted: bool) -> Path:
    from runner.workload import harness
    from runner.launch import worker

    rec = worker.skeleton(req, spec)
    how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
    rec["status"] = "interrupted" if interrupted else "failed"
    rec["error"] = f"worker process {how} without writing a record"
    return worker.finish(rec, spec, harness.TrainLog(), Path(req["out_dir"]), wall_s=None)
