"""IDX files (the MNIST format): parse and write, with clear errors for damaged files.

    python -m runner data verify

Format: 2 zero bytes, a type code (0x08 = uint8), the number of dimensions, then one big-endian
uint32 per dimension, then the data.
"""

from __future__ import annotations

import numpy as np

from runner.errors import DataError

_UINT8 = 0x08


def parse(payload: bytes, name: str = "IDX data") -> np.ndarray:
    """Decode an uint8 IDX payload into an array; raise DataError naming `name` if malformed."""
    if len(payload) < 4 or payload[0:2] != b"\x00\x00":
        raise DataError(f"{name}: not an IDX file (bad magic {payload[:4].hex() or 'empty'})")
    if payload[2] != _UINT8:
        raise DataError(f"{name}: IDX type code 0x{payload[2]:02x} is not uint8 (0x08)")
    ndim = payload[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(payload) < header:
        raise DataError(f"{name}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(payload, ">u4", ndim, offset=4))
    expected = header + int(np.prod(shape))
    if len(payload) != expected:
        raise DataError(f"{name}: {len(payload)} bytes, but its header {shape} implies {expected}"
                        f" ({'truncated' if len(payload) < expected else 'trailing bytes'})")
    return np.frombuffer(payload, np.uint8, offset=header).reshape(shape)


def dump(array: np.ndarray) -> bytes:
    """Encode a uint8 array as an IDX payload."""
    array = np.ascontiguousarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"IDX writer takes uint8 arrays, got {array.dtype}")
    header = bytes([0, 0, _UINT8, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + array.tobytes()
