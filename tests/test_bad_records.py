"""Hostile and unlucky record files (issue 20): every bad file is skipped with one warning line that
names it and the reason, the good ones still make the table, and every output format stays valid."""

import copy
import csv
import hashlib
import io
import json
import os
import re
from pathlib import Path

import pytest

from conftest import run_cli
from sample_records import make_record
from runner import cli, records
from runner.errors import RecordError
from runner.report import compare

FIXTURES = Path(__file__).parent / "fixtures"


def _strict_json(text):
    """json.loads that refuses NaN / Infinity, as a strict consumer (jq, JavaScript) would."""
    def refuse(name):
        raise ValueError(f"{name} is not JSON")
    return json.loads(text, parse_constant=refuse)


def _rehash(r):
    """Make spec_hash match the (edited) spec, as a forger would: the spec's canonical JSON, hashed."""
    r["spec_hash"] = hashlib.sha256(json.dumps(r["spec"], sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return r


def _compare(capsys, *paths, fmt="markdown"):
    """`dlbench compare PATHS` in-process: exit code, stdout, stderr lines."""
    code = cli.main(["compare", *map(str, paths), "--format", fmt])
    out, err = capsys.readouterr()
    return code, out, err.splitlines()


def _skipped(err_lines):
    """{file name: reason} from the warning lines."""
    found = {}
    for line in err_lines:
        m = re.match(r"dlbench: skipped (.+?): (.*)$", line)
        if m:
            found[os.path.basename(m.group(1))] = m.group(2)
    return found


def _good(folder, steady=1.0, **kw):
    return records.write(make_record(steady=steady, **kw), folder)


# 2. A spec holding a string crashed the table (a format code applied to a str).
def test_a_spec_field_of_the_wrong_type_is_skipped(tmp_path, capsys):
    _good(tmp_path)
    bad = make_record(steady=2.0)
    bad["spec"]["learning_rate"] = "0.001"
    (tmp_path / "string_lr.json").write_text(json.dumps(_rehash(bad)))
    code, out, err = _compare(capsys, tmp_path)
    assert code == 0 and "1.00" in out
    reason = _skipped(err)["string_lr.json"]
    assert "spec/learning_rate" in reason and "number" in reason


# 3. Nothing was escaped: a pipe, a newline or <script> split cells and injected rows.
HOSTILE = {"name": "torch|evil\n| injected | row |", "version": "<script>alert(1)</script>",
           "options": {"k": "=HYPERLINK(\"http://x\")"}, "brand": "@SUM(1+1)|x\r\n"}


def _hostile_records():
    recs = []
    for steady in (1.0, 1.2):
        r = make_record(steady=steady, framework=HOSTILE["name"], version=HOSTILE["version"],
                        options=HOSTILE["options"])
        r["hardware"]["cpu"]["brand"] = HOSTILE["brand"]
        recs.append(r)
    return recs + [make_record(steady=3.0, framework="-2+3")]


def _table_lines(markdown):
    return [line for line in markdown.splitlines() if line.startswith("|")]


def test_markdown_escapes_pipes_newlines_and_html():
    text = compare.render(compare.rows(_hostile_records()))
    lines = _table_lines(text)
    assert len(lines) == 2 + 2  # header, rule, two rows: nothing injected
    unescaped = [len(re.findall(r"(?<!\\)\|", line)) for line in lines]
    assert len(set(unescaped)) == 1  # every row has as many cells as the header
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "injected" in lines[2] + lines[3]  # the text is kept, on its own row, as text


def test_csv_neutralizes_formula_prefixes():
    table = compare.rows(_hostile_records())
    got = list(csv.DictReader(io.StringIO(compare.render(table, "csv"))))
    assert len(got) == 2
    for row in got:
        for key, value in row.items():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), (key, value)
    assert {r["framework"] for r in got} == {HOSTILE["name"], "'-2+3"}  # only a formula prefix is changed
    assert any(r["hardware"].startswith("'@SUM") for r in got)


def test_json_keeps_the_text_as_it_was():
    table = compare.rows(_hostile_records())
    got = _strict_json(compare.render(table, "json"))
    assert {r["framework"] for r in got} == {HOSTILE["name"], "-2+3"}


# 4. NaN / Infinity were accepted: -Infinity s/epoch sorted as fastest, --format json printed invalid JSON.
@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999", "-1e400"])
def test_non_finite_numbers_are_refused_on_read(tmp_path, capsys, literal):
    _good(tmp_path, steady=2.0)
    text = json.dumps(make_record(steady=12345.5)).replace("12345.5", literal)
    (tmp_path / "nonfinite.json").write_text(text)
    for fmt in ("markdown", "csv", "json"):
        code, out, err = _compare(capsys, tmp_path, fmt=fmt)
        assert code == 0
        assert "nonfinite.json" in _skipped(err) and "not a finite" in _skipped(err)["nonfinite.json"]
    assert [r["steady_epoch_s"] for r in _strict_json(out)] == [2.0]


# 5. 3,000 nested brackets crashed with RecursionError.
@pytest.mark.parametrize("text", ["[" * 3000 + "]" * 3000, '{"a":' * 3000 + "1" + "}" * 3000,
                                  '{"schema_version": 4, "x": ' + "[" * 5000 + "]" * 5000 + "}"])
def test_deeply_nested_json_is_skipped(tmp_path, capsys, text):
    _good(tmp_path)
    (tmp_path / "deep.json").write_text(text)
    code, out, err = _compare(capsys, tmp_path)
    assert code == 0 and "1.00" in out
    assert "nested too deeply" in _skipped(err)["deep.json"]


# 6. An old-schema stub or a non-object crashed with KeyError; `true` was taken as version 1.
@pytest.mark.parametrize("text, reason", [
    ('{"schema_version": 2}', "schema v2"),
    ('{"schema_version": 1}', "schema v1"),
    ('{"schema_version": 3, "hardware": 5}', "schema v3"),
    ('{"schema_version": true}', "no integer schema_version"),
    ('{"schema_version": 4.0}', "no integer schema_version"),
    ("true", "not a JSON object"),
    ("null", "not a JSON object"),
    ('"a string"', "not a JSON object"),
    ("", "unreadable JSON"),
    ("\ufeff{}", "unreadable JSON"),
])
def test_old_stubs_and_non_objects_are_skipped(tmp_path, capsys, text, reason):
    _good(tmp_path)
    (tmp_path / "stray.json").write_text(text, encoding="utf-8")
    code, out, err = _compare(capsys, tmp_path)
    assert code == 0 and "1.00" in out
    assert reason in _skipped(err)["stray.json"]
    assert len([line for line in err if "stray.json" in line]) == 1


def test_an_old_record_missing_a_section_is_skipped_not_a_crash(tmp_path):
    v2 = json.loads((FIXTURES / "record_v2.json").read_text())
    del v2["environment"]
    (tmp_path / "v2.json").write_text(json.dumps(v2))
    with pytest.raises(RecordError, match="schema v2"):
        records.read(tmp_path / "v2.json")


# 7. The same record twice (same file twice, or copies in two folders) was counted twice.
def test_copies_of_a_run_are_counted_once_with_a_warning(tmp_path, capsys):
    runs = [_good(tmp_path / "a", steady=s) for s in (1.0, 1.1, 1.2)]
    for i in range(50):
        (tmp_path / "b").mkdir(exist_ok=True)
        (tmp_path / "b" / f"copy{i}.json").write_bytes(runs[0].read_bytes())
    code, out, err = _compare(capsys, tmp_path / "a", tmp_path / "b", fmt="json")
    assert code == 0
    (row,) = _strict_json(out)
    assert row["runs"] == row["n"] == 3
    skipped = _skipped(err)
    assert len(skipped) == 50 and all("same run_id" in why and runs[0].name in why for why in skipped.values())


def test_the_same_file_given_twice_is_read_once(tmp_path, capsys):
    path = _good(tmp_path)
    code, out, err = _compare(capsys, path, path, tmp_path, fmt="json")
    assert code == 0 and _strict_json(out)[0]["runs"] == 1
    assert len(err) == 3 and all("given more than once" in line for line in err[:2])


def test_a_different_record_under_a_known_run_id_is_skipped_and_said_so(tmp_path, capsys):
    first = make_record(steady=1.0)
    second = copy.deepcopy(first)
    second["timing"]["steady_epoch_s"] = 9.0
    (tmp_path / "1.json").write_text(json.dumps(first))
    (tmp_path / "2.json").write_text(json.dumps(second))
    code, out, err = _compare(capsys, tmp_path, fmt="json")
    assert _strict_json(out)[0]["steady_epoch_s"] == 1.0
    assert "contents differ" in _skipped(err)["2.json"]


# Also found: a record whose spec differs from its spec_hash was merged into the other spec's row.
def test_a_spec_that_does_not_match_its_hash_is_skipped(tmp_path, capsys):
    _good(tmp_path)
    forged = make_record(steady=0.5)
    forged["spec"]["epochs"] = 7  # a different workload, filed under the standard hash
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    code, out, err = _compare(capsys, tmp_path, fmt="json")
    assert [r["steady_epoch_s"] for r in _strict_json(out)] == [1.0]
    assert "spec_hash" in _skipped(err)["forged.json"] and "does not match" in _skipped(err)["forged.json"]
    with pytest.raises(RecordError, match="spec_hash"):
        records.write(forged, tmp_path / "out")


def test_a_fifo_named_json_does_not_hang_compare(tmp_path):
    _good(tmp_path)
    os.mkfifo(tmp_path / "pipe.json")
    out = run_cli("compare", tmp_path, timeout=60)  # reading a FIFO would block forever
    assert out.returncode == 0 and "not a regular file" in _skipped(out.stderr.splitlines())["pipe.json"]


def test_a_lone_surrogate_is_refused_not_printed(tmp_path, capsys):
    _good(tmp_path)
    (tmp_path / "surrogate.json").write_text(json.dumps(make_record(framework="\ud800x")))
    code, out, err = _compare(capsys, tmp_path)
    assert code == 0 and "surrogate" in _skipped(err)["surrogate.json"]


def test_a_hostile_file_name_stays_on_one_warning_line(tmp_path, capsys):
    _good(tmp_path)
    (tmp_path / "evil\nname.json").write_text("{")
    code, out, err = _compare(capsys, tmp_path)
    assert code == 0 and len(err) == 2 and "evil\\nname.json" in err[0]


def test_the_cli_shows_no_traceback_for_the_whole_zoo(tmp_path):
    """Every case above in one folder, as a user would run it: warnings, a table, exit 0."""
    _good(tmp_path)
    zoo = {"deep.json": "[" * 3000 + "]" * 3000, "stub.json": '{"schema_version": 2}', "true.json": "true",
           "nan.json": json.dumps(make_record(steady=12345.5)).replace("12345.5", "NaN"),
           "copy.json": next(tmp_path.glob("*.json")).read_text()}
    bad = make_record()
    bad["spec"]["learning_rate"] = "0.001"
    zoo["str.json"] = json.dumps(_rehash(bad))
    for name, text in zoo.items():
        (tmp_path / name).write_text(text)
    for fmt in ("markdown", "csv", "json"):
        out = run_cli("compare", tmp_path, "--format", fmt)
        assert out.returncode == 0 and "Traceback" not in out.stderr
        assert sorted(_skipped(out.stderr.splitlines())) == sorted(zoo)
        assert out.stderr.splitlines()[-1] == f"dlbench: 1 record(s) read, {len(zoo)} file(s) skipped"
