"""`sweep` and its table: the axes from the command line, the grid and its id, resume, the table's numbers
(fixture records), and a real tiny sweep on synthetic data that resumes and reruns only what is missing."""

from __future__ import annotations

import json
import re
import shutil
import signal

import pytest

from conftest import needs_torch, run_cli
from runner import records
from runner.errors import UserError
from runner.experiments import lock, resume, sweep
from runner.launch import launchers
from runner.launch.orchestrate import Repeats
from runner.report import sweep_table
from runner.workload.spec import make_spec
from sample_records import make_record

SMOKE = ["--framework", "torch", "--dataset", "synthetic", "--preset", "smoke", "--limit-train", "256",
         "--limit-test", "128", "--parity-steps", "0"]


# --- the axes ---------------------------------------------------------------------------------------

def test_a_comma_makes_an_axis_and_a_single_value_stays_a_fixed_override():
    fixed_set, fixed_options, axes = sweep.split(
        ["batch_size=32,64,128", "beta2=0.99", "learning-rate=1e-3, 2e-3"], ["jax.loop=step,scan", "jax.devices=1"])
    assert fixed_set == ["beta2=0.99"] and fixed_options == ["jax.devices=1"]
    assert [(a.name, a.values, a.framework) for a in axes] == [
        ("batch_size", (32, 64, 128), None), ("learning_rate", (1e-3, 2e-3), None), ("jax.loop", ("step", "scan"), "jax")]


@pytest.mark.parametrize("sets, options, message", [
    (["batch_sise=32,64"], [], "unknown spec field 'batch_sise'"),
    (["batch_size=32,sixty"], [], "batch_size: 'sixty' is not a whole number"),
    (["batch_size=32,,64"], [], "an empty value in the list"),
    (["learning_rate=1e-3,0.001"], [], "0.001 is given twice"),
    (["batch_size=32,64", "batch_size=128,256"], [], "batch_size is an axis twice"),
    (["batch_size=32,64", "batch_size=128"], [], "batch_size is both an axis and a fixed value"),
    ([], ["loop=step,scan"], "expected FRAMEWORK.KEY=V1,V2"),
    ([], ["mxnet.loop=a,b"], "expected FRAMEWORK.KEY=V1,V2"),
])
def test_bad_axes_are_one_line_errors(sets, options, message):
    with pytest.raises(UserError, match=re.escape(message)):
        sweep.split(sets, options)


def test_an_axis_that_changes_nothing_or_a_bad_option_value_is_refused():
    _, _, axes = sweep.split([], ["jax.loop=step,scan"])
    with pytest.raises(UserError, match="jax is not among the frameworks that run \\(torch\\): the axis would change nothing"):
        sweep.check_axes(axes, set(), ["torch"], {})
    _, _, axes = sweep.split([], ["jax.loop=step,fast"])
    with pytest.raises(UserError, match="jax option loop='fast': choose from step, scan"):
        sweep.check_axes(axes, set(), ["jax"], {})
    _, _, axes = sweep.split(["batch_size=32,64"], [])
    with pytest.raises(UserError, match="already set by --batch-size"):
        sweep.check_axes(axes, {"batch_size"}, ["torch"], {})


def test_the_grid_is_the_cartesian_product_and_option_axes_only_concern_their_framework():
    _, _, axes = sweep.split(["batch_size=32,64"], ["jax.loop=step,scan"])
    plan = sweep.plan("smoke", {"dataset": "synthetic"}, {"jax": {"devices": "1"}}, axes, ["torch", "jax"])
    assert plan.size == 4
    assert [(r.index, r.framework, r.point) for r in plan.runs] == [
        (0, "torch", {"batch_size": 32}), (0, "jax", {"batch_size": 32, "jax.loop": "step"}),
        (1, "jax", {"batch_size": 32, "jax.loop": "scan"}),  # torch ran batch 32 at point 0: once is enough
        (2, "torch", {"batch_size": 64}), (2, "jax", {"batch_size": 64, "jax.loop": "step"}),
        (3, "jax", {"batch_size": 64, "jax.loop": "scan"})]
    assert plan.runs[2].options == {"devices": "1", "loop": "scan"} and plan.runs[0].options == {}
    assert plan.runs[0].spec == make_spec("smoke", dataset="synthetic", batch_size=32)
    assert len({r.spec.hash for r in plan.runs}) == 2
    assert plan.experiment(plan.runs[2]) == {"kind": "sweep", "id": plan.id, "point": {"batch_size": 32, "jax.loop": "scan"},
                                             "index": 1, "size": 4, "state": None}


def test_the_grid_id_is_stable_and_names_the_base_the_options_and_the_axes():
    def plan_id(sets, overrides=None, options=None):
        _, _, axes = sweep.split(sets, [])
        return sweep.plan("smoke", overrides or {}, options or {}, axes, ["torch"]).id

    first = plan_id(["batch_size=32,64"])
    assert re.fullmatch(r"sweep-[0-9a-f]{12}", first) and plan_id(["batch_size=32,64"]) == first
    assert len({first, plan_id(["batch_size=32,128"]), plan_id(["batch_size=32,64"], {"epochs": 2}),
                plan_id(["batch_size=32,64"], options={"torch": {"x": "1"}})}) == 4


def test_a_grid_point_that_is_no_valid_spec_is_refused_before_anything_runs():
    _, _, axes = sweep.split(["batch_size=64,4096"], [])
    with pytest.raises(UserError, match="grid point 2 \\(batch_size=4096\\): batch size 4096 exceeds the 2048"):
        sweep.plan("smoke", {"dataset": "synthetic"}, {}, axes, ["torch"])


def _done(plan, run, status="ok"):
    rec = make_record(status=status, framework=run.framework)
    rec["spec"], rec["spec_hash"] = run.spec.to_dict(), run.spec.hash
    rec["experiment"] = plan.experiment(run)
    return json.loads(json.dumps(rec))  # as read back from disk


def test_resume_skips_what_is_done_and_runs_the_missing_repeats():
    _, _, axes = sweep.split(["batch_size=32,64,128"], [])
    plan = sweep.plan("smoke", {"dataset": "synthetic"}, {}, axes, ["torch", "jax"])
    first, second = plan.runs[0], plan.runs[1]  # torch and jax at batch 32
    other = sweep.plan("smoke", {"dataset": "synthetic", "epochs": 2}, {}, axes, ["torch"])
    recs = [_done(plan, first), _done(plan, second, status="failed"), _done(other, other.runs[2])]
    here, process = resume.of(recs[0]), launchers.get("process")
    left = sweep.todo(plan, recs, Repeats(minimum=1), here, process)
    assert [(r.framework, r.index) for r, _ in left] == [("jax", 0), ("torch", 1), ("jax", 1), ("torch", 2), ("jax", 2)]
    left = sweep.todo(plan, recs + [_done(plan, first)], Repeats(minimum=3), here, process)
    assert [(r.framework, r.index, rep.minimum) for r, rep in left][:2] == [("torch", 0, 1), ("jax", 0, 3)]


def _elsewhere(rec, field):
    """`rec` as another machine, or another way of running, would have made it."""
    rec = json.loads(json.dumps(rec))
    if field == "platform":
        rec["platform"]["name"] = "cuda"
    elif field == "device":
        rec["device"]["requested"] = "cpu"
    elif field == "hardware":
        rec["hardware"]["cpu"]["physical_cores"] = 64
    elif field == "gpus":
        rec["hardware"]["gpus"] = [{"name": "NVIDIA H100"}]
    elif field == "launcher":
        rec["launcher"] = {"name": "container", "settings": {"image": "dlbench:cpu", "engine": None, "gpus": None,
                                                             "python": "python", "grace_s": 120.0}}
    elif field == "python":
        rec["launcher"]["settings"] = {"python": "/opt/other/bin/python", "grace_s": 120.0}
    elif field == "world_size":
        rec["parallel"].update(world_size=2, devices=2)
    return rec


@pytest.mark.parametrize("field", ["platform", "device", "hardware", "gpus", "launcher", "python", "world_size"])
def test_resume_counts_only_this_machines_own_records(field):
    _, _, axes = sweep.split(["batch_size=32,64"], [])
    plan = sweep.plan("smoke", {"dataset": "synthetic"}, {}, axes, ["torch"])
    mine = [_done(plan, run) for run in plan.runs]
    for rec in mine:
        rec["launcher"] = {"name": "process", "settings": {"python": None, "grace_s": 120.0}}
    here, process = resume.of(mine[0]), launchers.get("process")
    assert sweep.todo(plan, mine, Repeats(minimum=1), here, process) == []
    theirs = [_elsewhere(rec, field) for rec in mine]
    left = sweep.todo(plan, theirs, Repeats(minimum=1), here, process)
    assert [(r.framework, r.index, rep.minimum) for r, rep in left] == [("torch", 0, 1), ("torch", 1, 1)]
    assert sweep.elsewhere(plan, theirs + mine, here, process) == 2


def test_a_launcher_setting_that_only_says_how_long_to_wait_still_resumes():
    _, _, axes = sweep.split(["batch_size=32,64"], [])
    plan = sweep.plan("smoke", {"dataset": "synthetic"}, {}, axes, ["torch"])
    recs = [_done(plan, run) for run in plan.runs]
    for rec in recs:
        rec["launcher"] = {"name": "process", "settings": {"python": None, "grace_s": 30.0}}
    here = resume.here(recs[0]["platform"], recs[0]["device"]["requested"], launchers.get("process"))
    here = resume.Machine(here.platform, here.device, resume.of(recs[0]).hardware, here.launcher)
    assert sweep.todo(plan, recs, Repeats(minimum=1), here, launchers.get("process")) == []


def test_the_planned_world_size_is_the_launchers_or_the_device_option():
    assert resume.world_size(launchers.get("process"), {}) == 1
    assert resume.world_size(launchers.get("process"), {"devices": "4"}) == 4
    assert resume.world_size(launchers.get("process"), {"devices": "all"}) is None  # only the run can tell
    assert resume.world_size(launchers.get("torchrun", nproc_per_node=2, nnodes=3), {}) == 6


def test_resume_reads_the_records_in_out_not_in_its_subfolders(tmp_path):
    _, _, axes = sweep.split(["batch_size=32,64"], [])
    plan = sweep.plan("smoke", {"dataset": "synthetic"}, {}, axes, ["torch"])
    first, second = (_done(plan, run) for run in plan.runs)
    records.write(first, tmp_path)
    records.write(second, tmp_path / "colleague")  # their copy: not this folder's
    (tmp_path / "broken.json").write_text("{")
    assert [r["run_id"] for r in resume.records_in(tmp_path)] == [first["run_id"]]
    assert resume.records_in(tmp_path / "nothing-yet") == []


# --- one sweep at a time per --out --------------------------------------------------------------------

HOLD = """
import sys, time
from pathlib import Path
from runner.experiments import lock
with lock.held(Path(sys.argv[1]), "busy{holder}"):
    Path(sys.argv[2]).touch()
    time.sleep(600)
"""


def test_the_lock_names_its_holder_and_a_killed_holder_never_blocks(tmp_path):
    import subprocess
    import sys
    import time

    from conftest import ROOT

    path, ready = tmp_path / "out" / ".sweep.lock", tmp_path / "ready"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path), str(ready)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 300
        while not ready.exists():
            assert holder.poll() is None and time.monotonic() < deadline, f"the holder ended: {holder.poll()}"
            time.sleep(0.1)
        with pytest.raises(UserError, match=rf"^busy \(pid {holder.pid} on .+ since .+ UTC\)$"):
            with lock.held(path, "busy{holder}"):
                pass
    finally:
        holder.kill()  # SIGKILL: no chance to clean up; the file stays behind
        holder.wait()
    assert path.exists()
    with lock.held(path, "busy{holder}") as held:
        assert held is True
    with lock.held(path, "busy{holder}") as held:  # and once more: letting go leaves no lock
        assert held is True


# --- the table --------------------------------------------------------------------------------------

def _sweep_record(point, index, framework="torch", epochs=(2.0, 1.0, 1.2), data=None, fn=5.0, best_test=0.9,
                  ttt=None, target_epoch=None, status="ok", target=0.99, parity="pass"):
    rec = make_record(status=status, framework=framework, epochs=list(epochs), steady=1.1,
                      test_acc=[0.5, best_test - 0.1, best_test], train_acc=[0.4, 0.8, 0.95], loss=[1.0, 0.5, 0.3],
                      train_fn_s=fn, epoch_data_s=data, parity=parity)
    rec["spec"]["target_accuracy"] = target
    rec["metrics"].update(time_to_target_s=ttt, target_epoch=target_epoch, images_per_s=1000.0)
    rec["experiment"] = {"kind": "sweep", "id": "sweep-abc", "point": point, "index": index, "size": 2, "state": None}
    return rec


def test_the_table_has_one_row_per_framework_and_point_with_the_seed_study_columns():
    recs = [_sweep_record({"batch_size": 32}, 0, fn=5.0, ttt=3.0, target_epoch=2),
            _sweep_record({"batch_size": 32}, 0, fn=7.0, ttt=4.0, target_epoch=2, epochs=(2.0, 1.0, 1.4)),
            _sweep_record({"batch_size": 32}, 0, status="failed"),
            _sweep_record({"batch_size": 64}, 1, data=[0.25, 0.5, 0.25], best_test=0.95),
            _sweep_record({"batch_size": 64}, 1, framework="jax", parity="fail"),
            make_record()]  # a plain run: not part of any sweep
    table = sweep_table.rows(recs)
    assert [(r["framework"], r["point"]) for r in table] == [
        ("jax", {"batch_size": 64}), ("torch", {"batch_size": 32}), ("torch", {"batch_size": 64})]
    row = table[1]
    assert (row["n"], row["runs"], row["statuses"]) == (2, 3, {"failed": 1, "ok": 2})
    assert row["train_s"] == pytest.approx(4.3)  # median of the runs' sums 4.2 and 4.4
    assert (row["train_fn_s"], row["time_to_target_s"], row["target_epoch"]) == (6.0, 3.5, 2)
    assert row["data_s"] == "resident" and table[2]["data_s"] == 1.0
    assert row["best_test_accuracy"] == pytest.approx(0.9) and row["best_train_accuracy"] == 0.95
    assert row["mean_train_loss"] == pytest.approx(0.6) and row["steady_epoch_s"] == 1.1
    text = sweep_table.render(table)
    assert "### sweep-abc: batch_size (2 points)" in text
    assert "note: batch_size changes the math: per-epoch times are not the same work; compare time to target (99 %)" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("| torch") and "| 32 " in ln)
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells == ["torch 2.13.0+cpu (cpu)", "32", "95.00", "90.00", "resident", "4.30", "6.00", "0.6000",
                     "1.100", "3.50 (ep 2)", "1,000", "pass", "2/3 (1 failed)"]
    assert [r["parity"] for r in table] == ["fail", "pass", "pass"]  # the gate's verdict per point, as compare's
    csv_lines = sweep_table.render(table, "csv").splitlines()
    assert csv_lines[0].startswith("sweep,framework,version,device,index,size,batch_size,spec_hash,")
    assert json.loads(sweep_table.render(table, "json"))[1]["train_fn_s"] == 6.0


def test_only_fields_that_change_the_math_get_the_note():
    same = [_sweep_record({"eval_batch_size": 500, "jax.loop": "scan"}, 0)]
    assert sweep_table.notes(sweep_table.rows(same)) == []
    two = [_sweep_record({"batch_size": 32, "learning_rate": 0.002}, 0, target=None)]
    assert sweep_table.notes(sweep_table.rows(two)) == [
        "batch_size, learning_rate change the math: per-epoch times are not the same work;"
        " compare accuracy; a time to target needs --target-accuracy"]


def test_the_table_escapes_what_records_carry():
    rec = _sweep_record({"batch_size": 32}, 0)
    rec["experiment"]["id"] = "sweep|<b>"
    text = sweep_table.render(sweep_table.rows([rec]))
    assert "sweep&#124;&lt;b&gt;" in text and "<b>" not in text


# --- real sweeps ------------------------------------------------------------------------------------

def _records(out):
    return {p.name: records.read(p) for p in sorted(out.glob("*.json"))}


@needs_torch
@pytest.mark.slow
def test_a_real_sweep_records_each_point_resumes_and_reruns_only_what_is_missing(tmp_path, synthetic_dir):
    out = tmp_path / "sweep"
    cmd = ["sweep", *SMOKE, "--data-dir", synthetic_dir, "--set", "batch_size=32,64", "--out", out]
    done = run_cli(*cmd)
    assert done.returncode == 0, done.stderr[-3000:]
    recs = list(_records(out).values())
    assert len(recs) == 2 and len({r["spec_hash"] for r in recs}) == 2
    by_batch = {r["experiment"]["point"]["batch_size"]: r for r in recs}
    sweep_id = by_batch[32]["experiment"]["id"]
    for index, batch in enumerate((32, 64)):
        rec = by_batch[batch]
        assert rec["experiment"] == {"kind": "sweep", "id": sweep_id, "point": {"batch_size": batch}, "index": index,
                                     "size": 2, "state": None}
        assert rec["spec"]["batch_size"] == batch and rec["status"] == "ok"
    assert "[point 1/2] batch_size=32: torch" in done.stderr and "[point 2/2] batch_size=64: torch" in done.stderr
    # the table printed at the end: its numbers are the records'
    for batch, rec in by_batch.items():
        row = next(ln for ln in done.stdout.splitlines() if ln.startswith("| torch") and f"| {batch} " in ln)
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[2] == f"{100 * rec['metrics']['best_train_accuracy']:.2f}"
        assert cells[3] == f"{100 * rec['metrics']['best_test_accuracy']:.2f}"
        assert cells[4] == "resident"
        assert cells[5] == f"{sum(rec['timing']['epoch_train_s']):.2f}"
        assert cells[6] == f"{rec['timing']['train_fn_s']:.2f}"
        assert cells[7] == f"{rec['metrics']['mean_train_loss']:.4f}"
        assert cells[-1] == "1/1"
    assert f"### {sweep_id}: batch_size (2 points)" in done.stdout
    assert "note: batch_size changes the math" in done.stdout

    again = run_cli(*cmd)  # the same command: nothing left to run
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"sweep {sweep_id}: 2 of 2 point x framework runs already done in {out}, skipped; nothing left to run" in again.stderr
    assert "[point" not in again.stderr and len(_records(out)) == 2
    assert again.stdout == done.stdout  # the same table

    # The same records seen from another platform (and so another device asked for): not its runs.
    other = tmp_path / "other"
    shutil.copytree(out, other)
    elsewhere = run_cli(*cmd[:-1], other, "--platform", "cpu", "--no-table")
    assert elsewhere.returncode == 0, elsewhere.stderr[-3000:]
    assert "already done" not in elsewhere.stderr, elsewhere.stderr
    assert (f"sweep {sweep_id}: 2 completed record(s) of this sweep in {other} were made elsewhere (another platform,"
            f" device, hardware, launcher or world size): not counted as done here") in elsewhere.stderr
    assert "[point 1/2] batch_size=32: torch" in elsewhere.stderr and "[point 2/2] batch_size=64: torch" in elsewhere.stderr
    assert sorted(r["platform"]["name"] for r in _records(other).values()).count("cpu") == 2

    (name64,) = [n for n, r in _records(out).items() if r["spec"]["batch_size"] == 64]
    (out / name64).unlink()
    third = run_cli(*cmd)
    assert third.returncode == 0, third.stderr[-3000:]
    assert "1 of 2 point x framework runs already done" in third.stderr
    assert "[point 1/2]" not in third.stderr and "[point 2/2] batch_size=64: torch" in third.stderr
    recs = list(_records(out).values())
    assert sorted(r["spec"]["batch_size"] for r in recs) == [32, 64]
    assert {r["experiment"]["id"] for r in recs} == {sweep_id}

    table = run_cli("compare", out, "--format", "json")
    rows = json.loads(table.stdout)
    assert [(r["point"], r["n"]) for r in rows] == [({"batch_size": 32}, 1), ({"batch_size": 64}, 1)]


@needs_torch
@pytest.mark.slow
def test_ctrl_c_stops_the_sweep_after_recording_the_running_point(tmp_path, synthetic_dir):
    import subprocess
    import sys

    from conftest import ROOT

    out = tmp_path / "sweep"
    proc = subprocess.Popen([sys.executable, "-m", "runner", "sweep", *SMOKE, "--epochs", "200", "--data-dir",
                             str(synthetic_dir), "--set", "batch_size=32,64", "--out", str(out)], cwd=ROOT,
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
    seen = []
    try:
        for line in proc.stderr:
            seen.append(line)
            if "epoch   2/200" in line:
                proc.send_signal(signal.SIGINT)
                break
        rest = proc.communicate(timeout=120)[1]
        assert proc.returncode == 130, "".join(seen) + rest
    finally:
        proc.kill()
    (rec,) = _records(out).values()
    assert rec["status"] == "interrupted" and rec["experiment"]["point"] == {"batch_size": 32}
    assert "interrupted after 1 run(s); the same command resumes it" in rest and "[point 2/2]" not in rest


@needs_torch
@pytest.mark.slow
def test_a_second_sweep_into_the_same_out_stops_in_one_line_and_a_killed_first_never_blocks(tmp_path, synthetic_dir):
    import os
    import socket

    from conftest import ROOT
    from held_child import Held, start

    out, held = tmp_path / "sweep", Held(tmp_path / "hold")
    cmd = ["sweep", *SMOKE, "--data-dir", synthetic_dir, "--set", "batch_size=32,64", "--out", out, "--no-table"]
    first = start([*cmd, *held.setting()], tmp_path / "first.err", ROOT)
    try:
        held.wait_started(first, tmp_path / "first.err")  # its first run's child is waiting: the sweep is running
        second = run_cli(*cmd)
        assert second.returncode == 2, second.stderr[-3000:]
        assert re.fullmatch(rf"dlbench: error: another sweep is running into {re.escape(str(out))} \(pid {first.pid}"
                            rf" on {re.escape(socket.gethostname())} since [0-9-]+ [0-9:]+ UTC\): wait for it to end,"
                            rf" or choose another --out\n", second.stderr), second.stderr
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the sweep and its waiting child: no chance to clean up
        first.wait()
    assert (out / sweep.LOCK).exists() and _records(out) == {}
    third = run_cli(*cmd)  # the dead sweep's lock file does not block
    assert third.returncode == 0, third.stderr[-3000:]
    assert "[point 1/2] batch_size=32: torch" in third.stderr and "[point 2/2] batch_size=64: torch" in third.stderr
    assert sorted(r["status"] for r in _records(out).values()) == ["ok", "ok"]


def test_sweep_without_an_axis_or_with_a_bad_one_says_so_in_one_line(tmp_path):
    for extra, message in ((["--set", "batch_size=64"], "sweep needs at least one axis"),
                           (["--set", "batch_size=32,x"], "'x' is not a whole number"),
                           (["--set", "batch_size=32,64", "--batch-size", "16"], "already set by --batch-size")):
        done = run_cli("sweep", *SMOKE, *extra, "--out", tmp_path)
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
        assert done.stderr.startswith("dlbench: error: ")
    assert list(tmp_path.glob("*.json")) == []


def test_sweep_table_says_when_there_is_no_sweep(tmp_path):
    records.write(make_record(), tmp_path)
    done = run_cli("compare", tmp_path, "--view", "sweep")
    assert done.returncode == 2 and done.stderr == f"dlbench: error: no sweep records under {tmp_path}\n"
    old = run_cli("sweep-table", tmp_path)  # the old name, for one release: the same one-line error
    assert old.returncode == 2 and old.stderr == done.stderr


def test_sweep_table_refuses_an_empty_id(tmp_path):
    rec = make_record()
    rec["experiment"] = {"kind": "sweep", "id": "sweep-abc", "point": {"batch_size": 64}, "index": 0, "size": 2,
                         "state": None}
    records.write(rec, tmp_path)
    for empty in ("", " "):
        done = run_cli("compare", tmp_path, "--view", "sweep", "--id", empty)
        assert done.returncode == 2 and done.stdout == ""
        assert done.stderr == (f"dlbench: error: --id {empty!r}: give a sweep id (the sweep-... the sweep printed)"
                               f" or a tuning study's name, or leave --id out for all\n")
