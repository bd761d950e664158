import json
import re
from pathlib import Path

import pytest

from sample_records import BASE, make_record
from runner import records
from runner.errors import RecordError

# The contract: consumers (compare, notebooks, other people's scripts) rely on exactly these keys.
TOP_KEYS = {"schema_version", "run_id", "launcher", "log_file", "created_utc", "status", "error", "command", "repeat", "spec",
            "spec_hash", "framework", "device", "platform", "hardware", "software", "environment", "data",
            "timing", "metrics", "parity", "resources", "energy", "parallel", "kind", "experiment", "study",
            "host_noise", "efficiency"}
PARALLEL_KEYS = {"world_size", "processes", "devices", "strategy", "comm_backend", "global_batch", "per_rank_batch",
                 "timing"}
TIMING_KEYS = {"wall_s", "data_load_s", "setup_s", "compile_s", "first_epoch_s", "steady_epoch_s",
               "epoch_train_s", "eval_s", "total_train_s", "train_fn_s", "epoch_data_s"}
METRICS_KEYS = {"epochs_completed", "train_loss", "train_accuracy", "test_accuracy", "best_test_accuracy",
                "final_test_accuracy", "best_train_accuracy", "mean_train_loss", "time_to_target_s",
                "target_epoch", "images_per_s"}
DATA_KEYS = {"dataset", "source", "origin", "sha256", "verified", "n_train", "n_test"}
PARITY_KEYS = {"status", "reference", "steps", "checked_steps", "checks", "trajectory_envelope", "replicas",
               "failed", "error", "seconds"}
FIXTURES = Path(__file__).parent / "fixtures"


def _schema():
    from importlib import resources

    return json.loads(resources.files("runner.records").joinpath(f"schemas/record.v{records.SCHEMA_VERSION}.json").read_text())


def test_schema_pins_the_key_set():
    schema = _schema()
    assert set(schema["properties"]) == set(schema["required"]) == TOP_KEYS
    for section, keys in (("timing", TIMING_KEYS), ("metrics", METRICS_KEYS), ("data", DATA_KEYS),
                          ("parallel", PARALLEL_KEYS)):
        assert set(schema["properties"][section]["required"]) == set(schema["properties"][section]["properties"]) == keys
        assert schema["properties"][section]["additionalProperties"] is False
    assert set(schema["properties"]["status"]["enum"]) == set(records.STATUSES)
    parity = schema["properties"]["parity"]["oneOf"][1]
    assert set(parity["required"]) == set(parity["properties"]) == PARITY_KEYS
    assert set(parity["properties"]["status"]["enum"]) == set(records.PARITY_STATUSES)


ENERGY_KEYS = {"joules", "method", "scope", "window_s", "parts", "errors"}
RESOURCES_KEYS = {"interval_s", "samples", "window_s", "samples_file", "host", "gpus", "device_peak_memory_bytes",
                  "device_peak_memory_source", "errors"}


def test_schema_pins_energy_and_resources():
    schema = _schema()["properties"]
    assert set(schema["energy"]["required"]) == set(schema["energy"]["properties"]) == ENERGY_KEYS
    resources = schema["resources"]["oneOf"][1]
    assert set(resources["required"]) == set(resources["properties"]) == RESOURCES_KEYS
    assert schema["energy"]["properties"]["joules"]["exclusiveMinimum"] == 0  # null, never 0


def test_a_real_record_meets_the_contract():
    records.validate(BASE)
    assert set(BASE) == TOP_KEYS and set(BASE["timing"]) == TIMING_KEYS and set(BASE["metrics"]) == METRICS_KEYS
    assert set(BASE["parity"]) == PARITY_KEYS and BASE["parity"]["status"] == "pass"
    # a v3 run ran in one process on one device: the upgrade says so
    assert BASE["parallel"] == {"world_size": 1, "processes": 1, "devices": 1, "strategy": "none",
                                "comm_backend": None, "global_batch": 64, "per_rank_batch": 64, "timing": "one process"}


def test_a_v1_record_reads_as_current_with_parity_unchecked(tmp_path):
    """The committed results/ hold v1 records: they must keep reading, as never checked."""
    v1 = json.loads((FIXTURES / "record_v1.json").read_text())
    assert v1["schema_version"] == 1 and "parity" not in v1
    path = tmp_path / "old.json"
    path.write_text(json.dumps(v1))
    got = records.read(path)
    assert got["schema_version"] == records.SCHEMA_VERSION == 6
    assert got["parity"] is None
    same = ("metrics", "spec", "spec_hash", "status", "run_id", "data", "command", "software")
    assert {k: got[k] for k in same} == {k: v1[k] for k in same}
    assert got["timing"] == {**v1["timing"], "epoch_data_s": None}  # v5: no loader then


def test_a_v2_record_reads_as_v3_with_what_it_did_not_record_null(tmp_path):
    v2 = json.loads((FIXTURES / "record_v2.json").read_text())
    assert v2["schema_version"] == 2
    path = tmp_path / "v2.json"
    path.write_text(json.dumps(v2))
    got = records.read(path)
    assert got["schema_version"] == records.SCHEMA_VERSION
    assert got["hardware"]["cpu"]["brand"] == v2["hardware"]["cpu"]
    assert got["hardware"]["cpu"]["physical_cores"] == v2["hardware"]["cores"]
    assert got["hardware"]["cpu"]["flags"] is None and "not recorded" in got["hardware"]["errors"]["cpu.flags"]
    # v2 wrote [] with an NVML error where it could not look: v3 says "unknown", not "none"
    assert v2["hardware"]["gpus"] == [] and "gpus" in v2["hardware"]["errors"]
    assert got["hardware"]["gpus"] is None
    assert got["environment"]["load_avg_start"] == v2["environment"]["load_avg_start"]
    assert got["environment"]["container"] is None
    assert got["energy"]["joules"] is None and got["energy"]["method"] == "none"
    assert got["resources"] is None and got["framework"]["build"] is None
    assert got["repeat"] == {**v2["repeat"], "policy": "fixed", "max": v2["repeat"]["of"], "cv_threshold": None}
    for key in ("metrics", "spec", "spec_hash", "data", "platform"):
        assert got[key] == v2[key]
    assert got["timing"] == {**v2["timing"], "epoch_data_s": None}
    # the parity block keeps every distance and its limit, in v4's shape
    assert got["parity"]["status"] == v2["parity"]["status"]
    assert {k: c["value"] for k, c in got["parity"]["checks"].items()} == {
        k: v2["parity"][k] for k in records.V3_PARITY_CHECKS}


@pytest.mark.parametrize("mutate, where", [
    (lambda r: r.pop("spec_hash"), "(top)"),
    (lambda r: r.update(extra=1), "(top)"),
    (lambda r: r.update(status="great"), "status"),
    (lambda r: r["timing"].pop("compile_s"), "timing"),
    (lambda r: r["metrics"].update(test_accuracy="high"), "metrics/test_accuracy"),
    (lambda r: r["data"].update(verified="yes"), "data/verified"),
    (lambda r: r.pop("parity"), "(top)"),
    (lambda r: r["energy"].update(joules=0), "energy/joules"),
    (lambda r: r["energy"].pop("method"), "energy"),
    (lambda r: r["repeat"].update(policy="often"), "repeat/policy"),
    (lambda r: r["parity"].update(status="maybe"), "parity"),
    # bounds: negative times and accuracies over 100 % were accepted (issue 20)
    (lambda r: r["timing"].update(steady_epoch_s=-1.0), "timing/steady_epoch_s"),
    (lambda r: r["timing"].update(epoch_train_s=[1.0, -0.1]), "timing/epoch_train_s/1"),
    (lambda r: r["timing"].update(wall_s=-5), "timing/wall_s"),
    (lambda r: r["metrics"].update(best_test_accuracy=1.01), "metrics/best_test_accuracy"),
    (lambda r: r["metrics"].update(test_accuracy=[0.5, 99.0]), "metrics/test_accuracy/1"),
    (lambda r: r["metrics"].update(time_to_target_s=-3.0), "metrics/time_to_target_s"),
    (lambda r: r["metrics"].update(images_per_s=-1.0), "metrics/images_per_s"),
    (lambda r: r["metrics"].update(target_epoch=0), "metrics/target_epoch"),
])
def test_schema_rejects_bad_records(mutate, where):
    r = make_record()
    mutate(r)
    with pytest.raises(RecordError, match=re.escape(f"at {where}:")):
        records.validate(r)


def test_write_is_atomic_and_never_overwrites(tmp_path):
    r = make_record()
    path = records.write(r, tmp_path)
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        records.write(r, tmp_path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp files left
    assert records.read(path) == r


def test_write_refuses_an_invalid_record(tmp_path):
    r = make_record()
    r["status"] = "meh"
    with pytest.raises(RecordError):
        records.write(r, tmp_path)
    assert not list(tmp_path.iterdir())


def test_read_refuses_garbage_foreign_and_future_files(tmp_path):
    cases = {"garbage.json": "{not json", "list.json": "[1, 2]", "foreign.json": '{"name": "x"}',
             "future.json": json.dumps({**make_record(), "schema_version": 99})}
    reasons = {}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(RecordError) as e:
            records.read(tmp_path / name)
        reasons[name] = str(e.value)
    assert "unreadable JSON" in reasons["garbage.json"]
    assert "not a JSON object" in reasons["list.json"]
    assert "no integer schema_version" in reasons["foreign.json"]
    assert "newer than this dlbench reads" in reasons["future.json"]


def test_upgrade_applies_converters_in_turn(monkeypatch):
    v0 = {k: v for k, v in json.loads((FIXTURES / "record_v1.json").read_text()).items() if k != "command"}
    v0["schema_version"] = 0
    monkeypatch.setitem(records.UPGRADES, 0, lambda r: {**r, "schema_version": 1, "command": "(unknown)"})
    upgraded = records.upgrade(v0)
    records.validate(upgraded)
    assert upgraded["command"] == "(unknown)"
    monkeypatch.delitem(records.UPGRADES, 0)
    with pytest.raises(RecordError, match="no upgrade from schema version 0"):
        records.upgrade(v0)


@pytest.mark.parametrize("version", range(1, records.SCHEMA_VERSION + 1))
def test_every_schema_is_a_valid_draft_2020_12_schema(version):
    import jsonschema
    from importlib import resources

    schema = json.loads(resources.files("runner.records").joinpath(f"schemas/record.v{version}.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)


def test_the_schema_spec_types_mirror_the_spec_dataclass():
    """Derived from runner.workload.spec's annotations, so the two cannot drift apart."""
    from runner.workload.spec import field_types

    spec = _schema()["properties"]["spec"]
    json_type = {str: "string", int: "integer", float: "number"}
    want = {name: {"type": [json_type[base], "null"] if optional else json_type[base]}
            for name, (base, optional) in field_types().items()}
    got = {name: {"type": prop["type"]} for name, prop in spec["properties"].items() if name != "spec_version"}
    assert got == want
    assert spec["properties"]["spec_version"]["type"] == "integer"
    assert set(spec["required"]) == set(spec["properties"]) and spec["additionalProperties"] is False


def test_read_refuses_a_spec_of_the_wrong_type_with_its_path(tmp_path):
    from runner.workload.spec import hash_of

    r = make_record()
    r["spec"]["epochs"] = "50"
    r["spec_hash"] = hash_of(r["spec"])
    (tmp_path / "r.json").write_text(json.dumps(r))
    with pytest.raises(RecordError, match=re.escape("at spec/epochs:")):
        records.read(tmp_path / "r.json")


def test_every_committed_record_still_reads():
    """Old versions are upgraded, then checked against v4 with its new bounds and the spec hash."""
    results = Path(__file__).parent.parent / "results"
    paths = sorted(results.rglob("*.json")) + sorted(FIXTURES.glob("record_*.json"))
    assert len(paths) >= 9
    for path in paths:
        records.read(path)


def test_str_subclasses_validate_and_write_as_text(tmp_path):
    """torch.__version__ is a TorchVersion (a str subclass); jsonschema-rs takes plain types only."""
    class Version(str):
        pass

    r = make_record()
    r["framework"]["version"] = Version("2.13.0+cpu")
    records.validate(r)
    assert records.read(records.write(r, tmp_path))["framework"]["version"] == "2.13.0+cpu"
    r["timing"]["wall_s"] = object()
    with pytest.raises(RecordError, match="not JSON"):
        records.validate(r)


def test_a_v3_parity_block_reads_as_v4_checks_with_values_and_limits(tmp_path):
    """v3 wrote five flat distances and the tolerances apart; v4 keeps them as checks, each with its
    value and limit, so an old failure still says what failed and by how much."""
    from runner.parity import gate

    v3 = json.loads((FIXTURES / "record_smoke.json").read_text())
    assert v3["schema_version"] == 3
    v3["parity"].update(status="fail", trajectory_max_diff=1.2e-3, failed=["trajectory_max_diff"])
    path = tmp_path / "v3.json"
    path.write_text(json.dumps(v3))
    p = records.read(path)["parity"]
    assert set(p) == PARITY_KEYS and p["checked_steps"] == [1] and p["replicas"] == 0
    assert p["checks"]["weights_rel_diff"] == {"value": v3["parity"]["weights_rel_diff"], "limit": 1e-5}
    assert p["checks"]["trajectory_max_diff"] == {"value": 1.2e-3, "limit": 1e-3}
    assert gate.describe(p) == "FAIL: trajectory_max_diff 1.2e-03 > 1.0e-03"


def test_a_v4_parity_block_from_the_gate_validates():
    from runner.parity import gate

    result = gate.judge({"loss_rel_diff": 1e-8, "logits_max_diff": 2e-7, "grad_rel_diff": 3e-7,
                         "update_rel_diff": 1e-4, "update_bias": 0.0, "trajectory_max_diff": None},
                        {**gate.LIMITS, "trajectory_max_diff": 4e-6}, 50, checked=[0, 5], envelope_width=4e-7,
                        replicas=8, seconds=1.0)
    records.validate({**BASE, "parity": result})
    assert result["checked_steps"] == [1, 6] and result["failed"] == ["trajectory_max_diff"]
    records.validate({**BASE, "parity": gate.error_result(50, "BadZipFile: File is not a zip file")})


def test_a_v4_record_reads_as_a_plain_train_run(tmp_path):
    """v5 added experiments: a v4 record is a train run, in no sweep or trial, its data resident."""
    v4 = {k: v for k, v in _v5(BASE).items() if k not in ("kind", "experiment", "study")}
    v4 = {**v4, "schema_version": 4, "timing": {k: v for k, v in BASE["timing"].items() if k != "epoch_data_s"}}
    path = tmp_path / "v4.json"
    path.write_text(json.dumps(v4))
    got = records.read(path)
    assert (got["kind"], got["experiment"], got["study"], got["timing"]["epoch_data_s"]) == ("train", None, None, None)
    assert got["timing"]["steady_epoch_s"] == BASE["timing"]["steady_epoch_s"]


V6_HOST_KEYS = ("other_cpu_percent_mean", "other_cpu_percent_max", "load_avg_mean", "load_avg_max")


def _v5(record: dict) -> dict:
    """`record` as schema v5 wrote it: no host_noise, no efficiency, no other-process or load summaries."""
    v5 = {k: v for k, v in record.items() if k not in ("host_noise", "efficiency")}
    v5["schema_version"] = 5
    if v5["resources"] is not None:
        host = {k: v for k, v in v5["resources"]["host"].items() if k not in V6_HOST_KEYS}
        v5["resources"] = {**v5["resources"], "host": host}
    return v5


def test_a_v5_record_reads_with_the_other_processes_mean_share_and_both_new_blocks(tmp_path):
    """v6 added host_noise and efficiency: a v5 record sampled the system's and its own CPU % at the
    same instants, so the others' mean share is the difference of the means; the rest was not kept."""
    v5 = _v5(BASE)
    host = v5["resources"]["host"]
    host.update(system_cpu_percent_mean=80.0, process_cpu_percent_mean=100.0)
    v5["hardware"]["cpu"]["logical_cores"] = 2
    path = tmp_path / "v5.json"
    path.write_text(json.dumps(v5))
    got = records.read(path)
    assert got["schema_version"] == 6
    assert got["resources"]["host"]["other_cpu_percent_mean"] == pytest.approx(30.0)  # 80 - 100 / 2
    assert [got["resources"]["host"][k] for k in V6_HOST_KEYS[1:]] == [None, None, None]
    assert got["host_noise"] is not None and got["efficiency"] is not None
    # a run that never trained sampled nothing: neither block can be judged
    never = {**v5, "resources": None}
    assert records.upgrade(never)["host_noise"] is None


def test_a_sweep_point_and_a_study_validate_and_bad_ones_do_not():
    point = {"kind": "sweep", "id": "bs-3f2a", "point": {"batch_size": 128}, "index": 1, "size": 4, "state": None}
    records.validate({**BASE, "experiment": point, "timing": {**BASE["timing"], "epoch_data_s": [0.5, 0.25]}})
    study = {"name": "ensemble", "settings": {"arch": "mlp4"}, "checks": [
        {"name": "max_abs_diff_vs_alone", "value": 1e-7, "limit": 1e-5, "passed": True}],
        "operations": [{"op": "fprop", "size": 4, "n": 10, "mean_s": 0.01, "std_s": 0.001, "min_s": 0.009, "max_s": 0.012}]}
    records.validate({**BASE, "kind": "ensemble", "study": study})
    for bad in ({**BASE, "kind": "sweep"}, {**BASE, "experiment": {**point, "kind": "grid"}},
                {**BASE, "study": {**study, "operations": [{"op": "fprop"}]}},
                {**BASE, "timing": {**BASE["timing"], "epoch_data_s": [-1.0]}}):
        with pytest.raises(RecordError):
            records.validate(bad)
