"""The tensor bundle the Flux backend hands to Julia: manifest.json + tensors.bin in one folder.

    python -m runner run --framework flux      # flux_backend writes one per setup (weights, data, layers)
    julia --project=julia -e 'using Pkg; Pkg.test()'   # julia/test reads the fixture bundle in julia/test/fixture

Each tensor is stored as NumPy's C-order bytes, little-endian, at a 64-byte aligned offset; the
manifest lists name, dtype, NumPy shape and offset in writing order, plus free-form metadata.
Julia (julia/src/bundle.jl) reads the bytes column-major into an array whose dimensions are the
NumPy shape reversed, so J[i_k, ..., i_1] == A[i_1, ..., i_k] with no copy: (N, H, W) images
become WHCN-ready (W, H, N), OIHW kernels become Flux's (W, H, I, O). `read_as_julia` reads a
bundle back with exactly those conventions, for tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

FORMAT = "dlbench-tensors/1"
ALIGN = 64
DTYPES = ("float32", "float64", "int64", "uint8")  # what julia/src/bundle.jl knows


def write(folder: Path, tensors: dict[str, np.ndarray], meta: dict | None = None) -> Path:
    """Write `tensors` (in order) and `meta` into `folder`; returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    entries, offset = [], 0
    with open(folder / "tensors.bin", "wb") as f:
        for name, a in tensors.items():
            a = np.asarray(a)
            if a.dtype.name not in DTYPES:
                raise ValueError(f"{name}: dtype {a.dtype} is not one of {', '.join(DTYPES)}")
            a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
            pad = -offset % ALIGN
            f.write(b"\0" * pad)
            offset += pad
            entries.append({"name": name, "dtype": a.dtype.name, "shape": list(a.shape), "offset": offset})
            f.write(a.data)  # C-contiguous: the buffer is the C-order bytes, no copy
            offset += a.nbytes
    manifest = {"format": FORMAT, "byte_order": "little", "tensors": entries, **(meta or {})}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return folder


def read_as_julia(folder: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """(manifest, {name: array}) with each array as Julia sees it: the bytes read column-major
    (Fortran order) into the reversed shape. Not used by the backend; it documents and tests
    the convention julia/src/bundle.jl relies on."""
    folder = Path(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{folder}: format {manifest.get('format')!r}, expected {FORMAT}")
    raw = (folder / "tensors.bin").read_bytes()
    out = {}
    for t in manifest["tensors"]:
        dtype = np.dtype(t["dtype"]).newbyteorder("<")
        dims = tuple(reversed(t["shape"]))
        count = int(np.prod(dims, dtype=np.int64))
        flat = np.frombuffer(raw, dtype=dtype, count=count, offset=t["offset"])
        out[t["name"]] = flat.reshape(dims, order="F")
    return manifest, out


def from_julia(a) -> np.ndarray:
    """A Julia array handed back in bundle layout (juliacall ArrayValue or NumPy) -> the canonical
    NumPy array: axes reversed, copied into C order (Julia may free the original)."""
    a = a.to_numpy() if hasattr(a, "to_numpy") else np.asarray(a)
    return np.array(a.transpose(), order="C", copy=True)
