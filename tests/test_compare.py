import csv
import io
import json

import pytest

from records import make_record
from runner import compare, record


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
    good = record.write(make_record(steady=1.0), tmp_path / "a")
    (tmp_path / "a" / "garbage.json").write_text("{{{")
    (tmp_path / "a" / "truncated.json").write_text(good.read_text()[:200])
    (tmp_path / "a" / "foreign.json").write_text(json.dumps({"hello": "world"}))
    (tmp_path / "a" / "future.json").write_text(json.dumps({**make_record(), "schema_version": 99}))
    (tmp_path / "a" / "notes.txt").write_text("not json at all")
    records, skipped = compare.load([tmp_path])
    assert len(records) == 1
    assert sorted(p.rsplit("/", 1)[1] for p, _ in skipped) == ["foreign.json", "future.json", "garbage.json",
                                                               "truncated.json"]


def test_load_refuses_a_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError):
        compare.load([tmp_path / "nope"])


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
