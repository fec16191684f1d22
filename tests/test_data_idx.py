"""IDX reader: the real shipped files against an independent parse, and every kind of bad file."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _runs_helpers import DATASETS
from binaryvae.data.datasets import MNIST_MINI_DIR
from binaryvae.data.idx import (
    IdxError,
    parse_idx,
    read_idx,
    read_image_label_pair,
    sha256_decompressed,
)
from binaryvae.errors import BadInput

IMAGES = MNIST_MINI_DIR / "t10k-images-idx3-ubyte.gz"
LABELS = MNIST_MINI_DIR / "t10k-labels-idx1-ubyte.gz"
SHARED = DATASETS / "fashion-mnist"


def _independent_parse(path: Path) -> tuple[tuple[int, ...], np.ndarray]:
    """Header with struct, data with numpy: no code shared with the reader under test."""
    raw = gzip.open(path).read()
    magic = struct.unpack(">I", raw[:4])[0]
    ndim = magic & 0xFF
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    return dims, np.frombuffer(raw[4 + 4 * ndim:], dtype=np.uint8)


def test_shipped_mnist_test_set_matches_independent_parse():
    x = read_idx(IMAGES)
    y = read_idx(LABELS)
    dims_x, flat_x = _independent_parse(IMAGES)
    dims_y, flat_y = _independent_parse(LABELS)
    assert x.shape == dims_x == (10000, 28, 28) and x.dtype == np.uint8
    assert y.shape == dims_y == (10000,) and y.dtype == np.uint8
    np.testing.assert_array_equal(x.reshape(-1), flat_x)
    np.testing.assert_array_equal(y, flat_y)
    # the well-known first labels of the MNIST test set
    assert y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_pair_reader_flattens_and_types():
    x, y, shape = read_image_label_pair(IMAGES, LABELS)
    assert shape == (28, 28)
    assert tuple(x.shape) == (10000, 784) and str(x.dtype) == "torch.uint8"
    assert tuple(y.shape) == (10000,) and str(y.dtype) == "torch.int64"
    x[0, 0] = 1  # writable: no read-only numpy buffer behind it


def test_raw_and_gzip_give_the_same_array(tmp_path):
    raw = tmp_path / "labels-idx1-ubyte"  # no .gz suffix: detection is by magic bytes
    raw.write_bytes(gzip.open(LABELS).read())
    np.testing.assert_array_equal(read_idx(raw), read_idx(LABELS))
    assert sha256_decompressed(raw) == sha256_decompressed(LABELS)


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared Fashion-MNIST not available")
def test_fashion_mnist_test_files():
    x, y, shape = read_image_label_pair(SHARED / "t10k-images-idx3-ubyte.gz",
                                        SHARED / "t10k-labels-idx1-ubyte.gz")
    assert tuple(x.shape) == (10000, 784) and shape == (28, 28)
    assert y.bincount().tolist() == [1000] * 10


def _idx(array: np.ndarray, type_code: int = 0x08) -> bytes:
    header = struct.pack(">HBB", 0, type_code, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def test_other_dtypes_parse_big_endian():
    a = np.arange(-6, 6, dtype=np.int32).reshape(3, 4)
    np.testing.assert_array_equal(parse_idx(_idx(a, 0x0C)), a)
    f = np.linspace(0, 1, 5).astype(np.float32)
    np.testing.assert_array_equal(parse_idx(_idx(f, 0x0D)), f)


GOOD = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)


@pytest.mark.parametrize(
    "data, what",
    [
        (_idx(GOOD)[:-1], "truncated"),
        (_idx(GOOD)[:10], "truncated header"),
        (b"\x00\x00", "truncated"),
        (_idx(GOOD) + b"\x00\x00", "2 trailing bytes"),
        (b"\x01\x02" + _idx(GOOD)[2:], "bad magic"),
        (b"\x00\x00\x07\x03" + _idx(GOOD)[4:], "unknown type code"),
        (b"\x00\x00\x08\x00", "zero dimensions"),
    ],
)
@pytest.mark.parametrize("compress", [False, True])
def test_bad_files_name_the_file_and_the_problem(tmp_path, data, what, compress):
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(IdxError) as info:
        read_idx(path)
    message = str(info.value)
    assert str(path) in message and what in message
    assert "\n" not in message
    assert isinstance(info.value, BadInput)


def test_truncated_and_corrupted_gzip(tmp_path):
    blob = gzip.compress(_idx(GOOD))
    cut = tmp_path / "cut.gz"
    cut.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(IdxError, match="truncated gzip") as info:
        read_idx(cut)
    assert str(cut) in str(info.value)
    flipped = bytearray(blob)
    flipped[-6] ^= 0xFF  # inside the CRC-32 trailer
    bad = tmp_path / "crc.gz"
    bad.write_bytes(bytes(flipped))
    with pytest.raises(IdxError, match="corrupted gzip") as info:
        read_idx(bad)
    assert str(bad) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(IdxError, match="not found"):
        read_idx(tmp_path / "nope.gz")


def test_mismatched_image_and_label_counts(tmp_path):
    images, labels = tmp_path / "img", tmp_path / "lbl"
    images.write_bytes(_idx(GOOD))
    labels.write_bytes(_idx(np.zeros(3, dtype=np.uint8)))
    with pytest.raises(IdxError, match="holds 2 images but .* holds 3 labels"):
        read_image_label_pair(images, labels)
    with pytest.raises(IdxError, match="expected uint8 labels of 1 dimension"):
        read_image_label_pair(images, images)


_CODES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.int16, 0x0C: np.int32, 0x0D: np.float32,
          0x0E: np.float64}


@settings(max_examples=60, deadline=None)
@given(code=st.sampled_from(sorted(_CODES)),
       shape=st.lists(st.integers(0, 5), min_size=1, max_size=4), data=st.data())
def test_roundtrip_and_every_truncation_is_an_idx_error(code, shape, data):
    a = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape).astype(_CODES[code])
    blob = _idx(a, code)
    np.testing.assert_array_equal(parse_idx(blob), a)
    cut = data.draw(st.integers(0, len(blob) - 1))
    with pytest.raises(IdxError, match="^name: "):
        parse_idx(blob[:cut], "name")
    extra = data.draw(st.binary(min_size=1, max_size=8))
    with pytest.raises(IdxError, match="trailing bytes"):
        parse_idx(blob + extra, "name")
