"""Resources during a run: a background thread samples, at a fixed interval, the GPUs this process
may use (NVML: utilization, memory used, power, SM clock, and how many other processes hold a context
on it) and the host (psutil: system-wide CPU %, this process' CPU % and RSS, the share of the CPU other
processes used, the 1-minute load average). runner.measure.noise judges from these whether the run was
disturbed.

    python -m runner run --sample-interval 0.5     # summaries (mean/max) go into the record
    python -m runner run --samples                 # ... and every sample into RECORD.samples.jsonl

A thread rather than a side process: one sample costs about a millisecond of Python (most of it listing
the run's child processes), and
`benchmarks/sampler_overhead.py` measures what it does to the epoch time. Readings that fail are
left out of the sample and their reason kept once in `errors`; nothing here raises into a run.
"""

from __future__ import annotations

import os
import statistics
import threading
import time

from runner.errors import reason

HOST_KEYS = ("system_cpu_percent", "process_cpu_percent", "rss_bytes", "other_cpu_percent", "load_avg")
GPU_KEYS = ("util_percent", "memory_used_bytes", "power_w", "sm_clock_mhz")
GPU_COUNTS = ("other_processes",)  # per GPU, summarized as their maximum only (a count has no useful mean)



class Sampler:
    """start() ... stop() -> samples [{"t": s since start, host keys..., "gpus": [{"index", ...}]}]."""

    def __init__(self, interval_s: float = 1.0, clock=time.monotonic):
        if interval_s <= 0:
            raise ValueError(f"sample interval must be > 0, got {interval_s}")
        self.interval_s = interval_s
        self.clock = clock
        self.samples: list[dict] = []
        self.errors: dict[str, str] = {}
        self.gpus: list[dict] | None = None  # [{"index", "uuid", "name"}] of the sampled GPUs
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._nv = self._nv_session = None

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> "Sampler":
        import psutil

        self._proc = psutil.Process()
        # psutil's CPU % is "since the previous call": prime both counters so the first sample means something.
        self._proc.cpu_percent(None)
        self._run_procs: dict[int, float] = {}  # the run's other processes (pid -> CPU seconds), primed
        self._run_wall = self._reaped = None
        self._read("run_processes", self._run_cpu)
        psutil.cpu_percent(None)
        self._cores = psutil.cpu_count() or None
        self._open_gpus()
        self.t0 = self.clock()
        self._take()
        self._thread = threading.Thread(target=self._loop, name="dlbench-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[dict]:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self._take()  # the end of the window, however short it was
        if self._nv_session is not None:
            self._nv_session.__exit__(None, None, None)
            self._nv_session = self._nv = None
        return self.samples

    @property
    def elapsed_s(self) -> float:
        return self.clock() - self.t0

    def _loop(self):
        while not self._stop.wait(self.interval_s):
            self._take()

    # -- readings ---------------------------------------------------------------------------------
    def _open_gpus(self):
        from runner.measure import nvml

        try:
            session = nvml.session()
            nv = session.__enter__()
        except Exception as e:
            self.errors["gpus"] = f"NVML unavailable ({reason(e)})"
            return
        self._nv_session, self._nv = session, nv
        try:
            chosen = nvml.visible(nv)
        except Exception as e:
            self.errors["gpus"] = f"NVML could not list GPUs ({reason(e)})"
            chosen = []
        self._handles = chosen
        self.gpus = []
        for index, h in chosen:
            entry = {"index": index, "uuid": None, "name": None}
            for key, fn in (("uuid", nv.nvmlDeviceGetUUID), ("name", nv.nvmlDeviceGetName)):
                try:
                    entry[key] = nvml.text(fn(h))
                except Exception as e:
                    self.errors.setdefault(f"gpus[{index}].{key}", reason(e))
            self.gpus.append(entry)

    def _read(self, key: str, fn):
        if key in self.errors:  # failed once: it will not start working mid-run
            return None
        try:
            return fn()
        except Exception as e:
            self.errors[key] = reason(e)
            return None

    def _run_members(self) -> list:
        """The processes of this run besides this one: its descendants (DataLoader workers, a
        tf.data pool) and, under torchrun (which sets TORCHELASTIC_RUN_ID), the agent and the other
        ranks it started. Their CPU is the run's own, not other processes' disturbing it."""
        root = self._proc
        if os.environ.get("TORCHELASTIC_RUN_ID"):
            root = self._proc.parent() or self._proc
        members = [root] + root.children(recursive=True)
        return [p for p in members if p.pid != self._proc.pid]

    def _run_cpu(self) -> float:
        """CPU % (100 = one core) of the run's other processes since the last call, from cumulative CPU
        seconds: each member's user + system time plus that of the children it has reaped, and this
        process' reaped children. So a process that starts and ends between two readings (the C
        compiler torch.compile runs, a DataLoader worker of a short epoch) still counts as the
        run's: its whole time reaches its parent's children times when it is reaped. A member first
        seen after the first reading counts in full: it is new (a descendant cannot be older than
        the run; psutil's create_time cannot tell, it reads up to 1 s early since the boot time it
        adds is whole seconds, and the compile jobs started just after a reading went uncounted: a
        cold step=compile run read 12 % other processes). One that ended is taken off at the time
        last read, which its parent's children times now hold again. Listing the children scans
        /proc: about a millisecond per sample with ~100 processes on the machine."""
        import psutil

        wall, since = time.time(), self._run_wall
        used, now = 0.0, {}
        for p in self._run_members():
            try:
                total = _cpu_seconds(p.cpu_times())
                last = self._run_procs.get(p.pid)
                if last is not None:
                    used += total - last
                elif since is not None:  # new since the last reading (those at the first are the baseline)
                    used += total
            except psutil.Error:  # ended between the listing and the reading
                continue
            now[p.pid] = total
        used -= sum(last for pid, last in self._run_procs.items() if pid not in now)
        times = self._proc.cpu_times()
        reaped = times.children_user + times.children_system  # what this process' ended children used
        if self._reaped is not None:
            used += reaped - self._reaped
        self._reaped, self._run_procs, self._run_wall = reaped, now, wall
        return max(0.0, 100 * used / (wall - since)) if since is not None and wall > since else 0.0

    def _own_pids(self) -> set[int]:
        return {self._proc.pid, *self._run_procs}

    def _gpu_others(self, nv, h) -> int:
        """Processes other than this run's with a compute or graphics context on GPU `h`. NVML names
        them by PID; a PID that does not exist here (a container's own PID namespace, where NVML
        gives host PIDs) cannot be told apart from this run: it is left out, and said once."""
        import psutil

        pids = set()
        for fn in (nv.nvmlDeviceGetComputeRunningProcesses, nv.nvmlDeviceGetGraphicsRunningProcesses):
            pids |= {p.pid for p in fn(h)}
        pids -= self._own_pids()
        unseen = {p for p in pids if not psutil.pid_exists(p)}
        if unseen:
            self.errors.setdefault("gpus.other_processes_unseen",
                                   f"NVML listed {len(unseen)} process(es) by a PID this PID namespace does not"
                                   f" have (a container's): not counted as other processes")
        return len(pids - unseen)

    def _take(self):
        import psutil

        sample = {"t": round(self.clock() - self.t0, 4),
                  "system_cpu_percent": self._read("system_cpu_percent", lambda: psutil.cpu_percent(None)),
                  "process_cpu_percent": self._read("process_cpu_percent", lambda: self._proc.cpu_percent(None)),
                  "rss_bytes": self._read("rss_bytes", lambda: self._proc.memory_info().rss),
                  "load_avg": self._read("load_avg", lambda: os.getloadavg()[0])}
        run = self._read("run_processes", self._run_cpu)  # failed: the run's children count as others
        own = None if sample["process_cpu_percent"] is None else sample["process_cpu_percent"] + (run or 0.0)
        sample["other_cpu_percent"] = other_cpu_percent(sample["system_cpu_percent"], own, self._cores)
        if self._nv is not None:
            nv, gpus = self._nv, []
            for index, h in self._handles:
                p = f"gpus[{index}]."
                gpus.append({
                    "index": index,
                    "util_percent": self._read(p + "util_percent", lambda: nv.nvmlDeviceGetUtilizationRates(h).gpu),
                    "memory_used_bytes": self._read(p + "memory_used_bytes", lambda: nv.nvmlDeviceGetMemoryInfo(h).used),
                    "power_w": self._read(p + "power_w", lambda: nv.nvmlDeviceGetPowerUsage(h) / 1000),
                    "sm_clock_mhz": self._read(p + "sm_clock_mhz",
                                               lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM)),
                    "other_processes": self._read(p + "other_processes", lambda: self._gpu_others(nv, h)),
                })
            sample["gpus"] = gpus
        self.samples.append(sample)


def _cpu_seconds(times) -> float:
    """A process' CPU seconds, its own and those of the children it has reaped."""
    return times.user + times.system + times.children_user + times.children_system


def other_cpu_percent(system: float | None, process: float | None, cores: int | None) -> float | None:
    """The share of all cores (100 = every core busy) that other processes used: the system's share
    minus this run's (`process`: this process and the run's others, psutil's CPU % per core, 100 = one
    core). Clamped at 0: the
    two readings are taken microseconds apart, so a quiet machine can read a hair below."""
    if system is None or process is None or not cores:
        return None
    return max(0.0, system - process / cores)


def _mean_max(values) -> tuple:
    values = [v for v in values if v is not None]
    return (statistics.fmean(values), max(values)) if values else (None, None)


def resource_summary(samples: list[dict], gpus: list[dict] | None) -> dict:
    """{"host": {key_mean, key_max}, "gpus": [{"index", "uuid", "name", key_mean, key_max}] | None}."""
    host = {}
    for key in HOST_KEYS:
        host[f"{key}_mean"], host[f"{key}_max"] = _mean_max(s.get(key) for s in samples)
    out_gpus = None
    if gpus is not None:
        out_gpus = []
        for g in gpus:
            row = dict(g)
            readings = [r for s in samples for r in s.get("gpus", []) if r["index"] == g["index"]]
            for key in GPU_KEYS:
                row[f"{key}_mean"], row[f"{key}_max"] = _mean_max(r[key] for r in readings)
            for key in GPU_COUNTS:
                row[f"{key}_max"] = _mean_max(r.get(key) for r in readings)[1]
            out_gpus.append(row)
    return {"host": host, "gpus": out_gpus}
