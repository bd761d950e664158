import numpy as np
import pytest

from runner.data import idx
from runner.errors import DataError


def test_round_trip():
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    payload = idx.dump(a)
    assert payload[:4] == b"\x00\x00\x08\x03" and len(payload) == 4 + 3 * 4 + a.size
    assert np.array_equal(idx.parse(payload), a)


def test_labels_file():
    assert idx.parse(idx.dump(np.array([7, 2, 1], np.uint8))).tolist() == [7, 2, 1]


def test_truncated_file_is_an_error_naming_the_file():
    payload = idx.dump(np.zeros((10, 28, 28), np.uint8))
    with pytest.raises(DataError, match=r"train-images: 7756 bytes, but its header \(10, 28, 28\) implies 7856 \(truncated\)"):
        idx.parse(payload[:-100], "train-images")


def test_truncated_header():
    with pytest.raises(DataError, match="truncated IDX header"):
        idx.parse(b"\x00\x00\x08\x03\x00\x00", "x")


def test_wrong_magic():
    with pytest.raises(DataError, match="not an IDX file"):
        idx.parse(b"\x1f\x8b\x08\x00" + b"\x00" * 20, "gzip-not-decompressed")
    with pytest.raises(DataError, match="not an IDX file"):
        idx.parse(b"", "empty")


def test_wrong_type_code():
    with pytest.raises(DataError, match="type code 0x0d is not uint8"):
        idx.parse(b"\x00\x00\x0d\x01\x00\x00\x00\x01" + b"\x00" * 4, "floats")


def test_trailing_bytes():
    with pytest.raises(DataError, match="trailing bytes"):
        idx.parse(idx.dump(np.zeros(4, np.uint8)) + b"\x00", "x")


def test_writer_takes_uint8_only():
    with pytest.raises(ValueError):
        idx.dump(np.zeros(3, np.float32))
