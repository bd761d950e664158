"""Property-based (hypothesis): arbitrary bytes, arbitrary JSON and mutated records thrown at the
record reader and at `dlbench compare`. Whatever comes in: no traceback, exit 0, every bad file named
on one warning line, and the table valid in every format (markdown, csv, json)."""

import copy
import csv
import io
import json
import re

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is not installed: pip install 'dlbench[dev]'")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from sample_records import BASE  # noqa: E402
from runner import cli, records  # noqa: E402
from runner.errors import RecordError  # noqa: E402
from runner.report import compare  # noqa: E402
from runner.workload.spec import hash_of  # noqa: E402

FORMULA = ("=", "+", "-", "@", "\t", "\r")
RAW = "@@raw@@"  # a value replaced by raw JSON text after serializing (NaN, 1e999, deep nesting...)

scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
           | st.sampled_from(["|", "\n", "<script>", "=1+1", "-", "@x", "\\", "\u202e", "\x1b[2J", ""]))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=12)
raw_tokens = st.sampled_from(["NaN", "-Infinity", "Infinity", "1e999", "-1e400", "1" + "0" * 400, "[" * 3000 + "]" * 3000,
                              '"\\ud800"', '"\\udfff x"', "{}", "[]", "true", '"\\u0000"'])


def _paths(value, prefix=()):
    """Every path into `value` (dict keys and list indices)."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


PATHS = [p for p in _paths(BASE) if p]


@st.composite
def mutated_records(draw):
    """The text of a real record with one place changed: a new value, raw JSON text, or a key removed;
    the spec's hash recomputed half the time (as a forger would), so spec types get tested too."""
    r = copy.deepcopy(BASE)
    r["run_id"] = draw(st.text("0123456789abcdef", min_size=32, max_size=32))
    path = draw(st.sampled_from(PATHS))
    parent = r
    for key in path[:-1]:
        parent = parent[key]
    how = draw(st.sampled_from(["value", "raw", "delete"]))
    if how == "delete" and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = RAW if how == "raw" else draw(json_values)
    if draw(st.booleans()) and isinstance(r.get("spec"), dict):
        r["spec_hash"] = hash_of(r["spec"])
    return json.dumps(r).replace(json.dumps(RAW), draw(raw_tokens))


texts = st.one_of(json_values.map(json.dumps),
                  st.dictionaries(st.sampled_from(["schema_version", "spec", "run_id", "timing"]),
                                  json_values).map(json.dumps),
                  mutated_records())
files = st.binary(max_size=500) | texts.map(lambda text: text.encode("utf-8", "surrogatepass"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=files)
def test_the_reader_returns_a_valid_record_or_says_why(data):
    try:
        record = records.parse(data)
    except RecordError as e:
        assert str(e) and "\n" not in str(e)
    else:
        records.validate(record)
        json.dumps(record, allow_nan=False)


def _check_markdown(text, n_rows):
    if n_rows == 0:
        assert text == "(no records)"
        return
    lines = text.splitlines()
    table = [line for line in lines if line.startswith("|")]
    assert len(table) == n_rows + 2 * text.count("### ")  # a header and a rule per block, one line per row
    assert len(set(line.count("|") for line in table)) == 1  # no cell split or added
    assert all(line.startswith(("### ", "|")) or line == "" for line in lines)
    assert "<" not in text and "\x1b" not in text


def _check_csv(text, n_rows):
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == n_rows
    for row in rows:
        assert all(not value.startswith(FORMULA) for value in row.values())


def _check_json(text, n_rows):
    def refuse(name):
        raise AssertionError(f"{name} in JSON output")
    assert len(json.loads(text, parse_constant=refuse)) == n_rows


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(contents=st.lists(files, min_size=1, max_size=4), copies=st.integers(0, 2),
       fmt=st.sampled_from(["markdown", "csv", "json"]))
def test_compare_survives_any_folder(tmp_path_factory, capsys, contents, copies, fmt):
    folder = tmp_path_factory.mktemp("zoo")
    good = copy.deepcopy(BASE)
    (folder / "good.json").write_text(json.dumps(good))
    for i in range(copies):  # a run given more than once counts once
        (folder / f"copy{i}.json").write_text(json.dumps(good))
    for i, text in enumerate(contents):
        (folder / f"f{i}.json").write_bytes(text)
    readable = {}
    for path in sorted(folder.glob("*.json")):
        try:
            readable[path.name] = records.read(path)
        except RecordError:
            pass

    code = cli.main(["compare", str(folder), "--format", fmt])
    out, err = capsys.readouterr()

    assert code == 0
    skipped, lines = {}, err.splitlines()
    for line in lines[:-1]:
        m = re.fullmatch(r"dlbench: skipped (.+/([^/]+?\.json)): (.+)", line)
        assert m, line
        skipped[m.group(2)] = m.group(3)
    runs = {r["run_id"] for r in readable.values()}
    if skipped:
        assert lines[-1] == f"dlbench: {len(runs)} record(s) read, {len(skipped)} file(s) skipped"
    else:
        assert err == ""
    unreadable = {p.name for p in folder.glob("*.json")} - set(readable)
    assert unreadable <= set(skipped)  # every bad file named
    assert len(skipped) == len(unreadable) + len(readable) - len(runs)  # and copies of a run, nothing else
    n_rows = len(compare.rows(list({r["run_id"]: r for r in readable.values()}.values())))
    {"markdown": _check_markdown, "csv": _check_csv, "json": _check_json}[fmt](out.rstrip("\n"), n_rows)


@settings(max_examples=200, deadline=None)
@given(text=mutated_records())
def test_the_fast_validator_agrees_with_jsonschema(text):
    """jsonschema-rs (what read() uses) and the reference Python jsonschema accept the same records."""
    import jsonschema
    from importlib import resources

    try:  # with read()'s number hooks: it refuses NaN, Infinity and 1e999 before validating
        record = json.loads(text, parse_constant=records._refuse_constant, parse_float=records._finite_float,
                            parse_int=records._bounded_int)
        json.dumps(record, ensure_ascii=False).encode()  # and lone surrogates
    except (ValueError, RecursionError, UnicodeEncodeError):
        return
    schema = json.loads(resources.files("runner.records").joinpath(f"schemas/record.v{records.SCHEMA_VERSION}.json").read_text())
    assert records._validator().is_valid(record) == jsonschema.Draft202012Validator(schema).is_valid(record)
