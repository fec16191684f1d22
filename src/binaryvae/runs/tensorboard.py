"""The metrics of a run as TensorBoard scalars: ``<run dir>/tensorboard/`` (``--tensorboard``).

With ``TrainConfig.tensorboard`` every metrics row is also written as TensorBoard scalars, step =
the row's optimizer step (``step``): one scalar per number of the row under its metrics.jsonl
key (``test_discrete_elbo``, ``train_loss``, ``track_bits_flipped``, ``epoch``, ...; a null is
left out), and each gradient diagnostic as ``gradient/<key>`` at its own step. The records are
TensorBoard's event-file format (TFRecord framing around ``Event`` protocol buffers of the
optional extra ``binaryvae[tensorboard]``), written by binaryvae itself through
`binaryvae.storage`: the folder is reached from the run directory without following links (a
link where ``tensorboard/`` or its file should be is refused, naming it), the file is first
written atomically and then appended to with ``O_APPEND | O_NOFOLLOW``.

The folder mirrors metrics.jsonl: when a run starts or resumes, its event file is rewritten
from the rows metrics.jsonl keeps (a resume drops the rows its checkpoint does not cover), so
every scalar in it is a number of metrics.jsonl and a TensorBoard reading the folder sees each
step once.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path
from typing import Any

from binaryvae.errors import BadInput

__all__ = [
    "EVENT_SUFFIX",
    "FOLDER",
    "INSTALL_HINT",
    "EventWriter",
    "crc32c",
    "require_tensorboard",
    "row_scalars",
]

FOLDER = "tensorboard"
# the file: events.out.tfevents.<seconds><EVENT_SUFFIX> (TensorBoard reads names with tfevents)
EVENT_SUFFIX = ".binaryvae"
INSTALL_HINT = "pip install 'binaryvae[tensorboard]'"


def _protos():
    """TensorBoard's ``event_pb2`` and ``summary_pb2``; BadInput naming the extra without it."""
    try:
        from tensorboard.compat.proto import event_pb2, summary_pb2
    except ImportError as e:
        raise BadInput(
            f"--tensorboard (tensorboard) needs the optional extra: {INSTALL_HINT} ({e})"
        ) from None
    return event_pb2, summary_pb2


def require_tensorboard() -> None:
    """BadInput (one line naming ``pip install 'binaryvae[tensorboard]'``) when the
    TensorBoard package is not installed; nothing otherwise."""
    _protos()


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data``, what TFRecord framing checksums with."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _record(payload: bytes) -> bytes:
    """One TFRecord: length, masked CRC of the length, the payload, masked CRC of it."""
    header = struct.pack("<Q", len(payload))
    return (
        header
        + struct.pack("<I", _masked(header))
        + payload
        + struct.pack("<I", _masked(payload))
    )


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def row_scalars(row: dict[str, Any]) -> list[tuple[int, str, float]]:
    """The scalars of a metrics row: ``(step, tag, value)`` for every number of the row but
    ``step`` (the row's step) and for every number of its gradient records
    (``gradient/<key>`` at the record's step); nulls, strings and booleans left out."""
    from binaryvae.storage import json_safe

    row = json_safe(row)  # NaN/inf as null, as metrics.jsonl holds them
    step = int(row.get("step", 0))
    out = []
    for key in sorted(row):
        value = _number(row[key])
        if key != "step" and value is not None:
            out.append((step, key, value))
    for record in row.get("gradient") or []:
        for key in sorted(record):
            value = _number(record[key])
            if key != "step" and value is not None:
                out.append((int(record["step"]), f"gradient/{key}", value))
    return out


class EventWriter:
    """The event file of one run directory (module docstring)."""

    def __init__(self, run_path: str | Path):
        self.event_pb2, self.summary_pb2 = _protos()
        self.folder = Path(run_path) / FOLDER
        self.path: Path | None = None

    def _event(self, **fields: Any) -> bytes:
        return _record(self.event_pb2.Event(wall_time=time.time(), **fields).SerializeToString())

    def _row_bytes(self, row: dict[str, Any]) -> bytes:
        out = []
        for step, tag, value in row_scalars(row):
            summary = self.summary_pb2.Summary(
                value=[self.summary_pb2.Summary.Value(tag=tag, simple_value=value)]
            )
            out.append(self._event(step=step, summary=summary))
        return b"".join(out)

    def start(self, rows: list[dict[str, Any]]) -> None:
        """Replace the folder's event files by one holding ``rows`` (metrics.jsonl's rows now);
        `binaryvae.storage.LinkRefused` for a linked folder, nothing written then."""
        from binaryvae.storage import atomic_write_bytes, reset_folder

        reset_folder(self.folder, EVENT_SUFFIX)
        self.path = self.folder / f"events.out.tfevents.{int(time.time()):010d}{EVENT_SUFFIX}"
        data = self._event(file_version="brain.Event:2")
        data += b"".join(self._row_bytes(row) for row in rows)
        atomic_write_bytes(self.path, data)

    def add_row(self, row: dict[str, Any]) -> None:
        """Append the scalars of one new metrics row."""
        from binaryvae.storage import append_bytes

        if self.path is None:
            raise RuntimeError("EventWriter.add_row before start")
        append_bytes(self.path, self._row_bytes(row))
