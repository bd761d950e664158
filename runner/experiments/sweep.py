"""`sweep`: a grid over spec fields and backend options; every point is a run through the launcher.

    python -m runner sweep --framework torch,jax --set batch_size=32,64,128,512 [--set learning_rate=1e-3,2e-3]
                           [--option jax.loop=step,scan] [--dataset fashion] [any run flag] --out results/sweep
    python -m runner sweep-table results/sweep          # the table again, from the records

A comma in a --set or --option value makes an axis (a comma is never valid inside one spec value, so
splitting is safe); a single value is a fixed override, as in `run`. The grid is the cartesian
product of the axes, the first axis varying slowest. Each point is a spec of its own (its own
spec_hash) plus backend options, run for every framework (and repeat) with orchestrate.run_all; an
option axis only concerns its own framework, so the other frameworks run each of its points once.
Every record carries experiment = {kind: sweep, id, point, index, size, state: null}: the id hashes
the base spec, the fixed options and the axes, so the same command has the same id again.

Resumable: a point x framework that already has its completed records (ok or below_target; as many
as --repeats asks) of this grid id, point and spec_hash in --out is skipped, and the command says
how many; only this machine's own records count (runner.experiments.resume: in --out itself, same
platform, device, hardware, launcher and world size). Ctrl-C stops the sweep after the running
worker has recorded what it finished. One sweep at a time per --out (runner.experiments.lock): a
second one stops with one line while the first runs.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sys
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from runner import backends, lists, records
from runner.experiments import lock, resume
from runner.errors import SpecError, UserError
from runner.workload.spec import Spec, make_spec, parse_field


@dataclass(frozen=True)
class Axis:
    name: str                       # a spec field, or FRAMEWORK.KEY for a backend option
    values: tuple
    framework: str | None = None    # an option axis: the framework it drives

    def label(self, value) -> str:
        return f"{self.name}={value:g}" if isinstance(value, float) else f"{self.name}={value}"


def _distinct(flag: str, item: str, values: tuple) -> None:
    """An axis whose values repeat runs the same point twice; one value is no axis at all."""
    twice = [v for v, n in Counter(map(repr, values)).items() if n > 1]
    if twice:
        raise UserError(f"{flag} {item!r}: {twice[0]} is given twice (as written or once parsed):"
                        f" the axis would run the same point twice")


def split(set_items: list[str], option_items: list[str]) -> tuple[list[str], list[str], list[Axis]]:
    """--set and --option items -> (fixed --set items, fixed --option items, axes). Spec values are
    parsed here (a bad one is a one-line error before anything runs); option values are checked
    against their backend by check_options once the frameworks are known."""
    fixed_set, fixed_options, axes = [], [], []
    for item in set_items:
        name, eq, value = item.partition("=")
        if not eq or "," not in value:
            fixed_set.append(item)
            continue
        field = name.strip().replace("-", "_")
        texts = lists.items("--set", value, repr(item))
        try:
            values = tuple(parse_field(field, t) for t in texts)
        except SpecError as e:
            raise UserError(f"--set {item!r}: {e}") from None
        _distinct("--set", item, values)
        axes.append(Axis(field, values))
    for item in option_items:
        key, eq, value = item.partition("=")
        if not eq or "," not in value:
            fixed_options.append(item)
            continue
        framework, dot, option = key.strip().partition(".")
        if not (dot and option) or framework not in backends.REGISTRY:
            raise UserError(f"--option {item!r}: expected FRAMEWORK.KEY=V1,V2,... with FRAMEWORK one of"
                            f" {', '.join(backends.REGISTRY)}, e.g. jax.loop=step,scan")
        texts = lists.items("--option", value, repr(item))
        _distinct("--option", item, tuple(texts))
        axes.append(Axis(key.strip(), tuple(texts), framework=framework))
    names = [a.name for a in axes]
    for name in names:
        if names.count(name) > 1:
            raise UserError(f"{name} is an axis twice: give all its values in one list")
    fixed_names = {i.partition("=")[0].strip().replace("-", "_") for i in fixed_set} | {
        i.partition("=")[0].strip() for i in fixed_options}
    for axis in axes:
        if axis.name in fixed_names:
            raise UserError(f"{axis.name} is both an axis and a fixed value: give it once")
    return fixed_set, fixed_options, axes


def check_axes(axes: list[Axis], flagged: set[str], frameworks: list[str], options: dict) -> None:
    """What can only be checked once the workload is known: a spec axis also set by its own flag, an
    option axis of a framework that does not run (it would change nothing), an option value its
    backend refuses."""
    for axis in axes:
        if axis.framework is None and axis.name in flagged:
            raise UserError(f"--set {axis.name}=...: {axis.name} is already set by --{axis.name.replace('_', '-')}")
        if axis.framework is not None:
            if axis.framework not in frameworks:
                raise UserError(f"--option {axis.name}=...: {axis.framework} is not among the frameworks that run"
                                f" ({', '.join(frameworks)}): the axis would change nothing")
            option = axis.name.partition(".")[2]
            for value in axis.values:
                backends.options_for(axis.framework, {**options.get(axis.framework, {}), option: value})


@dataclass(frozen=True)
class Run:
    """One point x framework of the grid."""

    index: int          # the grid point (the first one, for a framework an option axis does not concern)
    framework: str
    point: dict         # the axes that concern this framework: {name: value}
    spec: Spec
    options: dict       # the framework's backend options, as given


@dataclass(frozen=True)
class Plan:
    id: str
    axes: tuple
    size: int           # grid points
    runs: tuple         # Run, in grid order

    def experiment(self, run: Run) -> dict:
        return {"kind": "sweep", "id": self.id, "point": run.point, "index": run.index, "size": self.size,
                "state": None}


def grid_id(base: Spec, options: dict, axes: list[Axis]) -> str:
    """Stable over re-runs of the same command: the base spec, the fixed options, the axes in order."""
    text = json.dumps({"spec": base.to_dict(), "options": options,
                       "axes": [[a.name, list(a.values)] for a in axes]}, sort_keys=True)
    return "sweep-" + hashlib.sha256(text.encode()).hexdigest()[:12]


def plan(preset: str, overrides: dict, options: dict, axes: list[Axis], frameworks: list[str]) -> Plan:
    """Every point's spec is made (and validated) here, before anything runs."""
    base = make_spec(preset, **overrides)
    points = [dict(zip([a.name for a in axes], values)) for values in itertools.product(*(a.values for a in axes))]
    spec_axes = [a.name for a in axes if a.framework is None]
    runs, seen = [], {}
    for index, point in enumerate(points):
        fields = {k: point[k] for k in spec_axes}
        try:
            spec = make_spec(preset, **{**overrides, **fields})
        except SpecError as e:
            where = ", ".join(a.label(point[a.name]) for a in axes if a.framework is None)
            raise UserError(f"grid point {index + 1} ({where}): {e}") from None
        for name in frameworks:
            mine = {a.name: point[a.name] for a in axes if a.framework in (None, name)}
            key = json.dumps(mine, sort_keys=True)
            if key in seen.setdefault(name, set()):
                continue  # another framework's option axis: this framework ran this point already
            seen[name].add(key)
            given = {**options.get(name, {}),
                     **{a.name.partition(".")[2]: point[a.name] for a in axes if a.framework == name}}
            runs.append(Run(index, name, mine, spec, given))
    return Plan(grid_id(base, options, axes), tuple(axes), len(points), tuple(runs))


def _point_key(point: dict) -> str:
    return json.dumps(point, sort_keys=True)


def _ours(plan_: Plan, rec: dict) -> bool:
    exp = rec.get("experiment") or {}
    return exp.get("kind") == "sweep" and exp.get("id") == plan_.id and rec["status"] in records.COMPLETED


def _key(framework: str, point: dict, spec_hash: str) -> tuple:
    return framework, _point_key(point), spec_hash


def _made_here(plan_: Plan, machine: resume.Machine, launcher):
    """rec -> whether this command would have made it (runner.experiments.resume): this machine,
    platform, device and launcher, and the world size its run plans (any, where only a run can tell)."""
    worlds = {_key(r.framework, r.point, r.spec.hash): resume.world_size(launcher, r.options) for r in plan_.runs}

    def made_here(rec: dict) -> bool:
        key = _key(rec["framework"]["name"], rec["experiment"]["point"], rec["spec_hash"])
        return (key in worlds and resume.of(rec) == machine
                and worlds[key] in (None, resume.recorded_world_size(rec)))
    return made_here


def done_counts(plan_: Plan, recs: list[dict], machine: resume.Machine, launcher) -> Counter:
    """Completed records of this grid that this command would have made, per (framework, point, spec_hash)."""
    made_here = _made_here(plan_, machine, launcher)
    return Counter(_key(rec["framework"]["name"], rec["experiment"]["point"], rec["spec_hash"])
                   for rec in recs if _ours(plan_, rec) and made_here(rec))


def todo(plan_: Plan, recs: list[dict], repeats, machine: resume.Machine, launcher) -> list[tuple[Run, object]]:
    """(run, its Repeats) still to do: a point x framework with `repeats.minimum` completed records
    made here (done_counts) is done; with fewer, a fixed policy runs the missing ones, until-stable
    starts over."""
    done = done_counts(plan_, recs, machine, launcher)
    out = []
    for run in plan_.runs:
        have = done[_key(run.framework, run.point, run.spec.hash)]
        if have >= repeats.minimum:
            continue
        out.append((run, repeats if repeats.until_stable else replace(repeats, minimum=repeats.minimum - have)))
    return out


def elsewhere(plan_: Plan, recs: list[dict], machine: resume.Machine, launcher) -> int:
    """Completed records of this grid that another machine (or way of running) made: not counted."""
    made_here = _made_here(plan_, machine, launcher)
    return sum(_ours(plan_, rec) and not made_here(rec) for rec in recs)


def own_records(out: Path, work) -> list[dict]:
    """The records this machine made in --out (resume's terms): what the sweep's table shows."""
    machine = resume.here(work.platform, work.device, work.launcher)
    return [rec for rec in resume.records_in(out) if resume.of(rec) == machine]


def describe(plan_: Plan, run: Run) -> str:
    axes = {a.name: a for a in plan_.axes}
    return " ".join(axes[k].label(v) for k, v in run.point.items())


LOCK = ".sweep.lock"


def execute(plan_: Plan, work, out: Path, repeats, run_kwargs: dict, log=lambda m: print(m, file=sys.stderr)):
    """Run what is left of the plan, point by point, holding --out's lock; return (outcomes,
    interrupted). UserError if another sweep holds the lock."""
    with lock.held(Path(out) / LOCK, f"another sweep is running into {out}{{holder}}: wait for it to end,"
                                     f" or choose another --out",
                   unguarded=f"a second sweep into {out} would not be stopped"):
        return _execute(plan_, work, Path(out), repeats, run_kwargs, log)


def _execute(plan_: Plan, work, out: Path, repeats, run_kwargs: dict, log):
    from runner.launch import orchestrate

    machine = resume.here(work.platform, work.device, work.launcher)
    existing = resume.records_in(out)
    left = todo(plan_, existing, repeats, machine, work.launcher)
    total, skipped = len(plan_.runs), len(plan_.runs) - len(left)
    axes = f"{len(plan_.axes)} {'axis' if len(plan_.axes) == 1 else 'axes'}"
    log(f"sweep {plan_.id}: {axes}, {plan_.size} points, {total} point x framework runs"
        f" ({', '.join(work.frameworks)})")
    if skipped:
        log(f"sweep {plan_.id}: {skipped} of {total} point x framework runs already done in {out}, skipped"
            + ("; nothing left to run" if not left else ""))
    others = elsewhere(plan_, existing, machine, work.launcher)
    if others:
        log(f"sweep {plan_.id}: {others} completed record(s) of this sweep in {out} were made elsewhere (another"
            f" platform, device, hardware, launcher or world size): not counted as done here")
    outcomes = []
    for index in dict.fromkeys(run.index for run, _ in left):
        here = [(run, rep) for run, rep in left if run.index == index]
        names = ", ".join(run.framework for run, _ in here)
        log(f"[point {index + 1}/{plan_.size}] {describe(plan_, here[0][0])}: {names}")
        for run, rep in here:
            mine, interrupted = orchestrate.run_all(
                run.spec, [run.framework], repeats=rep, platform=work.platform, device=work.device,
                out_dir=out, options={run.framework: run.options}, launcher=work.launcher,
                experiment=plan_.experiment(run), **run_kwargs)
            outcomes += mine
            for o in mine:
                log(f"[point {index + 1}/{plan_.size}] {o.framework}: {o.status} -> {o.path}")
            if interrupted:
                log(f"sweep {plan_.id}: interrupted after {len(outcomes)} run(s); the same command resumes it")
                return outcomes, True
    return outcomes, False
