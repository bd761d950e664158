"""Atomic file writes: readers see the old file or the new one, never half of one.

    python -m runner run --out results/     # records (replace=False)
    python -m runner data fetch             # dataset files (replace=True)

Records are never overwritten (`replace=False` fails if the name exists); cache files are
replaced when a corrupt copy is fetched again. New files get the mode the umask gives (0644 under
the usual 022), as `open()` would: a results folder shared by a team stays readable to it.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def _create_temp(folder: Path, name: str) -> tuple[int, str]:
    """A new file beside the target, opened O_EXCL with mode 0666 so the kernel applies the umask
    (tempfile.mkstemp would make it 0600, and the rename keeps that mode)."""
    for _ in range(100):
        tmp = str(folder / f".{name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {folder / name}")


def write_bytes(path: Path, data: bytes, replace: bool) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path.parent, path.name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails with FileExistsError instead of clobbering
            os.unlink(tmp)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
