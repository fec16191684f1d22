"""The one reader of every JSON file binaryvae reads: bounded, UTF-8 checked, schema-checked.

Run directories come from strangers: a summary.json, metrics.jsonl, config.json, compare.json,
replicas.json, sweep.json or ``.binaryvae-run`` marker may be of the wrong type, hold invalid
UTF-8, be nested 100,000 levels deep, be a link to ``/dev/zero``, or be gigabytes long.
`read_json` and `read_jsonl` refuse each of these with a `BadInput` (exit code 2) whose one-line
message names the file (and the line and field), before anything is done with its contents:

- only regular files are read (a device, FIFO or folder is refused; a symbolic link is followed
  to what it names and that must be a regular file), and at most ``max_bytes`` of them: a bigger
  file is refused from its size, and a file that grows while it is read is cut at
  ``max_bytes + 1`` bytes and refused, so memory and time are bounded whatever the file is;
- the bytes must be UTF-8;
- nesting deeper than ``max_depth`` (arrays and objects) is refused by a linear scan of the
  brackets outside strings *before* `json` parses the text (Python's parser recurses and fails
  with RecursionError at about 1,000 levels);
- the parsed value must match ``schema`` (`check_schema`): the types of every field the caller
  uses, so no caller meets a string where it does arithmetic.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from binaryvae.errors import BadInput

__all__ = [
    "JSON_MAX_BYTES",
    "JSONL_MAX_BYTES",
    "MAX_DEPTH",
    "Dynamic",
    "NUMBER",
    "NUMBER_OR_NULL",
    "Map",
    "Required",
    "check_depth",
    "check_schema",
    "read_bounded",
    "read_json",
    "read_jsonl",
]

# The largest JSON file binaryvae reads: its own files are kilobytes (a sweep.json of thousands
# of cells a few megabytes); the per-epoch metrics of a million epochs with gradient
# diagnostics stay below the second limit.
JSON_MAX_BYTES = 64 << 20  # 64 MiB
JSONL_MAX_BYTES = 256 << 20  # 256 MiB
# binaryvae's own files nest at most 5 levels (sweep.json: cells > runs > summary > labels)
MAX_DEPTH = 64

NUMBER = "a number"  # an int or float, not a bool
NUMBER_OR_NULL = "a number or null"


@dataclass(frozen=True)
class Required:
    """An object key that must be present, with the schema of its value."""

    schema: Any


@dataclass(frozen=True)
class Map:
    """A JSON object with any keys whose values all match ``schema``."""

    schema: Any


@dataclass(frozen=True)
class Dynamic:
    """A schema that depends on the value: it must match ``base``, then ``make(value)``
    (e.g. an object whose keys starting with ``test_`` must hold numbers)."""

    base: Any
    make: Callable[[Any], Any]


def _describe(schema: Any) -> str:
    if isinstance(schema, str):
        return schema
    if isinstance(schema, type):
        return _TYPE_NAMES.get(schema, schema.__name__)
    if isinstance(schema, tuple):
        return " or ".join(_describe(s) for s in schema)
    if isinstance(schema, dict | Map):
        return "an object"
    if isinstance(schema, list):
        return "an array"
    if isinstance(schema, Required):
        return _describe(schema.schema)
    if isinstance(schema, Dynamic):
        return _describe(schema.base)
    return "a valid value"  # a callable check


_TYPE_NAMES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    type(None): "null",
}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if len(repr(value)) <= 20 else "a number"
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else "a string"
    return "an array" if isinstance(value, list) else "an object"


def _matches(value: Any, schema: Any) -> bool:
    """Does ``value``'s type match ``schema`` at this level (children checked separately)?"""
    if isinstance(schema, Required):
        schema = schema.schema
    if isinstance(schema, Dynamic):
        return _matches(value, schema.base)
    if isinstance(schema, tuple):
        return any(_matches(value, s) for s in schema)
    if schema == NUMBER:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if schema == NUMBER_OR_NULL:
        return value is None or _matches(value, NUMBER)
    if schema is Any:
        return True
    if isinstance(schema, dict | Map):
        return isinstance(value, dict)
    if isinstance(schema, list):
        return isinstance(value, list)
    if schema is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if schema is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(schema, type):
        return isinstance(value, schema)
    if callable(schema):
        return bool(schema(value))
    raise TypeError(f"not a schema: {schema!r}")  # pragma: no cover - a programming error


def _children(value: Any, schema: Any) -> list[tuple[str, Any, Any]]:
    """(path suffix, child value, child schema) of the alternative of ``schema`` that matched."""
    if isinstance(schema, Required):
        schema = schema.schema
    if isinstance(schema, Dynamic):
        return _children(value, schema.base) + _children(value, schema.make(value))
    if isinstance(schema, tuple):
        schema = next(s for s in schema if _matches(value, s))
        return _children(value, schema)
    if isinstance(schema, dict) and isinstance(value, dict):
        out = []
        for key, sub in schema.items():
            if key in value:
                out.append((f".{key}", value[key], sub))
            elif isinstance(sub, Required):
                out.append((f".{key}", _MISSING, sub))
        return out
    if isinstance(schema, Map) and isinstance(value, dict):
        return [(f".{k}", v, schema.schema) for k, v in value.items()]
    if isinstance(schema, list) and schema and isinstance(value, list):
        return [(f"[{i}]", v, schema[0]) for i, v in enumerate(value)]
    return []


_MISSING = object()


def check_schema(value: Any, schema: Any, where: str, field: str = "") -> None:
    """BadInput "WHERE: FIELD must be ..., got ..." unless ``value`` matches ``schema``.

    A schema is: a Python type (``int`` excludes bools; ``float`` accepts ints), `NUMBER`,
    `NUMBER_OR_NULL`, ``typing.Any``, a tuple of alternatives, ``{key: schema}`` (an object
    whose listed keys, where present, match; `Required` keys must be present; other keys are
    free), `Map(schema)` (an object whose every value matches), ``[schema]`` (an array of
    matching items), `Dynamic` (a schema made from the value) or a predicate
    ``value -> bool``. Iterative: no recursion limit is reached.
    """
    stack = [(field, value, schema)]
    while stack:
        path, item, sub = stack.pop()
        name = path.lstrip(".")
        if item is _MISSING:
            raise BadInput(f"{where}: field {name} is missing (must be {_describe(sub)})")
        if not _matches(item, sub):
            what = f"field {name} must be" if name else "must hold"
            raise BadInput(f"{where}: {what} {_describe(sub)}, got {_json_type(item)}")
        stack.extend((path + suffix, v, s) for suffix, v, s in reversed(_children(item, sub)))


def read_bounded(path: str | os.PathLike, max_bytes: int, what: str = "file") -> bytes:
    """At most ``max_bytes`` bytes of the regular file ``path``; BadInput naming it otherwise.

    Refused: a missing or unreadable file, anything that is not a regular file (after following
    symbolic links: ``/dev/zero``, a FIFO, a folder), a file bigger than ``max_bytes``. Never
    reads more than ``max_bytes + 1`` bytes, whatever the file does meanwhile.
    """
    path = Path(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused just below)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise BadInput(f"{what} not found: {path}") from None
    except OSError as e:
        raise BadInput(f"cannot read {path}: {e.strerror or e}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "a folder" if stat.S_ISDIR(info.st_mode) else "a device, FIFO or socket"
            raise BadInput(f"cannot read {path}: not a regular file ({kind})")
        if info.st_size > max_bytes:
            raise BadInput(
                f"cannot read {path}: {info.st_size:,} bytes, more than the {max_bytes:,} a "
                f"{what} may have"
            )
        parts, got = [], 0
        while got <= max_bytes:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - got))
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
        if got > max_bytes:
            raise BadInput(
                f"cannot read {path}: more than the {max_bytes:,} bytes a {what} may have"
            )
        return b"".join(parts)
    except OSError as e:
        raise BadInput(f"cannot read {path}: {e.strerror or e}") from None
    finally:
        os.close(fd)


# a JSON string (escapes included); what is left outside strings holds the structure
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")


def check_depth(data: bytes, max_depth: int, where: str) -> None:
    """BadInput when arrays/objects in the JSON text ``data`` nest deeper than ``max_depth``.

    One linear pass over the brackets outside strings, stopping at the first level too deep;
    malformed text is left to the parser to name.
    """
    depth = 0
    for match in _BRACKET.finditer(_STRING.sub(b'""', data)):
        if match.group() in (b"[", b"{"):
            depth += 1
            if depth > max_depth:
                raise BadInput(f"{where}: nested more than {max_depth} levels deep")
        else:
            depth -= 1


def _decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadInput(
            f"{where}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})"
        ) from None


def _parse(data: bytes, where: str, max_depth: int) -> Any:
    text = _decode(data, where)
    check_depth(data, max_depth, where)
    try:
        return json.loads(text)
    except RecursionError:  # pragma: no cover - check_depth keeps the parser far from it
        raise BadInput(f"{where}: nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, or an integer of more than 4,300 digits
        raise BadInput(f"{where}: not valid JSON ({e})") from None


def _torn(line: bytes, max_depth: int) -> bool:
    """True when ``line`` is not a complete JSON text (cut short: bad UTF-8 at its end, or JSON
    that ends early); a complete line of the wrong kind is not torn, and is refused."""
    try:
        text = line.decode("utf-8")
        check_depth(line, max_depth, "")
    except UnicodeDecodeError as e:
        return e.reason == "unexpected end of data"  # a character cut by the end of the line
    except BadInput:
        return False
    try:
        json.loads(text)
    except ValueError:
        return True
    return False


def read_json(
    path: str | os.PathLike,
    schema: Any = dict,
    *,
    what: str | None = None,
    max_bytes: int = JSON_MAX_BYTES,
    max_depth: int = MAX_DEPTH,
) -> Any:
    """The JSON value in file ``path``, checked (module docstring); BadInput naming the file.

    ``schema``: what the value must be (`check_schema`; default: any JSON object). ``what``:
    how messages name the file when it is missing (default: its name).
    """
    path = Path(path)
    data = read_bounded(path, max_bytes, what or path.name)
    value = _parse(data, str(path), max_depth)
    check_schema(value, schema, str(path))
    return value


def read_jsonl(
    path: str | os.PathLike,
    row_schema: Any = dict,
    *,
    max_bytes: int = JSONL_MAX_BYTES,
    max_depth: int = MAX_DEPTH,
    keep: Callable[[Any], bool] | None = None,
) -> list[Any]:
    """The rows of a JSON-lines file (one JSON value per line; blank lines ignored).

    A last line that is not a complete row (a write killed half-way, which an append-only
    writer can leave only at the end) is skipped; any other line that is not valid UTF-8 JSON
    matching ``row_schema`` is refused: BadInput naming the file, the line number and the field.
    ``keep``: rows for which it returns False are left out (after their check).
    """
    path = Path(path)
    data = read_bounded(path, max_bytes, path.name)
    lines = data.split(b"\n")
    numbered = [(i + 1, line) for i, line in enumerate(lines) if line.strip()]
    rows = []
    for index, (number, line) in enumerate(numbered):
        where = f"{path} line {number}"
        if index == len(numbered) - 1 and _torn(line, max_depth):
            break  # a write killed half-way: the epoch it would have recorded is not complete
        row = _parse(line, where, max_depth)
        check_schema(row, row_schema, where)
        if keep is None or keep(row):
            rows.append(row)
    return rows
