"""The micro-benchmarks' parent side: one child per framework, through the same launchers as `run`.

    python -m runner ensemble ...            # the plan: runner.micro.plan
    python -m runner per-sample-grads ...

Makes sure the dataset is there and verified, probes the machine once, then starts one child per
framework, one after another (side by side they would share the cores), each on a RunRequest of the
study's job with the study's settings in `study`. A child that dies without writing its record gets
one from the same request (runner.launch.orchestrate.launch_one), as in `run`. Ctrl-C or SIGTERM reaches the
running child, which records the operations it finished; no further framework starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runner.data import store
from runner.errors import UserError
from runner.launch import launchers, orchestrate
from runner.machine import probe
from runner.request import RunRequest


@dataclass
class Outcome:
    framework: str
    status: str
    path: Path
    checks_passed: bool | None   # None: no check ran (the run did not get that far)


def check_launcher(launcher: launchers.Launcher) -> None:
    """A study is one process per framework; torchrun's ranks train one model data-parallel."""
    if launcher.name == "torchrun":
        raise UserError("--launcher torchrun starts data-parallel training ranks; a study runs in one process"
                        " (use process or container)")
    launcher.preflight()


def run(job: str, spec, frameworks: list[str], settings: dict, device: str, platform: dict, data_dir,
        out_dir: Path, command: str, launcher: launchers.Launcher) -> tuple[list[Outcome], bool]:
    """Each framework's study, one child at a time; (outcomes, whether the user interrupted)."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    folder = store.ensure(spec.dataset, data_dir)
    hardware, environment = probe.hardware(), probe.environment()
    outcomes = []
    for name in frameworks:
        req = RunRequest(job=job, spec=spec, framework=name, device=device, data_dir=str(folder),
                         out_dir=str(out_dir), platform=platform, data_source=orchestrate.data_source(data_dir),
                         command=command, launcher=launcher.describe(), hardware=hardware,
                         environment=environment, study=dict(settings))
        rec, path, end = orchestrate.launch_one(req, launcher)
        found = (rec["study"] or {}).get("checks") or []
        outcomes.append(Outcome(name, rec["status"], path, all(c["passed"] for c in found) if found else None))
        if end.interrupted is not None or rec["status"] == "interrupted":
            return outcomes, True
    return outcomes, False


def exit_code(outcomes: list[Outcome], interrupted: bool) -> int:
    """130 interrupted; 1 if a run failed or could not run, or a check failed; else 0."""
    if interrupted:
        return 130
    bad = any(o.status in ("failed", "unavailable") or o.checks_passed is False for o in outcomes)
    return 1 if bad else 0
