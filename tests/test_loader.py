"""Loader mode (runner.backends.loaders): the loaders feed the same batches, bit for bit, as the
resident path, so one epoch trains to bitwise-identical weights; each epoch's wait is recorded; the
combinations that cannot run are refused in one line; the table keeps loader runs in their own rows."""

import json
import sys

import numpy as np
import pytest

from conftest import needs_jax, needs_tf, needs_torch, run_cli
from sample_records import make_record
from runner.backends import loaders
from runner.data import store
from runner.report import compare
from runner.workload import reference
from runner.workload.spec import make_spec

LEVELS = np.arange(256, dtype=np.uint8).reshape(16, 16).repeat(4, axis=0)  # every pixel value, 1024 positions
NORMS = [(0.1307, 0.3081), (0.2860, 0.3530), (0.5, 0.5)]  # MNIST's, Fashion-MNIST's, a round one


# ---- the machinery, without a framework ---------------------------------------------------------

@pytest.mark.parametrize("mean,std", NORMS)
def test_raw_pixels_recovers_every_byte_exactly(mean, std):
    images = np.random.default_rng(0).integers(0, 256, (300, 28, 28), dtype=np.uint8)
    images[0].flat[:256] = np.arange(256)  # every level at least once
    raw = loaders.raw_pixels(store.normalize(images, mean, std), mean, std, chunk=64)
    assert raw.dtype == np.uint8 and np.array_equal(raw, images)


def test_raw_pixels_refuses_images_not_made_from_bytes():
    x = store.normalize(LEVELS, 0.1307, 0.3081)
    x[3, 5] = np.nextafter(x[3, 5], np.float32(9))  # one ulp off: no byte normalizes to it
    with pytest.raises(ValueError, match="normalized from uint8 pixels with the spec's mean 0.1307"):
        loaders.raw_pixels(x, 0.1307, 0.3081)


def test_timed_sums_the_waits_only():
    ticks = iter([0.0, 1.0, 5.0, 5.5, 9.0, 9.25])  # start, batch 1, (train), batch 2, (train), the end

    def source():
        return iter(["a", "b"])
    timed = loaders.Timed(source, clock=lambda: next(ticks))
    assert list(timed) == ["a", "b"] and timed.data_s == 1.0 + 0.5 + 0.25


@pytest.mark.parametrize("name,options,message", [
    ("torch", {"loader": "resident", "workers": "4"}, "torch.workers=4 needs torch.loader=dataloader"),
    ("tensorflow", {"loop": "epoch", "loader": "tfdata", "workers": "0"},
     "tensorflow.loader=tfdata cannot run with tensorflow.loop=epoch"),
    ("jax", {"loop": "scan", "loader": "host", "workers": "2"}, "jax.loader=host cannot run with jax.loop=scan"),
])
def test_combinations_that_cannot_run_are_refused(name, options, message):
    from runner import backends

    cls = backends.load(name)
    with pytest.raises(ValueError, match=message):
        cls.check_options(options)
    ok = {**options, "loader": "resident", "workers": "0"}
    cls.check_options(ok)  # the defaults always run


def test_more_workers_than_cores_is_a_one_line_note(capsys, monkeypatch):
    cores = loaders.usable_cores()
    loaders.note_workers("torch", cores)
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(loaders, "_noted", set())
    loaders.note_workers("torch", cores + 1)
    loaders.note_workers("torch", cores + 1)  # once per process
    assert capsys.readouterr().err == (f"dlbench: note: torch.workers={cores + 1} > {cores} usable cores here:"
                                       " the workers share them\n")


def test_the_table_keeps_loader_runs_apart_and_resident_runs_with_older_records():
    old = make_record(steady=2.0, options={})  # before loader mode: no loader option at all
    resident = make_record(steady=2.1, options={"loader": "resident", "workers": "0"})
    w0 = make_record(steady=3.0, options={"loader": "dataloader", "workers": "0"})
    w2 = [make_record(steady=s, options={"loader": "dataloader", "workers": "2"}) for s in (2.5, 2.6)]
    table = compare.rows([old, resident, w0, *w2])
    assert {r["options"]: r["runs"] for r in table} == {
        "": 2, "loader=dataloader, workers=0": 1, "loader=dataloader, workers=2": 2}
    assert "torch 2.13.0+cpu (loader=dataloader, workers=2)" in compare.render(table)


@pytest.mark.parametrize("args,message", [
    (["--framework", "tensorflow", "--option", "tensorflow.loader=tfdata"],
     "tensorflow.loader=tfdata cannot run with tensorflow.loop=epoch: the pipeline would run inside the epoch's"
     " graph, where the wait for each batch cannot be timed; add --option tensorflow.loop=step"),
    (["--framework", "jax", "--option", "jax.loader=host", "--option", "jax.loop=scan"],
     "jax.loader=host cannot run with jax.loop=scan: lax.scan needs the whole epoch on the device before it"
     " starts; use --option jax.loop=step"),
    (["--framework", "torch", "--option", "torch.workers=8"],
     "torch.workers=8 needs torch.loader=dataloader: resident data has no workers"),
    (["--framework", "torch", "--option", "torch.workers=3", "--option", "torch.loader=dataloader"],
     "torch option workers='3': choose from 0, 1, 2, 4, 8, 16"),
])
def test_the_cli_refuses_bad_combinations_in_one_line(tmp_path, args, message):
    done = run_cli("run", "--dataset", "synthetic", "--preset", "smoke", "--out", tmp_path / "out", *args, timeout=60)
    assert done.returncode == 2
    assert done.stderr == f"dlbench: error: {message}\n"
    assert not (tmp_path / "out").exists()


# ---- each framework's per-sample transform: every pixel level, bit for bit ----------------------

@needs_torch
@pytest.mark.parametrize("mean,std", NORMS)
def test_torch_per_sample_transform_is_the_resident_arithmetic(mean, std):
    import torch

    images = LEVELS.reshape(1, 64, 16).repeat(3, 0)
    data = loaders.RawImages(torch.from_numpy(images), torch.zeros(3, dtype=torch.int64), mean, std)
    x, y = data[1]
    assert x.dtype == torch.float32 and tuple(x.shape) == (1, 64, 16) and y.dtype == torch.int64
    assert np.array_equal(x.numpy()[0], store.normalize(images[1], mean, std))


@needs_tf
@pytest.mark.parametrize("mean,std", NORMS)
def test_tfdata_batches_are_the_resident_rows_bit_for_bit(mean, std):
    import tensorflow as tf

    images = np.random.default_rng(1).integers(0, 256, (96, 28, 28), dtype=np.uint8)
    images.reshape(-1)[:256] = np.arange(256)
    labels = np.arange(96) % 10
    order = np.random.default_rng(2).permutation(96)[:90].reshape(3, 30)
    for workers in (0, 2):
        feed = loaders.TfData(tf, images, labels, mean, std, workers, "/CPU:0")
        got = list(feed.epoch(order))
        assert len(got) == 3
        for row, (x, y) in zip(order, got):
            assert np.array_equal(x.numpy(), store.normalize(images[row], mean, std)[..., None])
            assert np.array_equal(y.numpy(), labels[row])


# ---- one epoch in loader mode = one epoch resident, bitwise -------------------------------------

def _train_one_epoch(framework, options, folder):
    from runner import backends

    spec = make_spec("smoke", dataset="synthetic", limit_train=640)  # 10 steps
    data = store.load_for(spec, folder)
    b = backends.create(framework, spec, "cpu", options)
    b.setup(reference.initial_params(spec), data.train_x, data.train_y, data.test_x, data.test_y)
    stats = b.train_epoch(reference.epoch_order(spec, 0))
    b.synchronize()
    return stats, b.parameters()


RUNS = [pytest.param("torch", "dataloader", {}, marks=needs_torch),
        pytest.param("tensorflow", "tfdata", {"loop": "step"}, marks=needs_tf),
        pytest.param("jax", "host", {}, marks=needs_jax)]


@pytest.mark.slow
@pytest.mark.parametrize("framework,loader,extra", RUNS)
def test_one_loader_epoch_trains_to_the_resident_weights_bit_for_bit(synthetic_dir, framework, loader, extra):
    resident, want = _train_one_epoch(framework, extra, synthetic_dir)
    assert resident.data_s is None  # the resident path reads no clock
    for workers in ("0", "2"):
        stats, got = _train_one_epoch(framework, {**extra, "loader": loader, "workers": workers}, synthetic_dir)
        assert stats.steps == resident.steps == 10
        assert float(stats.loss_sum) == float(resident.loss_sum) and int(stats.correct) == int(resident.correct)
        assert 0 < stats.data_s < 60
        for name in want:
            assert np.array_equal(got[name], want[name]), f"{framework} workers={workers}: {name} differs"


@needs_jax
def test_jax_host_loader_without_grain_says_how_to_get_it(synthetic_dir, monkeypatch):
    from runner.backends.base import FrameworkUnavailable

    monkeypatch.setitem(sys.modules, "grain", None)  # import grain now raises ImportError
    spec = make_spec("smoke", dataset="synthetic", limit_train=640)
    data = store.load_for(spec, synthetic_dir)
    from runner import backends

    b = backends.create("jax", spec, "cpu", {"loader": "host"})
    with pytest.raises(FrameworkUnavailable, match=r"jax.loader=host needs grain .*pip install 'dlbench\[jax\]'"):
        b.setup(reference.initial_params(spec), data.train_x, data.train_y, data.test_x, data.test_y)


# ---- the real command: a record that says how the data was fed and how long it waited -----------

CLI = [pytest.param("torch", ["torch.loader=dataloader"], marks=needs_torch),
       pytest.param("tensorflow", ["tensorflow.loader=tfdata", "tensorflow.loop=step"], marks=needs_tf),
       pytest.param("jax", ["jax.loader=host"], marks=needs_jax)]


@pytest.mark.slow
@pytest.mark.parametrize("framework,options", CLI)
def test_a_loader_run_records_its_wait_options_and_passes_parity(tmp_path, synthetic_dir, framework, options):
    opts = [a for o in [*options, f"{framework}.workers=2"] for a in ("--option", o)]
    done = run_cli("run", "--framework", framework, "--dataset", "synthetic", "--preset", "smoke",
                   "--data-dir", synthetic_dir, "--parity-steps", "5", "--out", tmp_path, *opts, timeout=600)
    assert done.returncode == 0, done.stderr
    (path,) = tmp_path.glob("*.json")
    rec = json.loads(path.read_text())
    waits, epochs = rec["timing"]["epoch_data_s"], rec["timing"]["epoch_train_s"]
    assert len(waits) == 1 and 0 < waits[0] < epochs[0]  # part of the epoch's training time
    assert rec["parity"]["status"] == "pass"
    recorded = rec["framework"]["options"]
    assert recorded["workers"] == "2"
    assert all(recorded[k] == v for k, v in (o.split(".", 1)[1].split("=") for o in options))
    assert f"({compare.options_label(rec)})" in done.stdout and "workers=2" in compare.options_label(rec)
