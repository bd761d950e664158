"""The run request (the parent/child contract), the launchers, the child entry point, the CLI's
spec overrides made from the spec, and the package's layering."""

import ast
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, needs_torch, run_cli
from runner.errors import UserError
from runner.launch import launchers
from runner.request import REQUEST_VERSION, LaunchSettings, Repeat, RequestError, RunRequest, Sampling
from runner.workload.spec import FIELD_HELP, FIELDS, make_spec

REQUEST_KEYS = {"job", "spec", "framework", "device", "data_dir", "out_dir", "run_id", "options", "platform",
                "data_source", "command", "repeat", "sampling", "parity_steps", "launcher", "hardware",
                "environment", "experiment", "study", "version"}


def _request(**changes) -> RunRequest:
    base = dict(job="train", spec=make_spec("smoke", dataset="synthetic"), framework="torch", device="cpu",
                data_dir="/data", out_dir="/out", options={"loop": "step"}, command="python -m runner",
                repeat=Repeat(index=1, of=3, policy="until-stable", max=6, cv_threshold=0.03),
                sampling=Sampling(interval_s=0.5, write_samples=True), parity_steps=7,
                launcher=launchers.ProcessLauncher().describe(), hardware={"cpu": {"brand": "x"}},
                environment={"os": None})
    return RunRequest(**{**base, **changes})


def test_the_request_pins_its_keys_and_round_trips():
    req = _request()
    d = json.loads(req.to_json())
    assert set(d) == REQUEST_KEYS and d["version"] == REQUEST_VERSION
    assert set(d["repeat"]) == {f.name for f in dataclasses.fields(Repeat)} == {"index", "of", "policy", "max",
                                                                                "cv_threshold"}
    assert set(d["sampling"]) == {"interval_s", "write_samples"} and set(d["launcher"]) == {"name", "settings"}
    assert d["launcher"] == {"name": "process", "settings": {"python": None, "grace_s": 120.0}}
    back = RunRequest.from_dict(d)
    assert back == req and back.spec.hash == req.spec.hash


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("framework"), "missing ['framework']"),
    (lambda d: d.update(extra=1), "unknown ['extra']"),
    (lambda d: d.update(parity_steps="7"), "parity_steps = '7' is not int"),
    (lambda d: d.update(parity_steps=True), "parity_steps = True is not int"),
    (lambda d: d.update(hardware=[]), "hardware = [] is not"),
    (lambda d: d.update(version=0), "run request version 0: this dlbench reads version 2"),
    (lambda d: d.update(job="dance"), "unknown job 'dance'"),
    (lambda d: d["repeat"].pop("max"), "run request repeat: missing ['max']"),
    (lambda d: d["sampling"].update(interval_s="fast"), "interval_s = 'fast' is not float"),
    (lambda d: d["spec"].update(epochs=0), "epochs must be a whole number >= 1"),
])
def test_a_bad_request_is_refused_naming_the_field(change, message):
    d = json.loads(_request().to_json())
    change(d)
    with pytest.raises(UserError, match=None) as err:
        RunRequest.from_dict(d)
    assert message in str(err.value)


def test_the_child_refuses_a_bad_request_in_one_line(tmp_path):
    path = tmp_path / "req.json"
    path.write_text(json.dumps({**json.loads(_request().to_json()), "version": 99}))
    out = subprocess.run([sys.executable, "-m", "runner.launch.child", str(path)], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "run request version 99: this dlbench reads version 2" in out.stderr


def test_launchers_are_looked_up_by_name_with_their_settings():
    launcher = launchers.get("process", grace_s=5)
    assert launcher.describe() == LaunchSettings("process", {"python": None, "grace_s": 5})
    with pytest.raises(UserError, match="unknown launcher 'ssh' \\(choose from process"):
        launchers.get("ssh")
    with pytest.raises(UserError, match="launcher process: bad settings"):
        launchers.get("process", nodes=2)
    with pytest.raises(ValueError, match="request says launcher"):
        launchers.launch(_request(), launchers.get("process", grace_s=5))


@needs_torch
@pytest.mark.slow
def test_the_process_launcher_runs_the_child_with_the_interpreter_it_is_given(tmp_path, synthetic_dir):
    """`python` is the seam an image with one environment per framework uses: the run goes through it
    and the record says so."""
    marker = tmp_path / "used"
    wrapper = tmp_path / "python-wrapper"
    wrapper.write_text(f"#!/bin/sh\necho \"$@\" > {marker}\nexec {sys.executable} \"$@\"\n")
    wrapper.chmod(0o755)
    from runner import records
    from runner.launch import orchestrate

    outcomes, interrupted = orchestrate.run_all(
        make_spec("smoke", dataset="synthetic"), ["torch"], 1, {"name": "cpu", "source": "flag"}, "cpu",
        synthetic_dir, tmp_path / "out", "test", parity_steps=0,
        launcher=launchers.get("process", python=str(wrapper)))
    assert not interrupted and [o.status for o in outcomes] == ["ok"]
    assert marker.read_text().startswith("-m runner.launch.child ")
    rec = records.read(outcomes[0].path)
    assert rec["launcher"] == {"name": "process", "settings": {"python": str(wrapper), "grace_s": 120.0}}
    assert rec["log_file"] == f"logs/torch-{rec['run_id'][:12]}.log"
    assert (tmp_path / "out" / rec["log_file"]).read_text().count("[torch/cpu] epoch 1/1") == 1


def test_every_spec_field_has_a_flag_and_help():
    assert set(FIELD_HELP) == set(FIELDS)
    text = run_cli("run", "--help").stdout
    for name in FIELDS:
        assert "--" + name.replace("_", "-") in text, name
    assert "--lr" in text and "--set FIELD=VALUE" in text


@pytest.mark.parametrize("args, message", [
    (["--set", "beta2"], "--set 'beta2': expected FIELD=VALUE"),
    (["--set", "nope=1"], "unknown spec field 'nope'"),
    (["--set", "epochs=2.5"], "epochs: '2.5' is not a whole number"),
    (["--epochs", "2", "--set", "epochs=3"], "epochs is already set by --epochs"),
    (["--batch-size", "x"], "argument --batch-size: batch_size: 'x' is not a whole number"),
    (["--model", "vgg"], "model: 'vgg' is not one of lenet5, mlp, cnn"),
    (["--launcher", "ssh"], "argument --launcher: invalid choice: 'ssh'"),
])
def test_bad_overrides_are_one_line_errors(tmp_path, args, message):
    out = run_cli("run", "--framework", "torch", "--dataset", "synthetic", "--out", tmp_path, *args)
    assert out.returncode == 2 and message in out.stderr and out.stderr.count("\n") == 1, out.stderr


def test_set_and_flags_reach_the_spec():
    from runner.cli import build_parser, workload

    args = build_parser().parse_args(["run", "--lr", "0.01", "--set", "beta2=0.99", "--target-accuracy", "none",
                                      "--set", "limit-train=128"])
    assert workload.overrides(args) == {"learning_rate": 0.01, "beta2": 0.99, "target_accuracy": None,
                                        "limit_train": 128}
    assert workload.overrides(build_parser().parse_args(["run"])) == {}


@pytest.mark.slow
def test_framework_banners_stay_in_the_log(tmp_path, synthetic_dir):
    """A new user's terminal shows progress and the table; TensorFlow's C++ banners go to the log."""
    pytest.importorskip("tensorflow")
    out = run_cli("run", "--framework", "tensorflow", "--preset", "smoke", "--dataset", "synthetic",
                  "--data-dir", synthetic_dir, "--out", tmp_path, "--parity-steps", "3")
    assert out.returncode == 0, out.stderr[-2000:]
    for banner in ("oneDNN", "cuInit", "absl::InitializeLog", "cpu_feature_guard", "Traceback"):
        assert banner not in out.stderr and banner not in out.stdout, banner
    assert "[tensorflow/cpu] epoch 1/1" in out.stderr
    (log,) = (tmp_path / "logs").glob("tensorflow-*.log")
    text = log.read_text()
    # Which banners TensorFlow prints depends on the CPU (oneDNN's only where it turns oneDNN on, e.g.
    # with AVX-512; this AVX2 host prints cpu_feature_guard's), but it always prints some: in the log.
    assert any(b in text for b in ("oneDNN", "cpu_feature_guard", "cudart_stub", "cuInit")), text[:2000]
    assert "[tensorflow/cpu] epoch 1/1" in text


# Lower layers never import higher ones: a newcomer can read the flow top-down (cli -> launch ->
# the child's steps) and every arrow points down.
LAYERS = ["runner", "errors", "lists", "atomic", "console", "data", "workload", "backends", "measure", "machine",
          "request", "records", "parity", "jobs", "report", "launch", "experiments", "micro", "cli", "__main__"]


def _group(module: str) -> str:
    parts = module.split(".")
    return "runner" if len(parts) == 1 or parts[1] == "__init__" else parts[1]


def test_imports_only_point_down_the_layers():
    wrong = []
    for path in (ROOT / "runner").rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("")
        here = _group(".".join(rel.parts))
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("runner")):
                continue
            names = [node.module] if node.module != "runner" else [f"runner.{a.name}" for a in node.names]
            for name in names:
                there = _group(name)
                there = "runner" if there == "__version__" else there
                if there != here and LAYERS.index(there) > LAYERS.index(here):
                    wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert wrong == []


def test_launcher_settings_from_the_command_line_are_typed_and_checked():
    launcher = launchers.from_args("process", ["grace_s=7.5", "python=none"])
    assert launcher.describe() == LaunchSettings("process", {"python": None, "grace_s": 7.5})
    container = launchers.from_args("container", ["image=dlbench:cuda", "gpus=all"])
    assert container.describe().settings == {"image": "dlbench:cuda", "engine": None, "gpus": "all",
                                             "python": "python", "grace_s": 120.0}
    with pytest.raises(UserError, match="KEY one of grace_s, python \\(launcher process\\)"):
        launchers.from_args("process", ["image=x"])
    with pytest.raises(UserError, match="grace_s must be a float"):
        launchers.from_args("process", ["grace_s=soon"])


def test_the_container_child_sees_its_own_folders_and_probes_itself():
    req = _request(launcher=launchers.get("container").describe())
    inside = launchers.get("container").inside(req)
    assert (inside.data_dir, inside.out_dir, inside.hardware, inside.environment) == ("/data", "/results", None, None)
    assert (inside.run_id, inside.spec, inside.launcher) == (req.run_id, req.spec, req.launcher)


def test_no_container_engine_is_one_clear_error(tmp_path):
    out = run_cli("run", "--framework", "torch", "--dataset", "synthetic", "--preset", "smoke", "--out", tmp_path,
                  "--launcher", "container", "--launcher-setting", f"engine=unix://{tmp_path}/nothing.sock")
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert f"no container engine answers at unix://{tmp_path}/nothing.sock" in out.stderr


def test_the_process_launcher_starts_each_framework_with_its_environments_python(monkeypatch, tmp_path):
    """dlbench:cuda holds torch and TF/JAX in two environments ($DLBENCH_PYTHONS); an explicit
    `python` setting overrides the map for every framework."""
    monkeypatch.setenv("DLBENCH_PYTHONS", json.dumps({"jax": "/opt/venvs/tfjax/bin/python"}))
    launcher = launchers.get("process")
    assert launcher.command(tmp_path / "r.json", "jax")[:3] == ["/opt/venvs/tfjax/bin/python", "-m",
                                                               "runner.launch.child"]
    assert launcher.command(tmp_path / "r.json", "torch")[0] == sys.executable
    assert launchers.get("process", python="/x/python").command(tmp_path / "r.json", "jax")[0] == "/x/python"


def test_only_the_users_signal_stops_the_rest_of_the_runs():
    """Exit 130 (and no further runs) when the signal reached the parent, or when the child recorded
    the SIGINT a terminal's Ctrl-C sends the whole group (the parent may wake only after the child
    exited); a child SIGTERMed by someone else (torchrun, after another rank died) is a failed run."""
    from runner.launch import orchestrate

    sigint = {"status": "interrupted", "error": "interrupted by SIGINT after 2 epoch(s)"}
    sigterm = {"status": "interrupted", "error": "interrupted by SIGTERM after 2 epoch(s)"}
    assert orchestrate._user_interrupt(launchers.Exit(130, "SIGTERM"), sigterm)
    assert orchestrate._user_interrupt(launchers.Exit(130), sigint)
    assert not orchestrate._user_interrupt(launchers.Exit(130), sigterm)
    assert not orchestrate._user_interrupt(launchers.Exit(1), {"status": "failed", "error": "boom"})
    assert "interrupted" in orchestrate.FAILING


def test_the_job_frame_turns_what_a_body_raised_into_the_records_status_and_exit_code(tmp_path, capsys):
    """runner.jobs.frame: one ladder for the train job and the micro-benchmark jobs."""
    import signal
    import types

    from runner.backends.base import FrameworkUnavailable
    from runner.errors import Interrupted
    from runner.jobs import frame

    class Mine(Exception):
        pass

    req = types.SimpleNamespace(framework="torch", out_dir=str(tmp_path))
    saved = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)

    def outcome(exc):
        rec, seen = {"status": None, "error": None, "log_file": "logs/torch-x.log"}, []

        def body():
            if exc is not None:
                raise exc
            rec["status"] = "ok"
        try:
            frame.guarded(req, rec, body, seen.append, own=((Mine, "diverged"),))
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # the record is still to be written
        finally:
            signal.signal(signal.SIGINT, saved[0])
            signal.signal(signal.SIGTERM, saved[1])
        return rec, seen

    assert outcome(None) == ({"status": "ok", "error": None, "log_file": "logs/torch-x.log"}, [])
    assert outcome(Interrupted("SIGTERM"))[1] == ["SIGTERM"]
    assert outcome(KeyboardInterrupt())[1] == ["SIGINT"]
    rec, _ = outcome(FrameworkUnavailable("no torch here"))
    assert rec["status"] == "unavailable" and rec["error"].startswith("no torch here (install: ")
    assert outcome(Mine("loss 1e9 at epoch 2"))[0]["error"] == "loss 1e9 at epoch 2"
    rec, _ = outcome(ValueError("bad shape"))
    assert rec["status"] == "failed" and "bad shape" in rec["error"]
    capsys.readouterr()
    assert frame.finish(req, rec) == 1
    assert capsys.readouterr().err == f"[torch] failed: {rec['error']} (details: {tmp_path / 'logs/torch-x.log'})\n"
    assert frame.finish(req, {**rec, "status": "unavailable"}, details=False) == 3
    assert "(details" not in capsys.readouterr().err
