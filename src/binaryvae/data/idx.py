"""A strict reader for the IDX file format of MNIST and Fashion-MNIST (gzip-compressed or raw).

The format (http://yann.lecun.com/exdb/mnist/): a 4-byte magic number ``0x00 0x00 TYPE NDIM``,
then NDIM big-endian uint32 dimension sizes, then the data in C order, big-endian. Every
departure from it (bad magic, unknown type code, truncated data, trailing bytes, a gzip stream
that does not decompress) raises :class:`IdxError`, a :class:`~binaryvae.errors.BadInput`
whose one-line message names the file and what is wrong.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from binaryvae.errors import BadInput

__all__ = [
    "IdxError",
    "parse_idx",
    "read_idx",
    "read_idx_bytes",
    "read_idx_header",
    "read_image_label_pair",
    "sha256_decompressed",
    "GZIP_MAGIC",
    "MAX_IDX_BYTES",
]

GZIP_MAGIC = b"\x1f\x8b"

# IDX type code -> big-endian numpy dtype
_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class IdxError(BadInput):
    """An IDX file that is missing, truncated, corrupted or inconsistent with its partner."""


# The largest IDX file binaryvae reads (decompressed): MNIST's training images are 47 MB. A header
# declaring more is refused before any data is decompressed, so a small gzip "bomb" that expands
# to gigabytes costs at most this much memory and time. Below it, the machine decides: a header
# whose data would not fit in the memory available now is refused as well (`check_memory`).
MAX_IDX_BYTES = 1 << 30  # 1 GiB
# reading holds the decompressed bytes and the parsed array at once: twice the data
READ_COPIES = 2
_TRAILING_SEEN = 1 << 16  # trailing bytes counted exactly; beyond, the read stops


def _open(path: Path):
    """The file, or a streaming decompressor when it starts with the gzip magic bytes."""
    f = open(path, "rb")  # noqa: SIM115 - closed by the caller's with-block
    if f.read(2) == GZIP_MAGIC:
        f.close()
        return gzip.open(path, "rb")
    f.seek(0)
    return f


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn what reading ``path`` may raise into IdxError naming it."""
    try:
        yield
    except FileNotFoundError:
        raise IdxError(f"{path}: file not found") from None
    except EOFError:
        raise IdxError(f"{path}: truncated gzip stream") from None
    except (OSError, zlib.error) as e:  # bad CRC, bad header, corrupted deflate data
        if isinstance(e, OSError) and not isinstance(e, gzip.BadGzipFile) and e.errno:
            raise IdxError(f"{path}: unreadable: {e.strerror or e}") from None
        raise IdxError(f"{path}: corrupted gzip data ({e})") from None


def _read_exactly(f, size: int) -> bytes:
    """Up to ``size`` bytes (fewer only at the end of the stream)."""
    parts, got = [], 0
    while got < size:
        chunk = f.read(min(size - got, 1 << 24))
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _declared_bytes(head: bytes, dims: bytes) -> tuple[tuple[int, ...], int]:
    """The shape a header declares and the data bytes it implies."""
    ndim = head[3]
    shape = struct.unpack(f">{ndim}I", dims)
    itemsize = _DTYPES[head[2]].itemsize if head[2] in _DTYPES else 1
    return shape, itemsize * int(np.prod(shape, dtype=object))


def _check_declared(path: Path, declared: int) -> None:
    """IdxError when ``declared`` data bytes exceed `MAX_IDX_BYTES` or, read, would not fit in
    the memory available now (`binaryvae.resources.check_memory`)."""
    if declared > MAX_IDX_BYTES:
        raise IdxError(
            f"{path}: header declares {declared:,} data bytes, more than the "
            f"{MAX_IDX_BYTES:,} of any IDX file binaryvae reads"
        )
    from binaryvae.resources import check_memory

    try:
        check_memory(READ_COPIES * declared, f"reading {path}",
                     f"its header declares {declared:,} data bytes")  # fmt: skip
    except BadInput as e:
        raise IdxError(str(e)) from None


def read_idx_header(path: str | Path) -> tuple[np.dtype, tuple[int, ...]]:
    """``(dtype, shape)`` that an IDX file's header declares, reading only the header (a few
    bytes, also of a gzip file); IdxError for a missing file or a header that is not IDX."""
    path = Path(path)
    with _reading(path), _open(path) as f:
        head = _read_exactly(f, 4)
        if len(head) == 4 and head[:2] == b"\x00\x00" and head[3] != 0:
            head += _read_exactly(f, 4 * head[3])
    if len(head) < 4 or head[:2] != b"\x00\x00" or head[3] == 0 or head[2] not in _DTYPES:
        parse_idx(head, str(path))  # names what is wrong
    if len(head) < 4 + 4 * head[3]:
        raise IdxError(
            f"{path}: truncated header: {len(head)} bytes, need {4 + 4 * head[3]} for "
            f"{head[3]} dimensions"
        )
    shape, _ = _declared_bytes(head[:4], head[4:])
    return _DTYPES[head[2]].newbyteorder("="), shape


def read_idx_bytes(path: str | Path) -> bytes:
    """The decompressed bytes of an IDX file; gzip is detected by its magic bytes, not the name.

    Decompression stops at the size the header declares plus one byte (enough for `parse_idx`
    to report trailing data), and a header declaring more than `MAX_IDX_BYTES`, or more than
    the memory available now can hold while it is read and parsed, is refused before any data
    is read: the work is bounded by the header, never by what the stream would expand to.
    """
    path = Path(path)
    with _reading(path), _open(path) as f:
        head = _read_exactly(f, 4)
        if len(head) < 4 or head[:2] != b"\x00\x00" or head[3] == 0:
            return head + _read_exactly(f, 4 * 255)  # parse_idx names what is wrong
        ndim = head[3]
        dims = _read_exactly(f, 4 * ndim)
        if len(dims) < 4 * ndim:
            return head + dims
        _, declared = _declared_bytes(head, dims)
        _check_declared(path, declared)
        data = _read_exactly(f, declared + _TRAILING_SEEN)
        if len(data) == declared + _TRAILING_SEEN and f.read(1):
            raise IdxError(
                f"{path}: more than {_TRAILING_SEEN:,} trailing bytes after the "
                f"{declared:,} data bytes the header declares"
            )
        return head + dims + data


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse decompressed IDX bytes into an array of the stored shape and native-endian dtype.

    ``name`` is used in error messages only.
    """
    if len(data) < 4:
        raise IdxError(f"{name}: truncated: {len(data)} bytes, too short for an IDX header")
    zero, type_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0:
        raise IdxError(f"{name}: bad magic number 0x{data[:4].hex()} (not an IDX file)")
    if type_code not in _DTYPES:
        raise IdxError(
            f"{name}: bad magic number 0x{data[:4].hex()}: unknown type code 0x{type_code:02x}"
        )
    if ndim == 0:
        raise IdxError(f"{name}: bad magic number 0x{data[:4].hex()}: zero dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxError(
            f"{name}: truncated header: {len(data)} bytes, need {header} for {ndim} dimensions"
        )
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _DTYPES[type_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(data) - header
    if found < expected:
        raise IdxError(
            f"{name}: truncated: header says shape {shape} ({expected} data bytes), found {found}"
        )
    if found > expected:
        raise IdxError(
            f"{name}: {found - expected} trailing bytes after the {expected} data "
            f"bytes of shape {shape}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))  # a writable, native-endian copy


def read_idx(path: str | Path, digests: dict[str, str] | None = None) -> np.ndarray:
    """Read and validate one IDX file (gzip or raw); see :func:`parse_idx`.

    ``digests``: when given, ``digests[str(path)]`` is set to the hex sha256 of the file's
    decompressed bytes (what `sha256_decompressed` gives), computed from the bytes read.
    """
    data = read_idx_bytes(path)
    array = parse_idx(data, str(path))
    if digests is not None:
        digests[str(path)] = hashlib.sha256(data).hexdigest()
    return array


def read_image_label_pair(
    images: str | Path, labels: str | Path, digests: dict[str, str] | None = None
) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """Read an images file (uint8, 3 dims) and its labels file (uint8, 1 dim).

    Returns ``(x, y, image_shape)``: x uint8 ``[N, H*W]``, y int64 ``[N]``, image_shape (H, W).
    Raises IdxError when a file has the wrong type or rank, or the two counts differ.
    ``digests``: filled with each file's decompressed sha256 (`read_idx`).
    """
    x = read_idx(images, digests)
    y = read_idx(labels, digests)
    if x.dtype != np.uint8 or x.ndim != 3:
        raise IdxError(
            f"{images}: expected uint8 images of 3 dimensions, got {x.dtype} with shape {x.shape}"
        )
    if y.dtype != np.uint8 or y.ndim != 1:
        raise IdxError(
            f"{labels}: expected uint8 labels of 1 dimension, got {y.dtype} with shape {y.shape}"
        )
    if x.shape[0] != y.shape[0]:
        raise IdxError(f"{images} holds {x.shape[0]} images but {labels} holds {y.shape[0]} labels")
    n, h, w = x.shape
    x_t = torch.from_numpy(np.ascontiguousarray(x).reshape(n, h * w))  # uint8 [N, H*W]
    y_t = torch.from_numpy(y.astype(np.int64))  # int64 [N]
    return x_t, y_t, (h, w)


def sha256_decompressed(path: str | Path) -> str:
    """Hex sha256 of a file's decompressed bytes (gzip detected by magic; raw files as they are).

    Archives are never compared: re-compressed copies (e.g. Debian's) have the same content.
    """
    path = Path(path)
    digest = hashlib.sha256()
    total = 0
    try:
        with _open(path) as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                total += len(chunk)
                if total > MAX_IDX_BYTES:
                    raise IdxError(
                        f"{path}: decompresses to more than {MAX_IDX_BYTES:,} bytes, more than "
                        "any IDX file binaryvae reads"
                    )
                digest.update(chunk)
    except FileNotFoundError:
        raise IdxError(f"{path}: file not found") from None
    except EOFError:
        raise IdxError(f"{path}: truncated gzip stream") from None
    except (OSError, zlib.error) as e:
        raise IdxError(f"{path}: corrupted gzip data ({e})") from None
    return digest.hexdigest()
