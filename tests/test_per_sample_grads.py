"""`per-sample-grads`: per-example gradients in torch, JAX and TensorFlow children, their checks and table."""

import json

import numpy as np
import pytest

from conftest import needs_jax, needs_tf, needs_torch, run_cli
from runner import records
from runner.report import micro as tables
from runner.micro import per_sample_grads as psg
from runner.workload.spec import make_spec
from sample_records import make_record

FRAMEWORKS = [pytest.param("torch", marks=needs_torch), pytest.param("jax", marks=needs_jax),
              pytest.param("tensorflow", marks=needs_tf)]


@pytest.fixture(scope="module")
def run(tmp_path_factory, synthetic_dir):
    out = tmp_path_factory.mktemp("per-sample")
    done = run_cli("per-sample-grads", "--framework", "torch,jax,tensorflow", "--batch-sizes", "4,8",
                   "--iterations", 3, "--warmup", 1, "--dataset", "synthetic", "--data-dir", synthetic_dir,
                   "--out", out, timeout=600)
    return done, {r["framework"]["name"]: r for r in map(records.read, sorted(out.glob("*.json")))}


@pytest.mark.slow
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_each_framework_times_vmap_and_the_loop_per_batch_size_and_passes_its_checks(run, framework):
    done, recs = run
    rec = recs[framework]
    assert (rec["kind"], rec["status"], rec["error"]) == ("per_sample_grads", "ok", None), done.stderr
    assert rec["spec"]["model"] == "lenet5" and rec["spec"]["batch_size"] == 8  # the largest batch size
    study = rec["study"]
    assert study["settings"]["batch_sizes"] == [4, 8]
    assert {"torch": "torch.func.vmap", "jax": "jax.vmap", "tensorflow": "pfor"}[framework] in study["settings"]["vmap"]
    ops = {(o["op"], o["size"]): o for o in study["operations"]}
    assert sorted(ops) == [("loop", 4), ("loop", 8), ("vmap", 4), ("vmap", 8)]
    for row in ops.values():
        assert row["n"] == 3 and 0 < row["min_s"] <= row["mean_s"] <= row["max_s"]
    assert ops[("vmap", 8)]["speedup_vs_loop"] == pytest.approx(ops[("loop", 8)]["mean_s"] / ops[("vmap", 8)]["mean_s"])
    assert [(c["size"], c["against"]) for c in study["checks"]] == [
        (4, "loop"), (4, "float64"), (8, "loop"), (8, "float64")]
    for c in study["checks"]:
        assert c["passed"] is True and c["value"] < 1e-6, c  # float32 per-example gradients: ~2e-7 measured


@pytest.mark.slow
@needs_torch
@needs_jax
@needs_tf
def test_the_run_prints_one_row_per_framework_and_batch_size(run):
    done, _ = run
    assert done.returncode == 0, done.stderr
    body = [line for line in done.stdout.splitlines() if line.startswith("| ") and "framework" not in line]
    assert len(body) == 6 and all(line.rstrip(" |").endswith("pass") for line in body)
    assert "### per-sample gradients" in done.stdout


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_examples_out_of_order_fail_the_check(framework):
    """The in-process study on 4 examples: right it passes; with the loop's examples rolled by one (the
    wrong example's gradient for each), both the loop check and, rolled the same way, float64's fail."""
    import importlib

    from runner import backends
    from runner.workload import reference

    spec = make_spec("standard", dataset="synthetic", batch_size=4)
    backend = backends.create(framework, spec, "cpu", {})
    ops = importlib.import_module(psg.FRAMEWORKS["per_sample_grads"][framework])
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(4, 28, 28)).astype(np.float32), rng.integers(0, 10, size=4)
    params = reference.initial_params(spec)
    grads = ops.PerSample(backend, "lenet5", params, x, y)
    vmap, loop = grads.numpy(grads.vmap(4)()), grads.numpy(grads.loop(4)())
    ref = psg.float64_per_example("lenet5", params, x, y)
    right = psg.compare(4, vmap, loop, ref)
    assert all(c["passed"] for c in right) and max(c["value"] for c in right) < 1e-6
    rolled = lambda g: {k: np.roll(v, 1, axis=0) for k, v in g.items()}  # noqa: E731
    wrong = psg.compare(4, vmap, rolled(loop), rolled(ref))
    assert [c["passed"] for c in wrong] == [False, False] and all(c["value"] > 0.1 for c in wrong)


def test_float64_per_example_gradients_average_to_the_batch_gradient():
    """The mean loss's gradient is the mean of the per-example gradients: the reference per example
    (one forward_backward per example) against the reference on the whole batch."""
    from runner.parity import float64
    from runner.workload import reference

    spec = make_spec("standard", dataset="synthetic")
    params = reference.initial_params(spec)
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(5, 28, 28)), rng.integers(0, 10, size=5)
    each = psg.float64_per_example("lenet5", params, x, y)
    _, _, batch = float64.forward_backward("lenet5", {k: v.astype(np.float64) for k, v in params.items()}, x, y)
    assert each["conv1.weight"].shape == (5, 6, 1, 5, 5)
    for k in batch:
        np.testing.assert_allclose(each[k].mean(axis=0), batch[k], rtol=1e-10, atol=1e-14)


def test_per_sample_rows_pair_vmap_and_loop_and_compute_the_speedup():
    from runner.micro import checks
    from runner.workload.spec import hash_of

    rec = make_record(framework="jax", version="0.10.2")
    ops = [{"op": op, "size": b, "n": 3, "mean_s": mean, "std_s": 0.0, "min_s": mean, "max_s": mean, "first_s": 1.0}
           for op, b, mean in (("vmap", 16, 0.002), ("loop", 16, 0.02), ("vmap", 64, 0.004), ("loop", 64, 0.08))]
    found = [checks.check(f"B={b}: vmap vs {a}", v, 1e-4, size=b, of="gradients", against=a)
             for b, a, v in ((16, "loop", 1e-7), (16, "float64", 2e-7), (64, "loop", 1e-7), (64, "float64", 0.5))]
    rec.update(kind="per_sample_grads", parity=None,
               study={"name": "per_sample_grads", "settings": {"batch_sizes": [16, 64]}, "operations": ops,
                      "checks": found})
    rec["spec"] = {**rec["spec"], "batch_size": 64}
    rec["spec_hash"] = hash_of(rec["spec"])
    records.validate(rec)
    rows = tables.per_sample_rows([rec, make_record()])
    assert [(r["batch"], r["speedup"], r["check"]) for r in rows] == [(16, pytest.approx(10.0), "pass"),
                                                                     (64, pytest.approx(20.0), "FAIL")]
    assert (rows[1]["vs_loop"], rows[1]["vs_float64"]) == (1e-7, 0.5)
    text = tables.render([rec], "per_sample_grads")
    assert "| 2.00 ± 0.00 " in text and "| 10.0x " in text and "| FAIL " in text
    csv_lines = tables.render([rec], "per_sample_grads", "csv").splitlines()
    assert csv_lines[0].startswith("framework,version,device") and len(csv_lines) == 3
    assert json.loads(tables.render([rec], "per_sample_grads", "json"))[0]["vmap_mean_s"] == 0.002


@pytest.mark.parametrize("args, message", [
    (["--batch-sizes", "0"], "--batch-sizes '0': expected whole numbers >= 1"),
    (["--batch-sizes", "16,-1"], "--batch-sizes '16,-1': expected whole numbers >= 1"),
    (["--batch-sizes", "9000", "--dataset", "synthetic"], "batch size 9000 exceeds the 4096 training samples"),
    (["--iterations", "0"], "--iterations must be >= 1, got 0"),
    (["--warmup", "-1"], "--warmup must be >= 0, got -1"),
    (["--framework", "flux"], "per-sample-grads runs on torch, jax, tensorflow, not flux"),
    (["--framework", "caffe"], "unknown framework caffe"),
    (["--table", "/nonexistent/records"], "no such file or folder"),
    # issue 27: `16,,64` ran 16 and 64; an empty --out was the current folder; any seed was accepted
    (["--batch-sizes", "16,,64"], "--batch-sizes '16,,64': an empty value in the list"),
    (["--batch-sizes", ",16"], "--batch-sizes ',16': an empty value in the list"),
    (["--out", ""], "--out '': an empty folder name (name a folder, e.g. --out dlbench-results)"),
    (["--seed", str(2**64)], f"seed must be a whole number from 0 to 2^64-1 (18446744073709551615), got {2**64}"),
    (["--seed", "-1"], "seed must be a whole number from 0 to 2^64-1 (18446744073709551615), got -1"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    done = run_cli("per-sample-grads", *args)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("dlbench: error: ") and message in line, line


def test_table_says_how_many_records_it_left_out_and_why(tmp_path):
    """issue 27: a --table of other records printed an empty table and nothing about them."""
    (tmp_path / "train.json").write_text(json.dumps(make_record()))
    done = run_cli("per-sample-grads", "--table", tmp_path)
    assert done.returncode == 0 and "(no operations measured)" in done.stdout
    assert done.stderr.strip().splitlines() == [
        "dlbench: 1 record(s) left out of the per-sample-grads table, not per-sample-grads records"
        " (1 train: python -m runner compare PATH)",
        "dlbench: note: `per-sample-grads --table PATH` is now `compare --view per-sample-grads PATH`; the old name"
        " goes in the next release"]
    mine = make_record()
    mine["kind"] = "per_sample_grads"
    (tmp_path / "train.json").write_text(json.dumps(mine))
    done = run_cli("compare", tmp_path)
    assert done.returncode == 0 and done.stderr == ""  # nothing left out, nothing said
    assert done.stdout.startswith("### per-sample gradients: vectorized vs a loop")
