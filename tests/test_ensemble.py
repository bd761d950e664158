"""`ensemble`: N models stepped together, real torch and JAX children, their records, checks and tables."""

import json
import shutil

import numpy as np
import pytest

from conftest import needs_jax, needs_torch, run_cli
from runner import records
from runner.report import compare, micro as tables
from runner.micro import checks, ensemble, timing
from sample_records import BASE, make_record


# ---- a real run: torch and jax, N = 1, 2, batch 8, 3 timed iterations, synthetic data ----

@pytest.fixture(scope="module")
def run(tmp_path_factory, synthetic_dir):
    out = tmp_path_factory.mktemp("ensemble")
    done = run_cli("ensemble", "--framework", "torch,jax", "--models", "1,2", "--arch", "mlp4", "--batch", 8,
                   "--iterations", 3, "--warmup", 1, "--dataset", "synthetic", "--data-dir", synthetic_dir,
                   "--out", out, timeout=600)
    return done, out


@pytest.mark.slow
@needs_torch
@needs_jax
def test_each_framework_leaves_one_valid_record_with_every_operation_timed(run):
    done, out = run
    assert done.returncode == 0, done.stderr
    recs = {r["framework"]["name"]: r for r in map(records.read, sorted(out.glob("*.json")))}
    assert sorted(recs) == ["jax", "torch"]
    for name, rec in recs.items():
        assert (rec["kind"], rec["status"], rec["error"]) == ("ensemble", "ok", None)
        assert rec["spec"]["model"] == "mlp4" and rec["spec"]["batch_size"] == 8
        assert rec["metrics"]["epochs_completed"] == 0 and rec["timing"]["steady_epoch_s"] is None  # no training
        assert (out / rec["log_file"]).exists() and rec["launcher"]["name"] == "process"
        study = rec["study"]
        assert study["name"] == "ensemble"
        assert study["settings"]["models"] == [1, 2] and study["settings"]["params_per_model"] == 932_362
        ops = {(o["op"], o["size"]): o for o in study["operations"]}
        assert sorted(ops) == [("bprop", 1), ("bprop", 2), ("fprop", 1), ("fprop", 2)]
        for (op, n), row in ops.items():
            assert row["n"] == 3 and row["batch"] == 8
            assert 0 < row["min_s"] <= row["mean_s"] <= row["max_s"] and row["std_s"] >= 0
            assert row["per_model_s"] == pytest.approx(row["mean_s"] / n)
            assert row["samples_per_s_total"] == pytest.approx(n * 8 / row["mean_s"])
        # N=1 and N=2, logits and gradients vs alone, and model 0 vs float64: all pass, with float32-sized numbers
        assert len(study["checks"]) == 6
        for c in study["checks"]:
            assert c["passed"] is True and c["value"] <= c["limit"] and c["value"] < 1e-6, c
        assert {c["against"] for c in study["checks"]} == {"alone", "float64"}


@pytest.mark.slow
@needs_torch
@needs_jax
def test_the_run_prints_the_table_with_one_row_per_n_and_op(run):
    done, _ = run
    lines = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| framework ") and "per-model ms" in lines[0] and "samples/s total" in lines[0]
    body = lines[1:]  # (the separator line starts "|:")
    assert len(body) == 8  # 2 frameworks x N in (1, 2) x (fprop, bprop)
    assert all("| pass (" in line for line in body)
    assert "model 0 alone vs float64: gradients" in done.stdout
    assert "[torch/cpu] ensemble: mlp4 N=2: fprop" in done.stderr


@pytest.mark.slow
@needs_torch
@needs_jax
def test_compare_keeps_study_records_out_of_the_training_rows(run, tmp_path):
    _, out = run
    for path in out.glob("*.json"):
        shutil.copy(path, tmp_path)
    train = make_record(steady=2.0, epochs=[3.0, 2.0])
    (tmp_path / "train.json").write_text(json.dumps(train))
    done = run_cli("compare", tmp_path)
    assert done.returncode == 0, done.stderr
    training, _, rest = done.stdout.partition("### ensemble")
    assert training.count("| torch 2.13.0+cpu") == 1 and "jax" not in training  # the one train record only
    assert rest.count("| jax ") == 4 and rest.count("| torch ") == 4
    as_json = run_cli("compare", tmp_path, "--format", "json")
    assert [row["runs"] for row in json.loads(as_json.stdout)] == [1]
    assert as_json.stderr == ("dlbench: these records need 2 tables (runs, ensemble); --format json prints one, the"
                              " runs table; the others: --view ensemble\n")
    again = run_cli("ensemble", "--table", tmp_path, "--format", "csv")
    assert again.returncode == 0 and len(again.stdout.strip().splitlines()) == 1 + 8


# ---- the check itself: a wrong model for one N fails it ----

@pytest.mark.parametrize("framework", [pytest.param("torch", marks=needs_torch), pytest.param("jax", marks=needs_jax)])
def test_a_wrong_model_in_the_batch_fails_the_check(framework):
    import importlib

    from runner import backends
    from runner.workload.spec import make_spec

    spec = make_spec("standard", model="mlp4", dataset="synthetic", batch_size=4)
    backend = backends.create(framework, spec, "cpu", {})
    ops = importlib.import_module(ensemble.FRAMEWORKS["ensemble"][framework])
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(2, 4, 28, 28)).astype(np.float32), rng.integers(0, 10, size=(2, 4))
    params = [ensemble.initial_params(spec, i) for i in range(2)]
    alone = [ops.alone(backend, "mlp4", params[i], x[i], y[i]) for i in range(2)]
    batched = ops.Ensemble(backend, "mlp4", params, x, y)
    logits, grads = batched.logits(batched.fprop()), batched.grads(batched.bprop())
    right = ensemble.compare(2, logits, grads, alone)
    assert all(c["passed"] for c in right) and max(c["value"] for c in right) < 1e-6
    # model 1 is compared with model 0 run alone: a different function (seed 43 vs 42)
    wrong = ensemble.compare(2, logits, grads, [alone[0], alone[0]])
    assert [c["passed"] for c in wrong] == [False, False]
    assert all(c["value"] > 100 * c["limit"] for c in wrong)
    assert ensemble.versus_float64("mlp4", params[0], x[0], y[0], alone[0])[1]["passed"]
    assert not ensemble.versus_float64("mlp4", params[1], x[0], y[0], alone[0])[1]["passed"]


def test_models_start_from_the_reference_initializer_at_seed_plus_index():
    from runner.workload import reference
    from runner.workload.spec import make_spec

    spec = make_spec("standard", model="cnn4", seed=7)
    assert all(np.array_equal(a, b) for a, b in zip(ensemble.initial_params(spec, 0).values(),
                                                     reference.initial_params(spec).values()))
    one = ensemble.initial_params(spec, 1)
    assert all(np.array_equal(a, b) for a, b in zip(one.values(),
                                                     reference.initial_params(make_spec("standard", model="cnn4",
                                                                                        seed=8)).values()))


# ---- pure parts ----

def test_time_op_times_only_the_iterations_after_the_warmup_and_syncs_before_each_clock_read():
    ticks, events = iter(range(0, 100, 1)), []
    clock = lambda: next(ticks)  # noqa: E731 - each read one second later
    outputs = iter(range(10))
    out, row = timing.time_op(lambda: next(outputs), lambda o: events.append(o), iterations=3, warmup=2, clock=clock)
    assert out == 4 and events == [0, 1, 2, 3, 4]  # every output synced
    assert {k: row[k] for k in ("n", "mean_s", "std_s", "min_s", "max_s", "first_s")} == {
        "n": 3, "mean_s": 1, "std_s": 0.0, "min_s": 1, "max_s": 1, "first_s": 1}


def test_a_check_that_is_not_a_number_fails_and_records_null():
    assert checks.check("x", float("nan"), 1e-5) == {"name": "x", "value": None, "limit": 1e-5, "passed": False}
    assert checks.check("x", 2e-5, 1e-5, size=2)["passed"] is False
    assert checks.grad_rel_diff({"w": np.ones(3)}, {"w": np.ones(3)}) == 0.0
    assert checks.grad_rel_diff({"w": np.array([1.0, 0.0])}, {"w": np.array([0.0, 1.0])}) == pytest.approx(2 ** 0.5)


def study_record(ops, found, framework="torch", model="mlp4", status="ok"):
    from runner.workload.spec import hash_of

    rec = make_record(framework=framework)
    rec.update(kind="ensemble", status=status, parity=None,
               study={"name": "ensemble", "settings": {"models": [1, 2]}, "operations": ops, "checks": found})
    rec["spec"] = {**rec["spec"], "model": model, "batch_size": 8}
    rec["spec_hash"] = hash_of(rec["spec"])
    records.validate(rec)
    return rec


def _op(op, n, mean):
    return ensemble.operation_row(op, n, 8, {"n": 5, "mean_s": mean, "std_s": 0.001, "min_s": mean * 0.9,
                                             "max_s": mean * 1.2, "first_s": 1.0})


def test_ensemble_rows_and_table_from_records():
    alone = [(np.zeros((8, 10)), {"w": np.ones(3)})]
    found = ensemble.compare(1, np.zeros((1, 8, 10)), [{"w": np.ones(3)}], alone) + [
        checks.check("N=2: gradients vs each model alone", 0.3, 1e-4, size=2, of="gradients", against="alone"),
        checks.check("model 0 alone vs float64: logits", 3e-8, 1e-5, of="logits", against="float64")]
    good = study_record([_op("fprop", 1, 0.002), _op("bprop", 1, 0.006), _op("fprop", 2, 0.003)], found)
    rows = tables.ensemble_rows([good, make_record()])  # the train record is not a study row
    assert [(r["models"], r["op"]) for r in rows] == [(1, "fprop"), (1, "bprop"), (2, "fprop")]
    assert rows[2]["per_model_s"] == pytest.approx(0.0015)
    assert rows[2]["samples_per_s_total"] == pytest.approx(16 / 0.003)
    assert [r["check"] for r in rows] == ["pass", "pass", "FAIL"] and rows[2]["gradients_vs_alone"] == 0.3
    text = tables.render([good], "ensemble")
    assert "| FAIL (- / 3.0e-01)" in text and "model 0 alone vs float64: logits 3.0e-08 (limit 1e-05) pass" in text
    assert json.loads(tables.render([good], "ensemble", "json"))[2]["check"] == "FAIL"
    # a record that measured nothing is a note with its reason, never a row
    gone = study_record([], [], framework="jax", status="unavailable")
    gone["error"] = "cannot import jax"
    assert tables.ensemble_rows([gone]) == []
    text = tables.render([gone], "ensemble")
    assert "jax 2.13.0+cpu on cpu" in text and "unavailable: cannot import jax" in text


def test_a_study_record_never_joins_a_training_row_even_with_the_same_spec():
    train = make_record(steady=2.0, epochs=[3.0, 2.0])
    study = {**make_record(), "kind": "per_sample_grads", "parity": None,
             "study": {"name": "per_sample_grads", "settings": {}, "operations": [], "checks": []}}
    records.validate(study)
    assert study["spec_hash"] == train["spec_hash"]
    (row,) = compare.rows([train, study])
    assert row["runs"] == 1 and row["steady_epoch_s"] == 2.0
    assert compare.training([train, study, BASE]) == [train, BASE]


@pytest.mark.parametrize("args, message", [
    (["--models", "0"], "--models '0': expected whole numbers >= 1"),
    (["--models", "1,x"], "--models '1,x': expected whole numbers >= 1"),
    (["--arch", "resnet"], "argument --arch: invalid choice: 'resnet'"),
    (["--batch", "0"], "--batch must be >= 1, got 0"),
    (["--iterations", "0"], "--iterations must be >= 1, got 0"),
    (["--framework", "tensorflow"], "ensemble runs on torch, jax, not tensorflow"),
    (["--models", "600", "--dataset", "synthetic"],
     "--models 600 x --batch 64 needs 38400 samples; synthetic has 4096"),
    (["--launcher-setting", "image=x"], "--launcher-setting 'image=x': expected KEY=VALUE"),
    # issue 27: an empty item was dropped, an empty --out taken as the current folder, any seed accepted
    (["--models", "1,,4"], "--models '1,,4': an empty value in the list"),
    (["--out", ""], "--out '': an empty folder name (name a folder, e.g. --out dlbench-results)"),
    (["--seed", str(2**64)], f"seed must be a whole number from 0 to 2^64-1 (18446744073709551615), got {2**64}"),
    (["--seed", str(2**64 - 4), "--models", "1,8"],
     f"--seed {2**64 - 4} with --models 8: model 7's seed would pass 2^64-1 (18446744073709551615);"
     f" use --seed <= {2**64 - 8}"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    done = run_cli("ensemble", *args)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("dlbench: error: ") and message in line, line


def test_table_says_how_many_records_it_left_out_and_why(tmp_path):
    """issue 27: `ensemble --table` on training records printed an empty table and nothing else."""
    for i in range(2):
        (tmp_path / f"train{i}.json").write_text(json.dumps(make_record()))
    psg = make_record()
    psg["kind"] = "per_sample_grads"
    (tmp_path / "psg.json").write_text(json.dumps(psg))
    done = run_cli("ensemble", "--table", tmp_path, "--format", "csv")
    assert done.returncode == 0 and done.stdout.strip() == ""
    assert done.stderr.strip().splitlines() == [
        "dlbench: 3 record(s) left out of the ensemble table, not ensemble records (1 per_sample_grads: python -m"
        " runner compare --view per-sample-grads PATH; 2 train: python -m runner compare PATH)",
        "dlbench: note: `ensemble --table PATH` is now `compare --view ensemble PATH`; the old name goes in the next"
        " release"]


# ---- statuses: a device that is not there, an interruption ----

@needs_torch
@pytest.mark.slow
def test_an_unavailable_device_leaves_an_unavailable_record_and_a_note(tmp_path, synthetic_dir):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    done = run_cli("ensemble", "--framework", "torch", "--device", "cuda", "--models", "1", "--batch", 8,
                   "--dataset", "synthetic", "--data-dir", synthetic_dir, "--out", tmp_path)
    assert done.returncode == 1
    (rec,) = [records.read(p) for p in tmp_path.glob("*.json")]
    assert (rec["kind"], rec["status"]) == ("ensemble", "unavailable") and "device cuda requested" in rec["error"]
    assert rec["study"]["operations"] == [] and rec["study"]["settings"]["models"] == [1]
    assert "- torch on cuda" in done.stdout and "unavailable: device cuda requested" in done.stdout


@needs_torch
@pytest.mark.slow
def test_an_interrupted_study_records_the_operations_it_finished(tmp_path, synthetic_dir):
    import os
    import signal
    import subprocess
    import sys
    import time

    from conftest import ROOT

    proc = subprocess.Popen([sys.executable, "-m", "runner", "ensemble", "--framework", "torch", "--models", "1,8",
                             "--arch", "cnn4", "--iterations", "20", "--warmup", "1", "--dataset", "synthetic",
                             "--data-dir", str(synthetic_dir), "--out", str(tmp_path)],
                            cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline, seen = time.monotonic() + 300, []
        for line in proc.stderr:
            seen.append(line)
            if "cnn4 N=1:" in line:
                break
            assert time.monotonic() < deadline, "".join(seen)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C, while N=8 is being timed
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 130
    (rec,) = [records.read(p) for p in tmp_path.glob("*.json")]
    assert rec["status"] == "interrupted"
    assert rec["error"] == "interrupted by SIGINT after 2 timed operation(s)"
    assert [(o["op"], o["size"]) for o in rec["study"]["operations"]] == [("fprop", 1), ("bprop", 1)]
    assert all(c["passed"] for c in rec["study"]["checks"])  # N=1's and float64's, measured before the signal


def test_every_request_job_has_a_child_entry_point():
    from runner.launch import child
    from runner.request import JOBS

    assert set(child.JOBS) == set(JOBS)
    assert child.JOBS["ensemble"] == "runner.micro.ensemble:run_job"
    assert child.JOBS["per_sample_grads"] == "runner.micro.per_sample_grads:run_job"
