"""Which table a set of records needs, and that table: one entry point for every table over records.

    python -m runner compare results/                     # every view the records need, in this order
    python -m runner compare results/ --view sweep --id sweep-1a2b3c4d5e6f --format csv

Views: `runs` (runner.report.compare: one row per framework, device and mode), `sweep` (one row per
grid point: runner.report.sweep_table), `tune` (per study, the frameworks' counts and best trials:
runner.report.tune_table), `ensemble` and `per-sample-grads` (the micro-benchmarks:
runner.report.micro). `run`, `sweep`, `tune`, `ensemble` and `per-sample-grads` print their table
at the end through the same `render`.

`present` picks the views the records need: a sweep's or a tuning study's runs go to their own view,
and `runs` shows the runs that belong to neither; `--view runs` shows every training run as a row.
"""

from __future__ import annotations

from dataclasses import dataclass

from runner.errors import UserError

VIEWS = ("runs", "sweep", "tune", "ensemble", "per-sample-grads")
KIND = {"ensemble": "ensemble", "per-sample-grads": "per_sample_grads"}  # view -> record kind
NOUN = {"runs": "training", "sweep": "sweep", "tune": "tuning", "ensemble": "ensemble",
        "per-sample-grads": "per-sample-grads"}
ID_VIEWS = ("sweep", "tune")  # views one --id picks from: a sweep's id, a tuning study's name


@dataclass(frozen=True)
class Settings:
    """How a view is drawn: --format, and the flags of the views that take them."""
    fmt: str = "markdown"
    id: str | None = None          # sweep / tune: one sweep (its id) or one study (its name)
    top: int = 5                   # tune: the best K trials per framework
    baseline: str | None = None    # runs: the row the others are divided by
    noisy_cv: float | None = None  # runs: None is compare.NOISY_CV
    columns: tuple = ()            # runs: extra markdown columns


def _experiment(rec: dict) -> str | None:
    return (rec.get("experiment") or {}).get("kind")


def records_for(view: str, records: list[dict], settings: Settings = Settings(), every_run: bool = True) -> list[dict]:
    """The records `view` draws. runs: the training records (`every_run` False: only those of no
    sweep or tuning study, as the automatic choice shows them)."""
    from runner.report import compare, micro, sweep_table, tune_table

    if view == "runs":
        train = compare.training(records)
        return train if every_run else [r for r in train if _experiment(r) not in ("sweep", "tune")]
    if view == "sweep":
        return sweep_table.sweep_records(records, settings.id)
    if view == "tune":
        return tune_table.trial_records(records, settings.id)
    return micro.of_kind(records, KIND[view])


def present(records: list[dict], settings: Settings = Settings()) -> list[str]:
    """The views `records` need, in VIEWS order (with an --id, only the sweep or study it names)."""
    views = ID_VIEWS if settings.id is not None else VIEWS
    return [v for v in views if records_for(v, records, settings, every_run=False)]


def render(view: str, records: list[dict], settings: Settings = Settings(), every_run: bool = True) -> str:
    """`view`'s table over `records` (those it does not draw are ignored)."""
    from runner.report import compare, micro, sweep_table, tune_table

    mine = records_for(view, records, settings, every_run)
    fmt = settings.fmt
    if view == "runs":
        noisy_cv = compare.NOISY_CV if settings.noisy_cv is None else settings.noisy_cv
        return compare.render(compare.rows(mine, baseline=settings.baseline, noisy_cv=noisy_cv), fmt,
                              settings.columns)
    if view == "sweep":
        return sweep_table.render(sweep_table.rows(mine), fmt).rstrip("\n")
    if view == "tune":
        return tune_table.render(tune_table.rows(mine, top=settings.top), fmt).rstrip("\n")
    return micro.render(mine, KIND[view], fmt)


def choose(records: list[dict], view: str, settings: Settings, where: str) -> list[str]:
    """The views to print for --view `view` ("auto": those the records need); UserError when the
    records hold none of what was asked for."""
    if view != "auto":
        if settings.id is not None and view not in ID_VIEWS:
            raise UserError(f"--id picks one sweep or tuning study: it goes with --view sweep or tune, not {view}")
        if not records_for(view, records, settings) and view != "runs":
            which = "" if settings.id is None else f" of {'study ' * (view == 'tune')}{settings.id}"
            raise UserError(f"no {NOUN[view]} records{which} under {where}")
        return [view]
    views = present(records, settings)
    if not views:
        if settings.id is not None:
            raise UserError(f"no sweep or tuning study {settings.id} under {where}")
        return ["runs"]  # prints "(no records)"
    return views
