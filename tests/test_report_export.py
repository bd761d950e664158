"""Opt-in tracking: records logged to a real local MLflow store (sqlite) and a real offline W&B run,
then read back with the tools' own readers (MlflowClient; `wandb leet inspect --json`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from report_records import fleet, gpu_run
from runner import records as recordlib
from runner.cli import main
from runner.errors import UserError
from runner.report import export

SLOW = pytest.mark.slow  # each tool starts a store or a service process: seconds (MLflow's migrations ~10 s)


def test_targets_parse():
    assert export.parse_target("mlflow") == ("mlflow", None)
    assert export.parse_target("mlflow:sqlite:///x.db") == ("mlflow", "sqlite:///x.db")
    assert export.parse_target("wandb:proj") == ("wandb", "proj")
    with pytest.raises(UserError, match="expected mlflow"):
        export.parse_target("tensorboard")


def test_epoch_metrics_and_scalars_come_from_the_record():
    rec = gpu_run()
    steps = export.epoch_metrics(rec)
    assert [s for s, _ in steps] == [1, 2, 3]
    assert steps[2][1]["test_accuracy"] == 0.992 and steps[0][1]["epoch_train_s"] == 9.0
    assert export.scalars(rec)["timing.steady_epoch_s"] == 1.05 and export.scalars(rec)["energy.joules"] == 1234.5


@SLOW
def test_mlflow_sqlite_store_round_trip(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow", reason="pip install 'dlbench[mlflow]'")
    monkeypatch.chdir(tmp_path)  # nothing may land in the current folder but what we ask for
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    (tmp_path / "store").mkdir()
    recs = [gpu_run(), fleet()[0]]
    lines = export.track(recs, f"mlflow:{uri}")
    assert len(lines) == 2 and all("-> run" in line for line in lines)

    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("dlbench")
    runs = {r.data.tags["dlbench.run_id"]: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {r["run_id"] for r in recs}
    got = runs[recs[0]["run_id"]]
    assert got.data.params["framework"] == "jax" and got.data.params["spec.batch_size"] == "64"
    assert got.data.params["spec_hash"] == recs[0]["spec_hash"] and got.data.params["device"] == "cuda"
    history = client.get_metric_history(got.info.run_id, "test_accuracy")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [(1, 0.98), (2, 0.985), (3, 0.992)]
    assert got.data.metrics["timing.steady_epoch_s"] == 1.05 and got.info.status == "FINISHED"
    saved = Path(client.download_artifacts(got.info.run_id, "record.json", str(tmp_path / "dl")))
    assert json.loads(saved.read_text()) == recs[0]
    assert (tmp_path / "store" / "mlartifacts").is_dir() and not (tmp_path / "mlruns").exists()
    # Exporting again adds nothing: the record's run_id is already there
    assert all("already logged" in line for line in export.track(recs, f"mlflow:{uri}"))
    assert len(client.search_runs([exp.experiment_id])) == 2


@SLOW
def test_wandb_offline_round_trip(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="pip install 'dlbench[wandb]'")
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    rec = gpu_run()
    (line,) = export.track([rec], "wandb:dlbench-test")
    assert "offline run" in line
    (run_dir,) = (tmp_path / "wandb_dir" / "wandb").glob(f"offline-run-*-{rec['run_id']}")
    out = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(run_dir)],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    entries = [json.loads(x) for x in out.splitlines() if x.strip()]
    (run,) = [e["run"] for e in entries if e["type"] == "run"]
    assert run["project"] == "dlbench-test" and run["run_id"] == rec["run_id"]
    assert run["config"]["update"]["framework"] == "jax" and run["config"]["update"]["spec.seed"] == "42"
    history = [e["history"]["item"] for e in entries if e["type"] == "history"]
    assert [h["test_accuracy"] for h in history] == [0.98, 0.985, 0.992]
    summary = {}
    for e in entries:
        if e["type"] == "summary":
            summary |= e["summary"].get("update", {})
    assert summary["timing.steady_epoch_s"] == 1.05 and summary["dlbench.run_id"] == rec["run_id"]
    (artifact,) = [e["artifact"] for e in entries if e["type"] == "artifact"]
    assert artifact["name"] == f"record-{rec['run_id']}" and artifact["type"] == "dlbench-record"
    assert not [e for e in entries if e["type"] == "stats"]  # this machine's stats are not the record's


@SLOW
def test_cli_track_writes_no_page(tmp_path, monkeypatch, capsys):
    pytest.importorskip("mlflow", reason="pip install 'dlbench[mlflow]'")
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "recs"
    folder.mkdir()
    recordlib.write(gpu_run(), folder)
    assert main(["report", str(folder), "--track", f"mlflow:sqlite:///{tmp_path / 'm.db'}"]) == 0
    assert "-> run" in capsys.readouterr().out and not (tmp_path / "report.html").exists()
