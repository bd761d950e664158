"""Opt-in experiment tracking: records -> MLflow runs or W&B runs. Nothing is imported or sent unless asked.

    python -m runner report results/ --track mlflow:sqlite:///mlflow.db     # a local MLflow store
    python -m runner report results/ --track mlflow                         # $MLFLOW_TRACKING_URI / MLflow's default
    python -m runner report results/ --track wandb:my-project               # W&B, offline (./wandb or $WANDB_DIR)
    python -m runner report results/ --track wandb:my-project --wandb-online   # uploads: only when asked

Each record becomes one run: the spec, framework, device, platform and commit as params (W&B: config),
per-epoch train loss/accuracy, test accuracy and epoch/eval seconds as metrics at step = epoch, the
timing and metric scalars as final metrics (W&B: summary), and the record itself as an artifact
(record.json). MLflow skips a record already logged to the experiment (tag dlbench.run_id); a W&B
run's id is the record's run_id. `mlflow` and `wandb` are optional extras (pip install
'dlbench[mlflow]' / 'dlbench[wandb]'); the W&B run never samples this machine's stats or git state,
which would describe the exporting machine, not the one the record came from.
"""

from __future__ import annotations

import datetime
import json
import math
from pathlib import Path

from runner.errors import UserError
from runner.report import compare

KINDS = ("mlflow", "wandb")
EXPERIMENT = "dlbench"
EPOCH_SERIES = {"train_loss": "metrics", "train_accuracy": "metrics", "test_accuracy": "metrics",
                "epoch_train_s": "timing", "eval_s": "timing"}


def parse_target(text: str) -> tuple[str, str | None]:
    """"mlflow" / "mlflow:URI" / "wandb" / "wandb:PROJECT" -> (kind, URI or project or None)."""
    kind, _, where = text.partition(":")
    if kind not in KINDS:
        raise UserError(f"--track {text!r}: expected mlflow[:TRACKING_URI] or wandb[:PROJECT]")
    return kind, where or None


def params(rec: dict) -> dict[str, str]:
    """What identifies the run: its spec, framework, device, platform, hardware, commit and command."""
    fw = rec["framework"]
    out = {f"spec.{k}": v for k, v in rec["spec"].items()}
    out |= {"spec_hash": rec["spec_hash"], "framework": fw["name"], "framework_version": fw.get("version"),
            "options": compare.options_label(rec), "device": compare.group_key(rec)[6],
            "platform": rec["platform"]["name"], "hardware": compare.hardware_label(rec),
            "commit": (rec.get("software") or {}).get("runner_git_sha"), "command": rec.get("command")}
    # MLflow keeps at most 6,000 characters of a param; the whole record is the artifact.
    return {k: "" if v is None else str(v)[:6000] for k, v in out.items()}


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def epoch_metrics(rec: dict) -> list[tuple[int, dict[str, float]]]:
    """[(epoch, {name: value})], epochs from 1; values that were not recorded are left out."""
    series = {k: rec[part].get(k) or [] for k, part in EPOCH_SERIES.items()}
    steps = max(map(len, series.values()), default=0)
    out = []
    for i in range(steps):
        values = {k: float(v[i]) for k, v in series.items() if i < len(v) and _finite(v[i])}
        if values:
            out.append((i + 1, values))
    return out


def scalars(rec: dict) -> dict[str, float]:
    """The record's single numbers: timing.* and metrics.* scalars, energy joules."""
    out = {f"timing.{k}": v for k, v in rec["timing"].items() if _finite(v)}
    out |= {f"metrics.{k}": v for k, v in rec["metrics"].items() if _finite(v)}
    if _finite((rec.get("energy") or {}).get("joules")):
        out["energy.joules"] = rec["energy"]["joules"]
    return {k: float(v) for k, v in out.items()}


def tags(rec: dict) -> dict[str, str]:
    return {"dlbench.run_id": rec["run_id"], "dlbench.status": rec["status"],
            "dlbench.parity": str((rec.get("parity") or {}).get("status")),
            "dlbench.framework": rec["framework"]["name"], "dlbench.platform": rec["platform"]["name"]}


def run_name(rec: dict) -> str:
    return f"{rec['framework']['name']}-{compare.group_key(rec)[6]}-{rec['platform']['name']}-{rec['run_id'][:8]}"


def _millis(rec: dict) -> int:
    created = rec.get("created_utc")
    if not created:
        return 0
    return int(datetime.datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ")
               .replace(tzinfo=datetime.timezone.utc).timestamp() * 1000)


def _import(kind: str):
    try:
        if kind == "mlflow":
            import mlflow
            return mlflow
        import wandb
        return wandb
    except ImportError as e:
        raise UserError(f"--track {kind}: {kind} is not installed ({e}); pip install 'dlbench[{kind}]'") from None


def _experiment(client, uri: str | None, name: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if uri and uri.startswith("sqlite:///"):  # artifacts beside the database, not in the current folder
        location = (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()
    return client.create_experiment(name, artifact_location=location)


def to_mlflow(records: list[dict], uri: str | None = None, experiment: str = EXPERIMENT) -> list[str]:
    """Log each record as an MLflow run; return one line per record."""
    mlflow = _import("mlflow")
    from mlflow.entities import Metric, Param, RunTag

    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = _experiment(client, uri, experiment)
    lines = []
    for rec in records:
        if client.search_runs([exp], f"tags.`dlbench.run_id` = '{rec['run_id']}'", max_results=1):
            lines.append(f"mlflow: {rec['run_id']} already logged, skipped")
            continue
        start = _millis(rec)
        run = client.create_run(exp, start_time=start, tags={**tags(rec), "mlflow.runName": run_name(rec)},
                                run_name=run_name(rec))
        rid = run.info.run_id
        metrics = [Metric(k, v, start, step) for step, values in epoch_metrics(rec) for k, v in values.items()]
        metrics += [Metric(k, v, start, 0) for k, v in scalars(rec).items()]
        for i in range(0, max(len(metrics), 1), 1000):  # log_batch takes 1000 metrics at most
            client.log_batch(rid, metrics=metrics[i:i + 1000],
                             params=[Param(k, v) for k, v in params(rec).items()] if i == 0 else [])
        client.log_dict(rid, rec, "record.json")
        wall = rec["timing"].get("wall_s")
        client.set_terminated(rid, "FINISHED" if rec["status"] in ("ok", "below_target") else "FAILED",
                              end_time=start + int(1000 * wall) if start and _finite(wall) else None)
        lines.append(f"mlflow: {rec['run_id']} -> run {rid} (experiment {experiment})")
    return lines


def to_wandb(records: list[dict], project: str | None = None, online: bool = False,
             folder: str | None = None) -> list[str]:
    """Log each record as a W&B run, offline unless `online`; return one line per record."""
    wandb = _import("wandb")
    settings = wandb.Settings(silent=True, console="off", x_disable_stats=True, x_disable_meta=True,
                              disable_git=True, disable_code=True, save_code=False)
    lines = []
    for rec in records:
        run = wandb.init(project=project or EXPERIMENT, id=rec["run_id"], name=run_name(rec),
                         mode="online" if online else "offline", dir=folder, config=params(rec),
                         tags=[rec["framework"]["name"], rec["platform"]["name"], rec["status"]],
                         settings=settings, reinit="create_new")
        try:
            for step, values in epoch_metrics(rec):
                run.log({**values, "epoch": step}, step=step)
            run.summary.update({**scalars(rec), **tags(rec)})
            art = wandb.Artifact(f"record-{rec['run_id']}", type="dlbench-record")
            with art.new_file("record.json", mode="w") as f:
                json.dump(rec, f, indent=1)
            run.log_artifact(art)
        finally:
            run.finish(exit_code=0 if rec["status"] in ("ok", "below_target") else 1)
        lines.append(f"wandb: {rec['run_id']} -> {'online' if online else 'offline'} run {run.dir}")
    return lines


def track(records: list[dict], target: str, online: bool = False) -> list[str]:
    """Export to one --track target; the CLI's entry (and `run --track`'s, record by record)."""
    kind, where = parse_target(target)
    if kind == "mlflow":
        return to_mlflow(records, where)
    return to_wandb(records, where, online=online)
