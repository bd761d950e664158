"""`tune`: the pruners and their child-side hook (real Optuna studies in memory), the record's experiment
block, the result table (fixture records), and a real tiny search on synthetic data that prunes,
resumes from its SQLite study and runs exactly the missing trial."""

from __future__ import annotations

import json
import re
import signal

import pytest

from conftest import needs_torch, run_cli
from runner import records
from runner.errors import UserError
from runner.experiments import tune
from runner.jobs import trial as trial_hook
from runner.records import build
from runner.report import tune_table
from runner.request import RunRequest
from runner.workload.harness import TrainLog
from runner.workload.spec import hash_of, make_spec
from sample_records import make_record

optuna = pytest.importorskip("optuna")
optuna.logging.set_verbosity(optuna.logging.WARNING)


# --- pruners and the child's hook -------------------------------------------------------------------

def test_pruner_settings_from_the_command_line():
    assert trial_hook.parse_pruner("median") == {"kind": "median", "n_startup_trials": 3, "n_warmup_steps": 1}
    assert trial_hook.parse_pruner("none") == {"kind": "none"}
    assert trial_hook.parse_pruner("threshold:0.5") == {"kind": "threshold", "lower": 0.5}
    for bad in ("threshold:1.5", "threshold:0", "threshold:half", "threshold", "median:3", "hyperband"):
        with pytest.raises(UserError, match=re.escape(f"--pruner {bad!r}")):
            trial_hook.parse_pruner(bad)


def _log(*accuracies):
    log = TrainLog()
    log.test_accuracy.extend(accuracies)
    return log


def _study(settings, completed=()):
    """An in-memory study with `completed` trials, each a list of per-epoch accuracies."""
    study = optuna.create_study(direction="maximize", pruner=trial_hook.make_pruner(settings))
    for curve in completed:
        t = study.ask()
        for step, acc in enumerate(curve):
            t.report(acc, step)
        study.tell(t, max(curve))
    return study


def test_the_median_pruner_waits_for_three_trials_and_the_second_epoch_and_spares_the_last():
    settings = trial_hook.parse_pruner("median")
    curves = [[0.5, 0.8, 0.9], [0.6, 0.85, 0.95], [0.55, 0.9, 0.97]]
    two = _study(settings, curves[:2]).ask()  # two completed trials: no median yet
    reporter = trial_hook.Reporter(two, 3, settings)
    reporter(0, _log(0.1))
    reporter(1, _log(0.1, 0.1))
    three = _study(settings, curves)
    reporter = trial_hook.Reporter(three.ask(), 3, settings)
    reporter(0, _log(0.1))  # epoch 1: never pruned
    with pytest.raises(trial_hook.Pruned, match=r"stopped by the median pruner after epoch 2 of 3 \(test accuracy 20.00 %\)"):
        reporter(1, _log(0.1, 0.2))
    last = trial_hook.Reporter(three.ask(), 2, settings)  # epoch 2 of 2: nothing left to save
    last(0, _log(0.1))
    last(1, _log(0.1, 0.2))
    assert [t.intermediate_values for t in three.trials[3:]] == [{0: 0.1, 1: 0.2}, {0: 0.1, 1: 0.2}]


def test_the_threshold_pruner_stops_a_trial_below_it_from_the_first_epoch():
    settings = trial_hook.parse_pruner("threshold:0.5")
    reporter = trial_hook.Reporter(_study(settings).ask(), 5, settings)
    with pytest.raises(trial_hook.Pruned, match=r"threshold pruner \(test accuracy < 0.5\) after epoch 1 of 5"):
        reporter(0, _log(0.4))
    keep = trial_hook.Reporter(_study(settings).ask(), 5, settings)
    keep(0, _log(0.6))


def _request(tmp_path, experiment):
    return RunRequest(job="train", spec=make_spec("smoke", dataset="synthetic"), framework="torch", device="cpu",
                      data_dir=str(tmp_path), out_dir=str(tmp_path), experiment=experiment)


def test_a_child_that_cannot_reach_its_study_trains_unpruned_and_says_so(tmp_path, capsys):
    channel = {"storage": "tune-gone.db", "study": "gone-torch", "trial_id": 0, "pruner": {"kind": "none"}}
    req = _request(tmp_path, {"kind": "tune", "id": "gone-torch", "point": {}, "index": 7, "size": 9, "state": None,
                              "pruning": channel})
    assert trial_hook.reporter(req) is None
    assert "[torch] the study gone-torch is out of reach (KeyError" in capsys.readouterr().err
    assert trial_hook.reporter(_request(tmp_path, None)) is None  # a plain run has no channel


@pytest.mark.parametrize("status, state", [("pruned", "pruned"), ("ok", "complete"), ("below_target", "complete"),
                                           ("diverged", "fail"), ("interrupted", "fail")])
def test_a_trial_record_keeps_the_schema_keys_and_its_state_follows_the_status(tmp_path, status, state):
    experiment = {"kind": "tune", "id": "s-torch", "point": {"batch_size": 32}, "index": 4, "size": 9, "state": None,
                  "pruning": {"storage": "tune-s.db", "study": "s-torch", "trial_id": 5, "pruner": {"kind": "none"}}}
    req = _request(tmp_path, experiment)
    RunRequest.from_dict(json.loads(req.to_json()))  # the channel travels in the request
    rec = build.skeleton(req)
    rec["status"] = status
    got = records.read(build.finish(rec, req, TrainLog(), wall_s=1.0))
    assert got["experiment"] == {**{k: v for k, v in experiment.items() if k != "pruning"}, "state": state}
    sweep_point = {"kind": "sweep", "id": "sweep-1", "point": {"batch_size": 32}, "index": 0, "size": 2, "state": None}
    assert build.skeleton(_request(tmp_path, sweep_point))["experiment"] == sweep_point


def test_the_base_spec_leaves_the_searched_fields_to_the_trials():
    assert tune.space_text() == ("learning_rate log-uniform [0.0001, 0.01], batch_size in {32, 64, 128, 256},"
                                 " beta1 uniform [0.8, 0.95], beta2 uniform [0.99, 0.9999]")
    assert set(tune.distributions()) == set(tune.SEARCH_SPACE)
    with pytest.raises(UserError, match="learning_rate: searched by tune"):
        tune.check_base("smoke", {"learning_rate": 0.01})
    with pytest.raises(UserError, match="tune searches batch sizes up to 256: batch size 256 exceeds the 128"):
        tune.check_base("smoke", {"dataset": "synthetic", "limit_train": 128})
    tune.check_base("smoke", {"dataset": "synthetic"})


# --- the table --------------------------------------------------------------------------------------

def _trial_record(framework, index, state, best, wall, size=4, ttt=None):
    status = {"complete": "ok", "pruned": "pruned", "fail": "failed"}[state]
    rec = make_record(status=status, framework=framework, test_acc=[best / 2, best], wall_s=wall)
    rec["spec"]["target_accuracy"] = 0.99
    rec["spec_hash"] = hash_of(rec["spec"])
    rec["metrics"].update(time_to_target_s=ttt, target_epoch=None if ttt is None else 2)
    rec["experiment"] = {"kind": "tune", "id": f"lenet-{framework}", "index": index, "size": size, "state": state,
                         "point": {"learning_rate": 0.001 * (index + 1), "batch_size": 64}}
    return rec


def test_the_table_counts_trials_compares_the_same_number_of_them_and_lists_the_best():
    recs = [_trial_record("torch", 0, "complete", 0.97, 10.0), _trial_record("torch", 1, "pruned", 0.5, 3.0),
            _trial_record("torch", 2, "complete", 0.99, 12.0, ttt=8.0), _trial_record("torch", 3, "fail", 0.1, 1.0),
            _trial_record("jax", 0, "complete", 0.99, 20.0, ttt=9.0), _trial_record("jax", 1, "complete", 0.99, 30.0, ttt=7.0),
            _trial_record("jax", 2, "pruned", 0.3, 5.0), make_record()]
    table = tune_table.rows(recs, top=2)
    jax, torch = table
    assert (torch["framework"], torch["trials"], torch["complete"], torch["pruned"], torch["fail"]) == ("torch", 4, 2, 1, 1)
    assert (torch["wall_s"], torch["common_trials"], torch["common_wall_s"]) == (26.0, 3, 25.0)
    assert (jax["wall_s"], jax["common_wall_s"]) == (55.0, 55.0)
    assert [t["trial"] for t in torch["best"]] == [2, 0] and [t["trial"] for t in jax["best"]] == [1, 0]  # ties: faster
    text = tune_table.render(table)
    assert "### tuning study lenet" in text
    assert re.search(r"\| torch 2.13.0\+cpu \| lenet-torch \| 4/4 +\| 2 +\| 1 +\| 1 +\| 26.0 +\| 25.0 +\| 99.00 +\| 2 ", text), text
    assert "wall s (first 3)" in text
    assert re.search(r"\| torch +\| 1 +\| 2 +\| 0.003 +\| 64 +\| 99.00 +\| 8.00 \(ep 2\)", text), text
    assert len(tune_table.render(table, "csv").splitlines()) == 1 + 4
    assert json.loads(tune_table.render(table, "json"))[1]["best"][0]["trial"] == 2
    assert tune_table.rows(recs, study="other") == []


def test_trials_cut_short_do_not_count_and_the_table_says_so():
    cut = _trial_record("torch", 1, "fail", 0.3, 2.0, size=3)
    cut["status"] = "interrupted"  # Ctrl-C in trial 1: the study ran another in its place
    cut["framework"]["version"] = None  # a lost record: the child never said
    recs = [cut, _trial_record("torch", 0, "complete", 0.97, 10.0, size=3),
            _trial_record("torch", 2, "pruned", 0.5, 3.0, size=3), _trial_record("torch", 3, "complete", 0.98, 9.0, size=3)]
    (row,) = tune_table.rows(recs)
    assert (row["trials"], row["asked"], row["cut_short"], row["complete"], row["pruned"], row["fail"]) == (3, 3, 1, 2, 1, 0)
    assert (row["wall_s"], row["common_trials"]) == (24.0, 3)  # wall time of all: the cut trial's time was spent
    text = tune_table.render([row])
    assert re.search(r"\| torch 2.13.0\+cpu \| lenet-torch \| 3/3 \(1 cut short\) +\| 2 +\| 1 +\| 0 ", text), text


# --- the study's file, its base spec, its seed -------------------------------------------------------

def _search(**overrides):
    return tune.Search(study="s", trials=3, timeout_s=None, pruner={"kind": "none"}, preset="smoke",
                       overrides={"dataset": "synthetic", **overrides})


def test_a_study_keeps_its_base_spec_and_refuses_another_in_one_line(tmp_path):
    lines = []
    study = tune.open_study(_search(limit_train=2048), "torch", tmp_path, log=lines.append)
    study.tell(study.ask(tune.distributions()), 0.5)
    again = tune.open_study(_search(limit_train=2048), "torch", tmp_path, log=lines.append)
    assert len(again.trials) == 1 and lines == []
    kept = make_spec("smoke", dataset="synthetic", limit_train=2048).hash[:12]
    with pytest.raises(UserError) as e:
        tune.open_study(_search(limit_train=512), "torch", tmp_path)
    assert str(e.value) == (f"study s-torch in {tmp_path / 'tune-s.db'} holds trials of another base spec (spec {kept}:"
                            f" limit_train=2048; this command: limit_train=512): give the same spec flags to resume"
                            f" it, or another --study")
    assert len(tune.open_study(_search(limit_train=2048), "jax", tmp_path).trials) == 0  # each framework its own


def test_a_study_made_before_it_kept_its_spec_takes_this_ones(tmp_path):
    study = optuna.create_study(study_name="s-torch", storage=f"sqlite:///{tmp_path / 'tune-s.db'}",
                                direction="maximize")
    study.tell(study.ask(tune.distributions()), 0.5)
    lines = []
    tune.open_study(_search(), "torch", tmp_path, log=lines.append)
    spec = make_spec("smoke", dataset="synthetic")
    assert lines == [f"[s-torch] this study does not say which base spec its 1 trial(s) ran: it keeps this command's"
                     f" (spec {spec.hash[:12]}) from now on"]
    with pytest.raises(UserError, match="holds trials of another base spec"):
        tune.open_study(_search(epochs=2), "torch", tmp_path)


def test_the_sampler_seed_fits_numpy_for_any_spec_seed(tmp_path):
    assert tune.sampler_seed(42, 3) == 45 and tune.sampler_seed(2**64 - 1, 0) == 2**32 - 1
    assert tune.sampler_seed(2**64 - 1, 1) == 0
    study = tune.open_study(_search(seed=2**64 - 1), "torch", tmp_path)
    for _ in range(2):
        trial = study.ask(tune.distributions())  # TPE's numpy generator is made here
        study.tell(trial, 0.5)
    same = tune.open_study(_search(seed=2**32 - 1), "jax", tmp_path).ask(tune.distributions())
    assert study.trials[0].params == same.params  # reduced, not replaced: seed and seed mod 2**32 draw alike


def test_only_the_lock_holder_reaps_trials_left_running(tmp_path):
    study = tune.open_study(_search(), "torch", tmp_path)
    left = study.ask(tune.distributions())  # a crash left it running
    tune.open_study(_search(), "torch", tmp_path, reap=False)  # no lock: it may be another tune's
    assert [t.state.name for t in study.get_trials()] == ["RUNNING"]
    with tune.study_lock(tmp_path, "s") as held:
        assert held is True
        tune.open_study(_search(), "torch", tmp_path, reap=held)
    (trial,) = study.get_trials()
    assert (trial.number, trial.state.name, trial.user_attrs) == (left.number, "FAIL", {"interrupted": True})
    assert tune.counted(study) == 0


# --- a real search ----------------------------------------------------------------------------------

BASE = ["--framework", "torch", "--dataset", "synthetic", "--preset", "smoke", "--epochs", "2", "--limit-train", "512",
        "--limit-test", "256"]


def _trials(out):
    return sorted((records.read(p) for p in out.glob("*.json")), key=lambda r: r["experiment"]["index"])


@needs_torch
@pytest.mark.slow
def test_a_real_search_prunes_in_the_child_and_resumes_from_its_sqlite_study(tmp_path, synthetic_dir):
    out = tmp_path / "tune"
    cmd = ["tune", *BASE, "--data-dir", synthetic_dir, "--out", out, "--study", "t"]
    done = run_cli(*cmd, "--trials", "3", "--pruner", "threshold:0.3")
    assert done.returncode == 0, done.stderr[-3000:]
    recs = _trials(out)
    assert [r["experiment"]["index"] for r in recs] == [0, 1, 2]
    assert {(r["experiment"]["kind"], r["experiment"]["id"], r["experiment"]["size"]) for r in recs} == {("tune", "t-torch", 3)}
    for r in recs:  # each trial's spec is its sampled point; the pruner ran in the child, after epoch 1
        point = r["experiment"]["point"]
        assert set(point) == set(tune.SEARCH_SPACE) and all(r["spec"][k] == v for k, v in point.items())
        first = r["metrics"]["test_accuracy"][0]
        if first < 0.3:
            assert (r["status"], r["experiment"]["state"], r["metrics"]["epochs_completed"]) == ("pruned", "pruned", 1)
            assert r["error"].startswith("stopped by the threshold pruner (test accuracy < 0.3) after epoch 1 of 2")
        else:
            assert (r["status"], r["experiment"]["state"], r["metrics"]["epochs_completed"]) == ("ok", "complete", 2)
    states = [r["experiment"]["state"] for r in recs]
    assert "pruned" in states and "complete" in states, states  # seed 42 draws both kinds of trial here
    assert "Trial " not in done.stderr and "A new study" not in done.stderr  # Optuna's own INFO lines stay off
    db = out / "tune-t.db"
    study = optuna.load_study(study_name="t-torch", storage=f"sqlite:///{db}")
    assert [t.state.name.lower() for t in study.trials] == states
    for t, r in zip(study.trials, recs):
        assert t.params == r["experiment"]["point"]
        assert t.intermediate_values == dict(enumerate(r["metrics"]["test_accuracy"]))
        if t.state.name == "COMPLETE":
            assert t.value == r["metrics"]["best_test_accuracy"]
    n_pruned = states.count("pruned")
    assert re.search(rf"\| t-torch +\| 3/3 +\| {3 - n_pruned} +\| {n_pruned} +\| 0 ", done.stdout), done.stdout

    more = run_cli(*cmd, "--trials", "4", "--pruner", "none")  # resumes: exactly one new trial
    assert more.returncode == 0, more.stderr[-3000:]
    assert "[t-torch] resuming: 3 of 4 trials already done" in more.stderr
    recs = _trials(out)
    assert [r["experiment"]["index"] for r in recs] == [0, 1, 2, 3]
    assert recs[3]["experiment"]["state"] == "complete" and recs[3]["experiment"]["size"] == 4
    assert recs[3]["experiment"]["point"] not in [r["experiment"]["point"] for r in recs[:3]]
    assert len(optuna.load_study(study_name="t-torch", storage=f"sqlite:///{db}").trials) == 4
    assert re.search(rf"\| t-torch +\| 4/4 +\| {4 - n_pruned} +\| {n_pruned} +\| 0 ", more.stdout), more.stdout

    again = run_cli(*cmd, "--trials", "4", "--no-table")
    assert again.returncode == 0 and "4 of 4 trials already done" in again.stderr and len(_trials(out)) == 4


def test_tune_refuses_bad_input_in_one_line(tmp_path):
    for extra, message in ((["--trials", "0"], "--trials must be >= 1"),
                           (["--trials", "2", "--study", "s" * 300],
                            "--study: a name of 300 bytes is too long: at most 239 here (it names the file"
                            " OUT/tune-NAME.db and SQLite's OUT/tune-NAME.db-journal)"),
                           (["--trials", "2", "--study", "é" * 120], "a name of 240 bytes is too long"),
                           (["--trials", "2", "--study", "a\nb"], "a plain name"),
                           (["--trials", "2", "--study", ""], "a plain name"),
                           (["--trials", "2", "--pruner", "threshold:2"], "the threshold is a test accuracy in (0, 1]"),
                           (["--trials", "2", "--study", "a/b"], "a plain name"),
                           (["--trials", "2", "--lr", "0.01"], "learning_rate: searched by tune"),
                           (["--trials", "2", "--launcher", "torchrun"], "tune runs each trial in one process")):
        done = run_cli("tune", *BASE, *extra, "--out", tmp_path)
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
    assert list(tmp_path.iterdir()) == []


def test_tune_table_reads_the_records_from_disk(tmp_path):
    for rec in (_trial_record("torch", 0, "complete", 0.97, 10.0), _trial_record("torch", 1, "pruned", 0.5, 3.0)):
        records.write(rec, tmp_path)
    done = run_cli("tune-table", tmp_path, "--study", "lenet", "--format", "csv")
    assert done.returncode == 0, done.stderr
    head, row = done.stdout.splitlines()
    assert head.startswith("study,framework,version,asked,trials,complete,pruned,fail,cut_short,wall_s,")
    assert row.startswith("lenet,torch,2.13.0+cpu,4,2,1,1,0,0,13.0,2,13.0,1,0,0.001,64,0.97,")
    assert done.stderr == ("dlbench: note: `tune-table` is now `compare --view tune`; the old name goes in the next"
                           " release\n")
    assert run_cli("compare", tmp_path, "--view", "tune", "--id", "lenet", "--format", "csv").stdout == done.stdout
    empty = run_cli("compare", tmp_path, "--view", "tune", "--id", "other")
    assert empty.returncode == 2 and empty.stderr == f"dlbench: error: no tuning records of study other under {tmp_path}\n"
    blank = run_cli("tune-table", tmp_path, "--study", "")
    assert blank.returncode == 2 and blank.stderr == (
        "dlbench: error: --study '': give a study's name (tune's --study), or leave --study out for every study\n")


@needs_torch
@pytest.mark.slow
def test_a_second_tune_on_a_running_study_stops_in_one_line_and_the_first_finishes_its_trial(tmp_path, synthetic_dir):
    import os
    import socket

    from conftest import ROOT
    from held_child import WAIT_S, Held, start

    out, held = tmp_path / "tune", Held(tmp_path / "hold")
    cmd = ["tune", *BASE, "--data-dir", synthetic_dir, "--out", out, "--study", "t", "--trials", "1", "--pruner", "none"]
    first = start([*cmd, *held.setting()], tmp_path / "first.err", ROOT)
    try:
        held.wait_started(first, tmp_path / "first.err")  # trial 0 is running: its child waits to start training
        db = f"sqlite:///{out / 'tune-t.db'}"
        assert [t.state.name for t in optuna.load_study(study_name="t-torch", storage=db).trials] == ["RUNNING"]
        second = run_cli(*cmd)
        assert second.returncode == 2, second.stderr[-3000:]
        assert re.fullmatch(rf"dlbench: error: another tune is running study t in {re.escape(str(out / 'tune-t.db'))}"
                            rf" \(pid {first.pid} on {re.escape(socket.gethostname())} since [0-9-]+ [0-9:]+ UTC\):"
                            rf" wait for it to end, or choose another --study\n", second.stderr), second.stderr
        assert [t.state.name for t in optuna.load_study(study_name="t-torch", storage=db).trials] == ["RUNNING"]
        held.let_go()
        first.wait(timeout=WAIT_S)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    err = (tmp_path / "first.err").read_text()
    assert first.returncode == 0, err[-3000:]
    (trial,) = optuna.load_study(study_name="t-torch", storage=db).trials
    (rec,) = _trials(out)
    assert (trial.state.name, trial.value) == ("COMPLETE", rec["metrics"]["best_test_accuracy"])
    assert (rec["status"], rec["experiment"]["state"]) == ("ok", "complete")

    # the same study with another base spec: refused, naming the study's
    other = run_cli(*[("1024" if a == "512" else a) for a in cmd])  # --limit-train 1024 instead of 512
    spec = make_spec("smoke", dataset="synthetic", epochs=2, limit_train=512, limit_test=256)
    assert other.returncode == 2 and other.stderr == (
        f"dlbench: error: study t-torch in {out / 'tune-t.db'} holds trials of another base spec (spec {spec.hash[:12]}:"
        f" limit_train=512; this command: limit_train=1024): give the same spec flags to resume it, or another --study\n")
    assert len(_trials(out)) == 1
