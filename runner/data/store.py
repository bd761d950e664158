"""The dataset store: a folder of verified IDX files, filled from the sources on demand.

    python -m runner data fetch --dataset mnist [--data-dir DIR]
    python -m runner data verify --dataset mnist [--data-dir DIR]

Each dataset has a folder of its own, since MNIST, Fashion-MNIST and the synthetic set share their
four file names: DIR/<dataset>/ in the folder given (`--data-dir DIR`, else $DLBENCH_DATA_DIR), or
the platformdirs user cache's datasets/<dataset>/. A given folder named after the dataset
(`--data-dir ~/data/mnist`) is that dataset's folder itself. Verified files that an older dlbench
left flat in a given folder are still read there, and never written or deleted (docs/data.md).
Every payload is checked against its pin when fetched and again when a run loads it: no training
step ever sees unverified bytes. A corrupt or truncated file is fetched again; writes are atomic.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from runner import atomic
from runner.data import idx, sources
from runner.data.catalog import DATASETS, DatasetInfo, FileInfo
from runner.errors import DataError

PROVENANCE = "SOURCES.json"  # which source supplied each file, for the record


def cache_root() -> Path:
    if os.environ.get("DLBENCH_CACHE_DIR"):
        return Path(os.environ["DLBENCH_CACHE_DIR"])
    import platformdirs

    return Path(platformdirs.user_cache_dir("dlbench"))


def given_folder(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The folder the user gave (--data-dir, else $DLBENCH_DATA_DIR), or None for the user cache."""
    if data_dir:
        return Path(data_dir).expanduser()
    if os.environ.get("DLBENCH_DATA_DIR"):
        return Path(os.environ["DLBENCH_DATA_DIR"]).expanduser()
    return None


def folder_for(dataset: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Where `dataset`'s files are kept and fetched to: a folder of its own."""
    given = given_folder(data_dir)
    if given is None:
        return cache_root() / "datasets" / dataset
    return given if given.name == dataset else given / dataset


def _flat(dataset: str, data_dir) -> Path | None:
    """The given folder itself, where dlbench kept one dataset's files flat before each dataset had a
    folder of its own; None where there is no such folder to look in."""
    given = given_folder(data_dir)
    return None if given is None or given == folder_for(dataset, data_dir) else given


def _origin(data_dir) -> str:
    """Where folder_for took the folder from, in the words the user would change."""
    if data_dir:
        return "--data-dir"
    if os.environ.get("DLBENCH_DATA_DIR"):
        return "$DLBENCH_DATA_DIR"
    if os.environ.get("DLBENCH_CACHE_DIR"):
        return "under $DLBENCH_CACHE_DIR"
    return "the user cache, under $HOME"


def make_folder(folder: Path, origin: str) -> Path:
    """mkdir -p, or a DataError that names the folder and how to choose another (a HOME that does
    not exist or is read-only is common in containers and batch jobs)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create the dataset folder {folder} ({origin}): {e.strerror or e}; choose another"
                        " with --data-dir DIR or DLBENCH_DATA_DIR=DIR, or move every dlbench cache with"
                        " DLBENCH_CACHE_DIR=DIR") from None
    return folder


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class FileStatus:
    file: FileInfo
    state: str            # ok | missing | mismatch
    actual: str | None    # sha256 of what is there, if anything


def verify(info: DatasetInfo, folder: Path) -> list[FileStatus]:
    out = []
    for f in info.files:
        path = folder / f.name
        if not path.is_file():
            out.append(FileStatus(f, "missing", None))
            continue
        actual = sha256_file(path)
        out.append(FileStatus(f, "ok" if actual == f.sha256 else "mismatch", actual))
    return out


def find(dataset: str, data_dir=None) -> tuple[Path, list[FileStatus]]:
    """The folder that holds `dataset`'s four verified files, and their states: its own folder
    (folder_for), else a given folder where an older dlbench left them flat; else its own folder,
    with what is missing or wrong there. Reads only."""
    info = DATASETS[dataset]
    folder = folder_for(dataset, data_dir)
    states = verify(info, folder)
    flat = _flat(dataset, data_dir)
    if flat is not None and any(s.state != "ok" for s in states):
        old = verify(info, flat)
        if all(s.state == "ok" for s in old):  # another dataset's files there are just not ok: untouched
            return flat, old
    return folder, states


def ensure(dataset: str, data_dir=None, log=None) -> Path:
    """Make `dataset`'s folder hold the four verified files; return the folder that holds them
    (find's). Flat files in a given folder are a source here, never a target: they may be another
    dataset's under the same names.

    Raises DataError naming the file and both hashes if no source gives good bytes.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    info = DATASETS[dataset]
    folder, states = find(dataset, data_dir)
    todo = [s for s in states if s.state != "ok"]
    if not todo:
        return folder
    make_folder(folder, _origin(data_dir))
    chain = sources.chain(info, folder, cache_root() / "downloads", flat=_flat(dataset, data_dir))
    provenance = read_provenance(folder)
    for status in todo:
        if status.state == "mismatch":
            log(f"{folder / status.file.name}: sha256 {status.actual} does not match the pin"
                f" {status.file.sha256}; fetching it again")
        provenance[status.file.name] = _fetch_one(status, chain, folder)
        log(f"{dataset}/{status.file.name}: verified, from {provenance[status.file.name]}")
    atomic.write_bytes(folder / PROVENANCE, json.dumps(provenance, indent=1).encode(), replace=True)
    return folder


def _fetch_one(status: FileStatus, chain: list, folder: Path) -> str:
    f, tried = status.file, []
    for source in chain:
        try:
            payload = source.fetch(f)
        except sources.SourceUnavailable as e:
            tried.append(f"{source.label}: {e}")
            continue
        actual = hashlib.sha256(payload).hexdigest()
        if actual != f.sha256:
            tried.append(f"{source.label}: sha256 {actual}")
            continue
        atomic.write_bytes(folder / f.name, payload, replace=True)
        return source.label
    raise DataError(f"{f.name}: expected sha256 {f.sha256}, got {status.actual or 'no file'};"
                    f" no source gave good bytes ({'; '.join(tried)})")


def read_provenance(folder: Path) -> dict[str, str]:
    try:
        return dict(json.loads((folder / PROVENANCE).read_text()))
    except (OSError, ValueError, TypeError):
        return {}


@dataclass
class Arrays:
    """Verified dataset arrays, cut to the spec's limits."""

    train_x: np.ndarray   # (N, 28, 28) uint8, or float32 once normalized (load_for)
    train_y: np.ndarray   # (N,) uint8
    test_x: np.ndarray
    test_y: np.ndarray
    sha256: dict[str, str]
    origin: dict[str, str]


def load(dataset: str, folder: Path, limit_train: int | None = None, limit_test: int | None = None) -> Arrays:
    """Read the four files from `folder`, check each against its pin, parse, cut to the limits."""
    info = DATASETS[dataset]
    arrays, hashes = [], {}
    for f in info.files:
        path = folder / f.name
        try:
            payload = path.read_bytes()
        except OSError as e:
            raise DataError(f"{path}: cannot read ({e.strerror}); run: python -m runner data fetch"
                            f" --dataset {dataset}") from None
        actual = hashlib.sha256(payload).hexdigest()
        if actual != f.sha256:
            raise DataError(f"{path}: expected sha256 {f.sha256}, got {actual}")
        hashes[f.name] = actual
        arrays.append(idx.parse(payload, str(path)))
    train_x, train_y, test_x, test_y = arrays
    return Arrays(train_x[:limit_train], train_y[:limit_train], test_x[:limit_test], test_y[:limit_test],
                  hashes, read_provenance(folder))


def load_for(spec, folder: Path) -> Arrays:
    """The spec's data from `folder`: verified, cut to the spec's limits, images normalized to
    float32 (N, 28, 28) once, here, so every backend receives the same bits."""
    a = load(spec.dataset, folder, spec.limit_train, spec.limit_test)
    return replace(a, train_x=normalize(a.train_x, spec.norm_mean, spec.norm_std),
                   test_x=normalize(a.test_x, spec.norm_mean, spec.norm_std))


def normalize(images: np.ndarray, mean: float, std: float) -> np.ndarray:
    """uint8 pixels -> float32 (x/255 - mean)/std, in float32 throughout so every backend gets the
    same bits."""
    x = images.astype(np.float32) / np.float32(255)
    return (x - np.float32(mean)) / np.float32(std)
