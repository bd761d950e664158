"""The parent side of `run` and `verify`: one child process per framework and repeat, one after another.

    python -m runner run --framework all --repeats 3
    python -m runner run --framework torch --until-stable --cv-threshold 0.03 --max-repeats 10
    python -m runner verify --framework torch,jax        # job "parity" per framework: verify_all

Probes the machine and makes sure the data is there and verified once, then starts the workers one
after another (never side by side: they would compete for the same cores). Ctrl-C or SIGTERM
reaches the running worker, which records what it finished; no further runs start.

Under --until-stable a framework gets runs until the coefficient of variation of its runs' steady
epoch times falls below the threshold, or the cap is reached (the way the Phoronix Test Suite
decides how often to run a test). A run the host disturbed (runner.measure.noise: host_noise verdict
noisy) stays recorded but does not count toward stability: its time measures the other work too.
--max-repeats caps all runs, noisy ones included.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from runner import records
from runner.errors import UserError
from runner.data import store
from runner.launch import launchers
from runner.machine import probe
from runner.measure import noise
from runner.records import build
from runner.request import Repeat, RunRequest, Sampling
from runner.workload.spec import Spec


@dataclass
class Outcome:
    framework: str
    status: str
    path: Path
    steady_epoch_s: float | None = None
    noisy: bool = False  # the host was busy with other work during its timed epochs (runner.measure.noise)


@dataclass(frozen=True)
class Repeats:
    """How many runs per framework: `minimum`, and under until_stable more, up to `maximum`, until
    the runs' steady epoch times have a coefficient of variation below `cv_threshold`."""

    minimum: int = 1
    until_stable: bool = False
    cv_threshold: float = 0.03
    maximum: int = 10

    def repeat(self, index: int) -> Repeat:
        """The request's view of run `index` under this policy."""
        if not self.until_stable:
            return Repeat(index=index, of=self.minimum, policy="fixed", max=self.minimum)
        return Repeat(index=index, of=self.minimum, policy="until-stable", max=self.maximum,
                      cv_threshold=self.cv_threshold)


def data_source(data_dir) -> str:
    """Where the data came from, as the record says it: --data-dir, $DLBENCH_DATA_DIR or the cache."""
    return "folder" if data_dir else "env" if os.environ.get("DLBENCH_DATA_DIR") else "cache"


def run_all(spec: Spec, frameworks: list[str], repeats: Repeats | int, platform: dict, device: str, data_dir,
            out_dir: Path, command: str, options: dict | None = None, parity_steps: int = 0,
            sampling: Sampling = Sampling(), launcher: launchers.Launcher | None = None,
            experiment: dict | None = None) -> tuple[list[Outcome], bool]:
    """Run every framework `repeats` times, each run a child started by `launcher` (default: a
    subprocess); return the outcomes and whether the user interrupted. `options` maps framework ->
    backend options; `parity_steps` > 0 checks each completed run; `experiment` (a sweep point or a
    tuning trial, runner.experiments) goes into every request and so into every record."""
    if isinstance(repeats, int):
        repeats = Repeats(minimum=repeats)
    launcher = launcher or launchers.get("process")
    launcher.check_here(spec, device)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    folder = store.ensure(spec.dataset, data_dir)
    hardware, environment = probe.hardware(), probe.environment()
    outcomes: list[Outcome] = []
    for name in frameworks:
        mine: list[Outcome] = []
        while True:
            req = RunRequest(job="train", spec=spec, framework=name, device=device, data_dir=str(folder),
                             out_dir=str(out_dir), options=(options or {}).get(name, {}), platform=platform,
                             data_source=data_source(data_dir), command=command, repeat=repeats.repeat(len(mine)),
                             sampling=sampling, parity_steps=parity_steps, launcher=launcher.describe(),
                             hardware=hardware, environment=environment, experiment=experiment)
            outcome, interrupted = _run(req, launcher)
            outcomes.append(outcome)
            mine.append(outcome)
            if interrupted:
                return outcomes, True
            if outcome.status == "unavailable" or not _another(name, mine, repeats):
                break
    return outcomes, False


# Statuses that make `run` and `sweep` exit 1 (an interrupt the user gave exits 130 before this counts).
FAILING = ("failed", "diverged", "unavailable", "interrupted")


# What one run writes into --out at most: a record (~20 KB for 50 epochs), its log and the resource
# samples (~100 KB at 1 s), with room to spare. Checked before each run, not found out after training.
SPACE_PER_RUN = 4 * 2**20


def check_space(folder: Path, need: int = SPACE_PER_RUN) -> None:
    free = shutil.disk_usage(folder).free
    if free < need:
        raise UserError(f"{folder}: {free / 2**20:.1f} MiB free, a run needs {need / 2**20:.0f} MiB for its record,"
                        f" log and samples; free some space or choose another --out")


def busy_warning(own_pid: int | None = None) -> str | None:
    """Other dlbench runs on this machine, which would share its cores and slow both (measured:
    up to 100x per step with 2 OpenMP threads on 2 cores); None if there are none."""
    import psutil

    others = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = proc.info["cmdline"] or []
        if proc.info["pid"] != own_pid and "runner.launch.child" in cmd:
            others.append(proc.info["pid"])
    if not others:
        return None
    return (f"another dlbench run is training on this machine (pid {', '.join(map(str, others))}): both share"
            f" the cores, so both time slower and noisier than alone")


def launch_one(req: RunRequest, launcher: launchers.Launcher):
    """One child of any job that writes a record (a run, a study): room checked, other runs warned
    about, the child started; (its record, the record's path, how the child ended). A child that died
    before it could write (SIGKILL, OOM kill, segfault, ...) gets a record written here."""
    check_space(Path(req.out_dir))
    warning = busy_warning()
    if warning:
        print(f"dlbench: warning: {warning}", file=sys.stderr)
    end = launchers.launch(req, launcher)
    path = build.find(Path(req.out_dir), req.run_id)
    if path is None:
        path = build.lost(req, end.describe(), interrupted=end.interrupted is not None)
    return records.read(path), path, end


def _run(req: RunRequest, launcher: launchers.Launcher) -> tuple[Outcome, bool]:
    """One run: its outcome, and whether the user interrupted it."""
    rec, path, end = launch_one(req, launcher)
    return (Outcome(req.framework, rec["status"], path, rec["timing"]["steady_epoch_s"], noise.is_noisy(rec)),
            _user_interrupt(end, rec))


def _user_interrupt(end: launchers.Exit, rec: dict) -> bool:
    """Whether the user stopped this run (exit 130, the rest not run): a signal reached this process,
    or the child recorded a SIGINT, what a terminal's Ctrl-C sends the whole process group (under
    load the parent can wake from waitpid only after the child has exited, measured once in CI: exit 1
    where 130 was due). A child interrupted by anything else (torchrun's SIGTERM to rank 0 when another
    rank died, a scheduler's) is a run that failed: its record says "interrupted", the others go on."""
    if end.interrupted is not None:
        return True
    return rec["status"] == "interrupted" and (rec.get("error") or "").startswith("interrupted by SIGINT")


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
    quiet = [o for o in mine if not o.noisy]
    times = [o.steady_epoch_s for o in quiet if o.steady_epoch_s is not None]
    cv = stats.cv(times)
    shown = "n/a" if cv is None else f"{100 * cv:.1f} %"
    noisy = len(mine) - len(quiet)
    runs = (f"{len(quiet)} quiet run{'s' * (len(quiet) != 1)} ({noisy} noisy run{'s' * (noisy != 1)} not counted)"
            if noisy else f"{len(mine)} runs")
    if cv is not None and cv < repeats.cv_threshold:
        print(f"[{name}] until-stable: CV {shown} < {100 * repeats.cv_threshold:g} % after {runs}: stable",
              file=sys.stderr)
        return False
    if len(mine) >= repeats.maximum:
        print(f"[{name}] until-stable: CV {shown} after {runs}, the cap of {repeats.maximum} runs: NOT stable",
              file=sys.stderr)
        return False
    print(f"[{name}] until-stable: CV {shown} >= {100 * repeats.cv_threshold:g} % after {runs}:"
          f" one more (cap {repeats.maximum})", file=sys.stderr)
    return True


def verify_all(spec: Spec, frameworks: list[str], device: str, data_dir, steps: int, options: dict,
               launcher: launchers.Launcher | None = None) -> list[dict]:
    """The parity result of each framework, each from a fresh child process started by `launcher`
    (default: a subprocess), exactly as `run` starts its workers."""
    from runner.parity import gate, yardstick

    launcher = launcher or launchers.get("process")
    launcher.check_here(spec, device)
    folder = store.ensure(spec.dataset, data_dir)
    data = store.load_for(spec, folder)
    steps = min(steps, spec.steps_per_epoch)
    print(f"verify: float64 NumPy reference, {steps} steps", file=sys.stderr)
    yardstick.load_or_compute(spec, data.train_x, data.train_y, data.sha256.get("train-images-idx3-ubyte", ""),
                              steps)  # once here, cached on disk, so the framework processes only read it
    results = []
    with tempfile.TemporaryDirectory(prefix="dlbench-verify-") as tmp:
        for name in frameworks:
            print(f"verify: {name}", file=sys.stderr)
            req = RunRequest(job="parity", spec=spec, framework=name, device=device, data_dir=str(folder),
                             out_dir=tmp, options=options.get(name, {}), parity_steps=steps,
                             launcher=launcher.describe())
            end = launchers.launch(req, launcher)
            if req.result_path.exists():
                result = json.loads(req.result_path.read_text())
            else:  # the process died before it could report
                result = {"framework": name, "parity": gate.error_result(steps, f"process {end.describe()}")}
            if result["parity"]["status"] in ("fail", "error"):
                result["log"] = _keep_log(Path(tmp) / req.log_name)
            results.append(result)
            if end.interrupted:
                raise KeyboardInterrupt
    return results


def _keep_log(log: Path) -> str | None:
    """A failing framework's log outlives the temporary folder: it is the evidence."""
    from runner.data.store import cache_root

    if not log.exists():
        return None
    kept = cache_root() / "logs" / log.name
    kept.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(log, kept)
    return str(kept)
