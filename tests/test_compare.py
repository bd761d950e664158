import csv
import io
import json

import pytest

from conftest import run_cli
from sample_records import make_record
from runner.records import collection
from runner.report import compare
from runner import records
from runner.errors import UserError


def test_repeats_aggregate_to_median_and_range():
    recs = [make_record(steady=s, epochs=[f, s]) for s, f in ((2.0, 5.0), (3.0, 6.0), (2.5, 7.0))]
    (row,) = compare.rows(recs)
    assert (row["runs"], row["completed"]) == (3, 3)
    assert (row["steady_epoch_s"], row["steady_epoch_s_min"], row["steady_epoch_s_max"]) == (2.5, 2.0, 3.0)
    assert row["first_epoch_s"] == 6.0


def test_groups_by_framework_device_and_version():
    recs = [make_record(steady=1.0), make_record(device="cuda", steady=0.1),
            make_record(version="2.12.0", steady=1.1), make_record(framework="jax", version="0.10.2", steady=1.2)]
    got = [(r["framework"], r["version"], r["device"]) for r in compare.rows(recs)]
    assert got == [("torch", "2.13.0+cpu", "cuda"), ("torch", "2.13.0+cpu", "cpu"),
                   ("torch", "2.12.0", "cpu"), ("jax", "0.10.2", "cpu")]  # fastest first


def test_different_spec_hashes_never_share_a_row():
    a = make_record(steady=1.0)
    b = make_record(steady=1.0, spec_hash="b" * 64)
    table = compare.rows([a, b])
    assert len(table) == 2 and {r["spec_hash"] for r in table} == {a["spec_hash"], "b" * 64}
    text = compare.render(table)
    assert text.count("### ") == 2 and f"(spec {'b' * 12})" in text


def test_failed_runs_are_counted_but_not_timed():
    recs = [make_record(steady=2.0), make_record(status="failed", steady=99.0),
            make_record(status="interrupted", steady=50.0)]
    (row,) = compare.rows(recs)
    assert (row["runs"], row["completed"], row["steady_epoch_s"]) == (3, 1, 2.0)
    assert row["statuses"] == {"failed": 1, "interrupted": 1, "ok": 1}
    assert "1/3 (1 failed, 1 interrupted)" in compare.render([row])


def test_below_target_is_marked():
    (row,) = compare.rows([make_record(status="below_target", steady=2.0)])
    assert row["below_target"] and row["completed"] == 1
    assert "1 below_target" in compare.render([row])


def test_seed001_columns_are_derivable():
    r = make_record(epochs=[3.0, 2.0, 2.0], train_acc=[0.9, 0.97, 0.95], loss=[0.6, 0.3, 0.3],
                    data_load_s=1.5, train_fn_s=9.0)
    (row,) = compare.rows([r])
    assert row["best_train_accuracy"] == 0.97
    assert row["data_load_s"] == 1.5
    assert row["total_train_s"] == 7.0
    assert row["train_fn_s"] == 9.0
    assert row["mean_train_loss"] == pytest.approx(0.4)


def test_load_skips_and_counts_bad_files(tmp_path):
    good = records.write(make_record(steady=1.0), tmp_path / "a")
    (tmp_path / "a" / "garbage.json").write_text("{{{")
    (tmp_path / "a" / "truncated.json").write_text(good.read_text()[:200])
    (tmp_path / "a" / "foreign.json").write_text(json.dumps({"hello": "world"}))
    (tmp_path / "a" / "future.json").write_text(json.dumps({**make_record(), "schema_version": 99}))
    (tmp_path / "a" / "notes.txt").write_text("not json at all")
    recs, skipped = collection.load([tmp_path])
    assert len(recs) == 1
    assert sorted(p.rsplit("/", 1)[1] for p, _ in skipped) == ["foreign.json", "future.json", "garbage.json",
                                                               "truncated.json"]


def test_records_in_an_archive_folder_stay_out_unless_that_folder_is_named(tmp_path):
    """results/archive/ keeps superseded runs for history: not in the table, said once, readable by name."""
    records.write(make_record(steady=1.0), tmp_path)
    records.write(make_record(steady=2.0), tmp_path / "archive")
    records.write(make_record(steady=3.0), tmp_path / "archive" / "2026-11")
    recs, skipped = collection.load([tmp_path])
    assert [r["timing"]["steady_epoch_s"] for r in recs] == [1.0]
    assert skipped == [(str(tmp_path / "archive"), "2 file(s) of superseded runs not read: name that folder to read them")]
    recs, skipped = collection.load([tmp_path / "archive"])
    assert sorted(r["timing"]["steady_epoch_s"] for r in recs) == [2.0, 3.0] and skipped == []


def test_load_refuses_a_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError):
        collection.load([tmp_path / "nope"])


def test_formats():
    table = compare.rows([make_record(steady=2.0, epochs=[4.0, 2.0], test_acc=[0.98, 0.991])])
    md = compare.render(table, "markdown")
    assert "| torch 2.13.0+cpu |" in md and "99.10" in md
    rows = list(csv.DictReader(io.StringIO(compare.render(table, "csv"))))
    assert rows[0]["framework"] == "torch" and float(rows[0]["steady_epoch_s"]) == 2.0
    assert json.loads(compare.render(table, "json"))[0]["best_test_accuracy"] == 0.991
    assert compare.render([], "markdown") == "(no records)"


def test_parity_verdict_per_row_and_a_failed_row_is_marked_not_comparable():
    recs = [make_record(steady=1.0), make_record(steady=1.1, parity="fail"),   # one bad run taints the row
            make_record(framework="jax", version="0.10.2", steady=2.0),
            make_record(framework="tensorflow", version="2.21.0", steady=1.5, parity=None)]
    got = {r["framework"]: r["parity"] for r in compare.rows(recs)}
    assert got == {"torch": "fail", "jax": "pass", "tensorflow": "unchecked"}
    text = compare.render(compare.rows(recs))
    torch_line = next(line for line in text.splitlines() if line.startswith("| torch"))
    assert "FAIL: not comparable" in torch_line


def test_backend_options_split_rows_and_show_in_the_label():
    recs = [make_record(framework="jax", version="0.10.2", steady=2.0, options={"loop": "step"}),
            make_record(framework="jax", version="0.10.2", steady=6.0, options={"loop": "scan"}),
            make_record(framework="jax", version="0.10.2", steady=2.2, options={"loop": "step"})]
    table = compare.rows(recs)
    assert [(r["options"], r["runs"]) for r in table] == [("loop=step", 2), ("loop=scan", 1)]
    assert "jax 0.10.2 (loop=scan)" in compare.render(table)


def _with_target(rec, best, reached_s=None, epoch=None, target=0.99):
    """`rec` under a spec with a target, its best accuracy `best`, reaching it at `reached_s`."""
    rec["spec"]["target_accuracy"] = target
    rec["metrics"].update(best_test_accuracy=best, time_to_target_s=reached_s, target_epoch=epoch)
    rec["status"] = "ok" if best >= target else "below_target"
    return rec


def test_hardware_label_reads_the_v3_probe():
    r = make_record()
    r["hardware"]["cpu"].update(brand="AMD EPYC 7763", physical_cores=64)
    r["hardware"]["gpus"] = None  # NVML unreadable: nothing to list
    assert compare.hardware_label(r) == "AMD EPYC 7763 x64"
    r["hardware"]["gpus"] = [{"name": "NVIDIA H100"}, {"name": "NVIDIA H100"}]
    assert compare.hardware_label(r) == "AMD EPYC 7763 x64 + 2x NVIDIA H100"
    r["hardware"]["cpu"].update(brand=None, physical_cores=None)
    r["hardware"]["gpus"] = []
    assert compare.hardware_label(r) == "unknown CPU x?"


def test_repeats_show_the_median_with_its_bootstrap_ci_cv_and_n():
    (row,) = compare.rows([make_record(steady=s) for s in (2.0, 3.0, 2.5)])
    # n = 3: the exact bootstrap distribution of the median puts 7/27 > 2.5 % on each extreme.
    assert row["n"] == 3 and row["steady_epoch_s"] == 2.5
    assert (row["steady_epoch_s_ci_low"], row["steady_epoch_s_ci_high"]) == pytest.approx((2.0, 3.0))
    assert row["steady_epoch_s_cv"] == pytest.approx(0.2)  # stdev 0.5 / mean 2.5
    text = compare.render([row])
    assert "s/epoch (median [95% CI])" in text and "| 2.50 [2.00-3.00] " in text and "| 20.0 " in text


def test_one_run_is_an_anecdote_and_says_so():
    (row,) = compare.rows([make_record(steady=2.0)])
    assert row["n"] == 1 and row["steady_epoch_s_ci_low"] is None and row["steady_epoch_s_cv"] is None
    line = compare.render([row]).splitlines()[-1]
    assert "| 2.00 " in line and "[" not in line and "n=1: no CI" in line


def test_noisy_rows_are_marked_above_the_threshold():
    noisy = [make_record(steady=s) for s in (2.0, 3.0, 2.5)]                                  # CV 20 %
    calm = [make_record(framework="jax", version="0.10.2", steady=s) for s in (2.0, 2.02, 2.04)]  # CV 1 %
    table = {r["framework"]: r for r in compare.rows(noisy + calm)}
    assert table["torch"]["noisy"] and not table["jax"]["noisy"]
    text = compare.render(list(table.values()))
    assert "noisy (CV 20.0 %)" in text and text.count("noisy") == 1
    assert not any(r["noisy"] for r in compare.rows(noisy + calm, noisy_cv=0.25))


def test_below_target_is_the_median_best_accuracy_against_the_spec_target():
    missed = [_with_target(make_record(steady=2.0), best=b) for b in (0.985, 0.987)]
    (row,) = compare.rows(missed)
    assert row["below_target"] and row["time_to_target_s"] is None and row["target_reached"] == 0
    text = compare.render([row])
    assert "below target 99 %" in text and "not reached" in text and "2 below_target" in text
    # One run of three missed: the row (median 0.991) reached it, and says how many runs did.
    mixed = [_with_target(make_record(steady=2.0), *args) for args in ((0.991, 30.0, 6), (0.992, 34.0, 7), (0.989,))]
    (row,) = compare.rows(mixed)
    assert not row["below_target"] and row["target_reached"] == 2 and row["time_to_target_s"] == 32.0
    text = compare.render([row])
    assert "32.00 (ep 6.5, 2/3 runs)" in text and "below target" not in text and "1 below_target" in text


def _three_frameworks():
    return ([make_record(steady=s) for s in (2.0, 2.2, 2.4)]
            + [make_record(framework="jax", version="0.10.2", steady=s) for s in (3.0, 3.3, 3.6)]
            + [make_record(framework="tensorflow", version="2.21.0", steady=4.4, options={"loop": "epoch"})])


def test_baseline_ratio_with_its_ci():
    table = {r["framework"]: r for r in compare.rows(_three_frameworks(), baseline="framework=torch,device=cpu")}
    assert table["torch"]["baseline"] and table["torch"]["ratio_to_baseline"] == 1.0
    jax = table["jax"]
    assert jax["ratio_to_baseline"] == pytest.approx(1.5)  # 3.3 / 2.2
    assert 3.0 / 2.4 <= jax["ratio_ci_low"] <= 1.5 <= jax["ratio_ci_high"] <= 3.6 / 2.0
    tf = table["tensorflow"]
    assert tf["ratio_to_baseline"] == pytest.approx(2.0) and tf["ratio_ci_low"] is None  # n = 1: no CI
    text = compare.render(list(table.values()))
    assert "s/epoch × baseline" in text and "1.00 (baseline)" in text
    assert f"| 1.50 [{jax['ratio_ci_low']:.2f}-{jax['ratio_ci_high']:.2f}] " in text and "| 2.00 " in text
    assert "×" not in compare.render(compare.rows(_three_frameworks()))  # no --baseline, no column


def test_baseline_options_may_hold_commas_and_match_in_any_order():
    recs = _three_frameworks()
    recs[-1]["framework"]["options"] = {"loop": "epoch", "jit_compile": "off"}
    table = compare.rows(recs, baseline="framework=tensorflow,options=loop=epoch,jit_compile=off")
    assert [r["framework"] for r in table if r["baseline"]] == ["tensorflow"]
    assert compare.parse_baseline("options=a=1,b=2,device=cpu") == {"options": "a=1,b=2", "device": "cpu"}


def test_baseline_is_per_spec_and_a_block_without_it_shows_a_dash():
    other = make_record(steady=9.0, framework="jax", version="0.10.2", spec_hash="b" * 64)
    table = compare.rows(_three_frameworks() + [other], baseline="framework=torch")
    (lonely,) = [r for r in table if r["spec_hash"] == "b" * 64]
    assert lonely["ratio_to_baseline"] is None and not lonely["baseline"]
    block = compare.render(table).split("### ")[2]
    assert block.splitlines()[-1].split("|")[9].strip() == "-"


@pytest.mark.parametrize("baseline, message", [
    ("framework=caffe", "matches no row; the rows are: framework=torch"),
    ("device=cpu", "matches 3 rows of spec"),
    ("framework", "'framework' is not KEY=VALUE"),
    ("gpu=h100", "'gpu=h100' is not KEY=VALUE"),
    ("framework=torch,framework=jax", "framework given twice"),
    ("", "is not KEY=VALUE"),
])
def test_baseline_errors_are_user_errors(baseline, message):
    with pytest.raises(UserError, match="--baseline") as e:
        compare.rows(_three_frameworks(), baseline=baseline)
    assert message in str(e.value) and "\n" not in str(e.value)


def _resources(peak_rss, device_peak):
    """The two fields of record["resources"] compare reads (the sampler's other fields: see the schema)."""
    return {"host": {"peak_rss_bytes": peak_rss}, "device_peak_memory_bytes": device_peak}


def test_energy_and_memory_medians():
    recs = [make_record(steady=2.0) for _ in range(3)]
    for r, joules, rss in zip(recs, (100.0, None, 300.0), (1e9, 2e9, 4e9)):
        r["energy"].update(joules=joules, method="RAPL powercap counter" if joules else "none")
        r["resources"] = _resources(rss, int(rss / 10))
    (row,) = compare.rows(recs)
    assert (row["energy_j"], row["energy_runs"], row["energy_method"]) == (200.0, 2, "RAPL powercap counter")
    assert (row["peak_rss_bytes"], row["device_peak_memory_bytes"]) == (2e9, 2e8)
    assert "| 200 (RAPL powercap counter) " in compare.render([row])
    plain = compare.rows([make_record(steady=2.0)])
    assert plain[0]["energy_j"] is None and "energy" not in compare.render(plain)


def test_csv_and_json_carry_the_statistics():
    table = compare.rows(_three_frameworks(), baseline="framework=torch")
    (torch_csv,) = [r for r in csv.DictReader(io.StringIO(compare.render(table, "csv"))) if r["framework"] == "torch"]
    assert torch_csv["n"] == "3" and float(torch_csv["steady_epoch_s_ci_low"]) == pytest.approx(2.0)
    assert torch_csv["baseline"] == "True" and torch_csv["noisy"] == "True"
    (jax_json,) = [r for r in json.loads(compare.render(table, "json")) if r["framework"] == "jax"]
    assert jax_json["ratio_to_baseline"] == pytest.approx(1.5)
    assert jax_json["steady_epoch_s_cv"] == pytest.approx(0.3 / 3.3)


def test_cli_compare_baseline_and_its_errors(tmp_path, capsys):
    from runner import cli

    for rec in _three_frameworks():
        records.write(rec, tmp_path)
    assert cli.main(["compare", str(tmp_path), "--baseline", "framework=jax", "--noisy-cv", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "1.00 (baseline)" in out and "noisy" not in out
    for args, message in ((["--baseline", "framework=caffe"], "matches no row"),
                          (["--baseline", "torch"], "'torch' is not KEY=VALUE"),
                          (["--noisy-cv", "-1"], "--noisy-cv must be >= 0")):
        assert cli.main(["compare", str(tmp_path), *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("dlbench: error: ") and message in err and len(err.strip().splitlines()) == 1


def test_a_run_that_died_in_start_up_counts_in_its_siblings_row():
    """The parent's record for a SIGKILLed child knows no version or device kind: it was a row of its
    own ('auto'); it is a failed run of the same row."""
    ok = [make_record(steady=s) for s in (1.0, 1.2)]
    for r in ok:
        r["device"]["requested"] = "auto"
    lost = make_record(status="failed", version=None, device=None)
    lost["device"].update(requested="auto", name=None)
    lost["metrics"]["epochs_completed"] = 0
    (row,) = compare.rows(ok + [lost])
    assert (row["runs"], row["completed"], row["n"], row["device"]) == (3, 2, 2, "cpu")
    other = make_record(status="failed", version=None, device=None)
    other["device"].update(requested="cuda", name=None)  # no sibling asked for cuda: a row of its own
    assert len(compare.rows(ok + [other])) == 2


def _noisy(rec: dict, other: float = 61.4) -> dict:
    """`rec` as judged disturbed: other processes used `other` % of the CPU."""
    rec["host_noise"] = {"verdict": "noisy", "reasons": [f"other processes used {other:.0f} % of the CPU (limit 10 %)"],
                         "other_cpu_percent_mean": other, "other_cpu_percent_max": other, "gpu_other_processes": None,
                         "load_avg": {"start": None, "mean": None, "max": None}, "limits": {}, "method": "test"}
    records.validate(rec)
    return rec


def test_noisy_host_runs_are_left_out_of_the_times_and_the_notes_say_so():
    runs = [make_record(steady=s) for s in (2.0, 2.1, 2.2)] + [_noisy(make_record(steady=9.0), 35.0),
                                                               _noisy(make_record(steady=7.0), 61.4)]
    (row,) = compare.rows(runs)
    assert row["steady_epoch_s"] == 2.1 and row["n"] == 3 and row["runs"] == row["completed"] == 5
    assert row["steady_epoch_s_max"] == 2.2  # the noisy 9 s and 7 s are not in the sample
    assert (row["noisy_host_runs"], row["noisy_host_left_out"], row["noisy_host_only"]) == (2, 2, False)
    assert row["noisy_host"] == "other processes used 61 % of the CPU (limit 10 %)"  # the worst run's
    assert "noisy host: other processes used 61 % of the CPU (limit 10 %); 2 of 5 runs left out of the times" \
        in compare.render([row])
    assert json.loads(compare.render([row], "json"))[0]["noisy_host_left_out"] == 2


def test_a_row_of_noisy_runs_only_is_marked_and_ranked_after_the_quiet_rows():
    quiet = [make_record(framework="jax", version="0.10.2", steady=s) for s in (3.0, 3.1)]
    loud = [_noisy(make_record(steady=s)) for s in (1.0, 1.1)]  # faster, but timed beside other work
    table = compare.rows(quiet + loud)
    assert [r["framework"] for r in table] == ["jax", "torch"]
    assert table[1]["noisy_host_only"] and table[1]["steady_epoch_s"] == pytest.approx(1.05)
    assert not table[0]["noisy_host_runs"] and table[0]["noisy_host"] is None
    lines = compare.render(table).splitlines()
    assert "noisy host" not in lines[-2] and "only noisy runs, ranked after quiet rows" in lines[-1]
    # without the noisy row, quiet rows keep the fastest-first order
    assert [r["framework"] for r in compare.rows(quiet + [make_record(steady=1.0)])] == ["torch", "jax"]


def test_unknown_and_quiet_verdicts_count_as_quiet():
    unknown = make_record(steady=2.0)
    unknown["host_noise"] = {**unknown["host_noise"], "verdict": "unknown"}
    (row,) = compare.rows([unknown, make_record(steady=2.2)])
    assert row["n"] == 2 and row["noisy_host_runs"] == 0 and "noisy host" not in compare.render([row])


def _efficient(gflops: float, percent: float | None, joules_per_image: float | None) -> dict:
    r = make_record(steady=1.0)
    r["efficiency"] = {**r["efficiency"], "achieved_flops_per_s": gflops * 1e9, "percent_of_peak": percent,
                       "joules_per_image": joules_per_image, "joules_to_target": None,
                       "peak_source": None if percent is None else "2 physical cores x 2.45 GHz ..."}
    return r


def test_efficiency_is_in_every_row_and_shows_as_columns_on_request(tmp_path, capsys):
    from runner import cli

    (row,) = compare.rows([_efficient(10.0, 5.0, 0.002), _efficient(12.0, 6.0, None), _efficient(11.0, 7.0, 0.004)])
    assert row["achieved_flops_per_s"] == pytest.approx(11e9) and row["percent_of_peak"] == 6.0
    assert row["joules_per_image"] == pytest.approx(0.003)  # the median of the runs that measured it
    assert row["peak_source"].startswith("2 physical cores")
    (json_row,) = json.loads(compare.render([row], "json"))
    (csv_row,) = csv.DictReader(io.StringIO(compare.render([row], "csv")))
    assert json_row["percent_of_peak"] == 6.0 and float(csv_row["achieved_flops_per_s"]) == pytest.approx(11e9)
    assert "GFLOP/s" not in compare.render([row])  # markdown: only when asked
    table = compare.render([row], columns=compare.parse_columns("gflops,peak,j_image"))
    header, _, cells = table.splitlines()[2:5]
    assert "| GFLOP/s" in header and "% of peak FP32" in header and "J/image" in header
    assert "| 11.00 " in cells and "| 6.00 " in cells and "| 0.003 " in cells
    assert compare.parse_columns("all") == tuple(compare.EXTRA_COLUMNS)
    records.write(_efficient(10.0, 5.0, 0.002), tmp_path)
    assert cli.main(["compare", str(tmp_path), "--columns", "j_target"]) == 0
    assert "J to target" in capsys.readouterr().out
    assert cli.main(["compare", str(tmp_path), "--columns", "gflops,watts"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dlbench: error: --columns: unknown watts") and len(err.strip().splitlines()) == 1


def test_compare_prints_every_view_its_records_need_and_view_picks_one(tmp_path):
    """issue 28: one compare for every kind of record (runs, sweep, tune, micro-benchmarks)."""
    plain = make_record(steady=2.0)
    point = make_record(steady=3.0)
    point["experiment"] = {"kind": "sweep", "id": "sweep-abc", "point": {"batch_size": 64}, "index": 0, "size": 1,
                           "state": None}
    trial = make_record(steady=4.0, wall_s=10.0)
    trial["experiment"] = {"kind": "tune", "id": "lenet-torch", "index": 0, "size": 1, "state": "complete",
                           "point": {"learning_rate": 0.001}}
    for rec in (plain, point, trial):
        records.write(rec, tmp_path)
    auto = run_cli("compare", tmp_path)
    assert auto.returncode == 0 and auto.stderr == "", auto.stderr
    runs, sweep, tune = auto.stdout.split("\n\n### ")[0], auto.stdout.partition("### sweep-abc")[2], \
        auto.stdout.partition("### tuning study lenet")[2]
    assert runs.count("| torch") == 1 and "| 2.00 " in runs  # the plain run alone: the others have their views
    assert sweep and tune and auto.stdout.index("### sweep-abc") < auto.stdout.index("### tuning study lenet")
    every = run_cli("compare", tmp_path, "--view", "runs", "--format", "json")
    assert [(r["runs"], r["steady_epoch_s"]) for r in json.loads(every.stdout)] == [(3, 3.0)]  # every run counts
    as_csv = run_cli("compare", tmp_path, "--format", "csv")
    assert as_csv.stdout.startswith("spec_hash,") and as_csv.stderr == (
        "dlbench: these records need 3 tables (runs, sweep, tune); --format csv prints one, the runs table; the"
        " others: --view sweep, --view tune\n")
    only = run_cli("compare", tmp_path, "--id", "sweep-abc", "--format", "json")
    assert [r["sweep"] for r in json.loads(only.stdout)] == ["sweep-abc"] and only.stderr == ""
    assert run_cli("compare", tmp_path, "--view", "tune", "--id", "lenet").stdout == \
        run_cli("tune-table", tmp_path, "--study", "lenet").stdout
    for args, message in ((["--id", "nope"], "no sweep or tuning study nope under"),
                          (["--view", "ensemble"], "no ensemble records under"),
                          (["--view", "runs", "--id", "x"], "--id picks one sweep or tuning study: it goes with"),
                          (["--top", "0"], "--top must be >= 1, got 0")):
        bad = run_cli("compare", tmp_path, *args)
        assert bad.returncode == 2 and bad.stdout == "" and bad.stderr.count("\n") == 1 and message in bad.stderr
