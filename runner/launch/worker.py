"""One run in a process of its own: python -m runner.launch.worker REQUEST.json

`python -m runner run` writes REQUEST.json (spec, framework, device, platform, hardware, data folder,
output folder) and starts one worker per framework and repeat, so frameworks never share thread pools
or device memory and a crash in one never takes down the rest.

Whatever happens, the worker leaves one record: ok, below_target, diverged, failed, unavailable or
interrupted (Ctrl-C / SIGTERM, with the epochs it finished), and exits with a status-specific code.
"""

from __future__ import annotations

import json
import signal
import sys
import time
import traceback
import uuid
from datetime import datetime, timezone
from pathlib import Path

EXIT_CODES = {"ok": 0, "below_target": 0, "failed": 1, "unavailable": 3, "diverged": 4, "interrupted": 130}


class Interrupted(BaseException):
    """Raised from a signal handler; BaseException so no `except Exception` swallows it."""


def _on_signal(signum, frame):
    # Further signals must not interrupt the record write that follows.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Interrupted(signal.Signals(signum).name)


def skeleton(req: dict, spec) -> dict:
    """Every key of the record, filled with what is known before anything runs."""
    from runner.machine import probe
    from runner import records

    return {
        "schema_version": records.SCHEMA_VERSION,
        "run_id": req.get("run_id") or uuid.uuid4().hex,
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "status": "failed",
        "error": None,
        "command": req["command"],
        "launcher": {"name": "process", "settings": {}},
        "log_file": None,
        "repeat": {"index": req["repeat"], "of": req["repeats"], "policy": req.get("repeat_policy", "fixed"),
                   "max": req.get("max_repeats", req["repeats"]), "cv_threshold": req.get("cv_threshold")},
        "spec": spec.to_dict(),
        "spec_hash": spec.hash,
        "framework": {"name": req["framework"], "version": None, "build": None},
        "device": {"kind": None, "name": None, "requested": req["device"]},
        "platform": req["platform"],
        "hardware": req["hardware"],
        "software": probe.software(),
        "environment": {**req["environment"], "load_avg_start": probe.load_avg(), "load_avg_end": None,
                        "thread_env": probe.thread_env()},
        "data": {"dataset": spec.dataset, "source": req["data_source"], "origin": {}, "sha256": {},
                 "verified": False, "n_train": spec.n_train, "n_test": spec.n_test},
        "timing": {"wall_s": None, "data_load_s": None, "setup_s": None},
        "metrics": {},
        "parity": None,
        "resources": None,
        "energy": {"joules": None, "method": "none", "scope": "nothing measured: training did not start",
                   "window_s": None, "parts": [], "errors": {}},
    }


def run(req: dict, started: float) -> tuple[dict, Path]:
    from runner import backends
    from runner.machine import buildinfo
    from runner.measure import energy
    from runner.workload import harness, reference
    from runner.backends.base import FrameworkUnavailable
    from runner.data import store
    from runner.workload.progress import EpochLines
    from runner.measure.sampler import Sampler
    from runner.workload.spec import Spec

    spec = Spec.from_dict(req["spec"])
    rec = skeleton(req, spec)
    log = harness.TrainLog()
    timing = rec["timing"]
    samples = None
    try:
        t0 = time.perf_counter()
        data = store.load_for(spec, Path(req["data_dir"]))
        timing["data_load_s"] = time.perf_counter() - t0
        rec["data"].update(origin=data.origin, sha256=data.sha256, verified=True)

        t0 = time.perf_counter()
        cls = backends.load(req["framework"])
        backend = cls(spec, req["device"], req.get("options") or {})
        info = backend.info()
        rec["framework"], rec["device"] = info["framework"], {**info["device"], "requested": req["device"]}
        rec["device"]["name"] = rec["device"]["name"] or rec["hardware"]["cpu"].get("brand")
        rec["framework"]["build"] = buildinfo.collect(req["framework"])  # soft-fails field by field
        backend.setup(reference.initial_params(spec), data.train_x, data.train_y, data.test_x, data.test_y)
        backend.synchronize()
        timing["setup_s"] = time.perf_counter() - t0

        label = f"{req['framework']}/{rec['device']['kind']}"
        if rec["repeat"]["policy"] == "until-stable":  # how many runs is not known yet
            label += f" #{req['repeat'] + 1} (until stable, {req['repeats']}-{rec['repeat']['max']})"
        elif req["repeats"] > 1:
            label += f" #{req['repeat'] + 1}/{req['repeats']}"
        meter = energy.Meter().start()
        sampler = Sampler(req.get("sample_interval") or 1.0).start()
        try:
            harness.train(spec, backend, log, on_epoch=EpochLines(spec, label))
        finally:
            samples = sampler.stop()
            rec["energy"] = meter.stop(samples, sampler.gpus, sampler.interval_s)
            rec["resources"] = _resources(sampler, backend)
        target = spec.target_accuracy
        best = max(log.test_accuracy, default=0.0)
        rec["status"] = "below_target" if target is not None and best < target else "ok"
        if req.get("parity_steps"):
            rec["parity"] = _parity(lambda: cls(spec, req["device"], req.get("options") or {}), spec, data,
                                    req["parity_steps"])
    except FrameworkUnavailable as e:
        rec["status"], rec["error"] = "unavailable", f"{e} (install: {backends.install_hint(req['framework'])})"
    except (Interrupted, KeyboardInterrupt) as e:
        rec["status"] = "interrupted"
        rec["error"] = f"interrupted by {e or 'SIGINT'} after {log.epochs_completed} epoch(s)"
    except harness.Diverged as e:
        rec["status"], rec["error"] = "diverged", str(e)
    except Exception as e:
        traceback.print_exc()
        rec["status"], rec["error"] = "failed", f"{type(e).__name__}: {e}".strip()
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return rec, finish(rec, spec, log, Path(req["out_dir"]), wall_s=time.time() - started,
                       samples=samples if req.get("write_samples") else None)


def peak_rss_bytes() -> int | None:
    """This process' peak resident set size so far (getrusage: KiB on Linux, bytes on macOS)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _peak(host: dict) -> int | None:
    """getrusage's peak, but never below a sampled RSS: the kernel's high-water mark and /proc's
    current RSS are counted a little differently (measured: up to ~150 KB apart at 640 MB)."""
    known = [v for v in (peak_rss_bytes(), host["rss_bytes_max"]) if v is not None]
    return max(known) if known else None


def _resources(sampler, backend) -> dict:
    from runner.measure.sampler import summarize

    summary = summarize(sampler.samples, sampler.gpus)
    errors = dict(sampler.errors)
    try:
        device_peak, source = backend.peak_memory()
    except Exception as e:
        device_peak, source = None, f"{type(e).__name__}: {e}"
    if device_peak is None:
        errors["device_peak_memory"], source = source, None
    return {"interval_s": sampler.interval_s, "samples": len(sampler.samples), "window_s": sampler.elapsed_s,
            "samples_file": None, "host": {**summary["host"], "peak_rss_bytes": _peak(summary["host"])},
            "gpus": summary["gpus"], "device_peak_memory_bytes": device_peak,
            "device_peak_memory_source": source, "errors": errors}


def _parity(make_backend, spec, data, steps: int) -> dict:
    """The parity gate on a fresh model, after training (so it cannot warm caches the timed first
    epoch should pay for). Its failure marks the record; it never fails the run."""
    from runner.parity import gate

    print(f"parity: checking the first {min(steps, spec.steps_per_epoch)} steps against the float64 reference",
          file=sys.stderr)
    try:
        result = gate.check(make_backend, spec, data, steps)
    except Exception as e:
        traceback.print_exc()
        result = gate.error_result(steps, f"{type(e).__name__}: {e}")
    if result["status"] != "pass":
        print(f"parity: {gate.describe(result)}",
              file=sys.stderr)
    return result


def finish(rec: dict, spec, log, out_dir: Path, wall_s: float | None, samples: list | None = None) -> Path:
    """Fill the derived timing and metrics from `log` and write the record (and, if given, the
    resource samples beside it: RECORD.samples.jsonl, one JSON object per line)."""
    from runner import atomic, records
    from runner.workload import harness
    from runner.machine import probe

    timing, rec["metrics"] = harness.summarize(spec, log)
    rec["timing"].update(timing, wall_s=wall_s)
    rec["environment"]["load_avg_end"] = probe.load_avg()
    if samples and rec["resources"] is not None:
        name = records.filename(rec).removesuffix(".json") + ".samples.jsonl"
        lines = "".join(json.dumps(s, allow_nan=False) + "\n" for s in samples)
        rec["resources"]["samples_file"] = atomic.write_bytes(out_dir / name, lines.encode(), replace=False).name
    return records.write(rec, out_dir)


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
        print("usage: python -m runner.launch.worker REQUEST.json", file=sys.stderr)
        return 2
    req = json.loads(Path(argv[0]).read_text())
    rec, path = run(req, started)
    if rec["error"]:
        print(f"[{req['framework']}] {rec['status']}: {rec['error']}", file=sys.stderr)
    return EXIT_CODES[rec["status"]]


if __name__ == "__main__":
    raise SystemExit(main())
