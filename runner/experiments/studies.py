"""The parent side every study shares: one child per framework, through the same launchers as `run`.

    python -m runner ensemble ...            # runner.experiments.ensemble
    python -m runner per-sample-grads ...    # runner.experiments.per_sample

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


def parse_sizes(flag: str, text: str) -> list[int]:
    """"1,2,4,8" -> [1, 2, 4, 8] (sorted, each once); UserError unless every one is a whole number >= 1
    (an empty item too: runner.lists)."""
    from runner.lists import items

    try:
        sizes = [int(t) for t in items(flag, text)]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise UserError(f"{flag} {text!r}: expected whole numbers >= 1, comma-separated (e.g. 1,2,4,8)")
    return sorted(set(sizes))


def frameworks_for(text: str, supported: tuple[str, ...], study: str) -> list[str]:
    """--framework for a study: names it supports, or 'all' (the supported ones that are installed)."""
    from runner import backends

    if text.strip() == "all":
        chosen = [f for f in supported if backends.installed(f)]
        if not chosen:
            raise UserError(f"{study}: none of {', '.join(supported)} is installed")
        return chosen
    chosen = backends.parse_frameworks(text)
    wrong = [f for f in chosen if f not in supported]
    if wrong:
        raise UserError(f"{study} runs on {', '.join(supported)}, not {', '.join(wrong)}")
    return chosen


def at_least(flag: str, value: int, low: int) -> int:
    if value < low:
        raise UserError(f"{flag} must be >= {low}, got {value}")
    return value
