"""Everything measured around training, as one context: the resource sampler, the energy meter, and
the record's `resources` and `energy` blocks built from them.

    python -m runner run --sample-interval 0.5 --samples   # the worker trains inside Meters(...)

    with Meters(0.5) as meters:
        harness.train(...)
    rec["energy"], rec["resources"] = meters.energy, meters.resources(backend)
"""

from __future__ import annotations

import sys

from runner.errors import reason
from runner.measure import energy
from runner.measure.sampler import Sampler, resource_summary


class Meters:
    def __init__(self, interval_s: float):
        self.interval_s = interval_s
        self.samples: list[dict] = []
        self.energy: dict | None = None

    def __enter__(self) -> "Meters":
        self._meter = energy.Meter().start()
        self._sampler = Sampler(self.interval_s).start()
        return self

    def __exit__(self, *exc) -> bool:
        # Runs on interruption and divergence too: a partial run still reports what it used.
        self.samples = self._sampler.stop()
        self.energy = self._meter.stop(self.samples, self._sampler.gpus, self._sampler.interval_s)
        return False

    def resources(self, backend) -> dict:
        """The record's `resources`: sampler summaries, peak host RSS, the framework's device peak."""
        s = self._sampler
        summary = resource_summary(s.samples, s.gpus)
        errors = dict(s.errors)
        try:
            device_peak, source = backend.peak_memory()
        except Exception as e:
            device_peak, source = None, reason(e)
        if device_peak is None:
            errors["device_peak_memory"], source = source, None
        return {"interval_s": s.interval_s, "samples": len(s.samples), "window_s": s.elapsed_s,
                "samples_file": None, "host": {**summary["host"], "peak_rss_bytes": _peak(summary["host"])},
                "gpus": summary["gpus"], "device_peak_memory_bytes": device_peak,
                "device_peak_memory_source": source, "errors": errors}


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
