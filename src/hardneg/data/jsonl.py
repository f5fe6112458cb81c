"""JSON reading with one-line errors that name the file, the line and the fix.

Every reader of user JSON goes through ``loads_json`` (or ``iter_jsonl`` / ``read_json_file``), so each way
``json.loads`` can fail, or succeed with something unusable, is reported the same way: malformed text, nesting
too deep for the parser (RecursionError), integers too long to convert (ValueError), and lone surrogate escapes
such as ``"\\ud800"`` (json accepts them, but the string can never be encoded to UTF-8 later). A UTF-8
byte-order mark at the start of a file is skipped.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hardneg.errors import HardnegError

# A single JSON line above this size is almost surely a broken file (a missing newline joining records,
# a binary file); refusing it keeps memory bounded and gives a clear message instead of a stall.
MAX_LINE_BYTES = 16 * 1024 * 1024

BOM = b"\xef\xbb\xbf"  # UTF-8 byte-order mark (Windows editors write one)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # a \uD800-\uDFFF escape in the raw text
_SURROGATE = re.compile("[\ud800-\udfff]")


def _lone_surrogate(obj: Any) -> str | None:
    """The first lone surrogate in any string (key or value) of a decoded JSON value, else None."""
    stack = [obj]  # iterative: the value may be nested as deeply as the parser allows
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            m = _SURROGATE.search(v)
            if m:
                return m.group()
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return None


def loads_json(text: str, *, where: str | Path, line: int | None = None,
               fix: str = "write valid JSON") -> Any:
    """``json.loads`` with every failure (see the module docstring) as a one-line HardnegError."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HardnegError(f"malformed JSON ({exc.msg} at column {exc.colno})", where=where, line=line,
                           fix=fix) from None
    except RecursionError:
        raise HardnegError("JSON nested too deeply to read", where=where, line=line,
                           fix="flatten the nested arrays/objects (is the file corrupt?)") from None
    except ValueError as exc:  # e.g. an integer with more digits than int() converts
        what = str(exc).split(";")[0]
        raise HardnegError(f"unreadable JSON number ({what})", where=where, line=line,
                           fix="write long numbers (e.g. ids) as JSON strings") from None
    # Raw UTF-8 cannot hold a surrogate, so only a \u escape can make one: check the decoded value only then.
    if _SURROGATE_ESCAPE.search(text):
        bad = _lone_surrogate(obj)
        if bad is not None:
            raise HardnegError(f"a string holds the lone surrogate \\u{ord(bad):04x}, which is not valid Unicode",
                               where=where, line=line,
                               fix="re-encode the file as valid UTF-8 (a \\ud800-\\udfff escape must be half of "
                                   "a surrogate pair)")
    return obj


def read_json_file(path: str | Path, *, fix: str = "write valid JSON") -> Any:
    """Read a whole JSON file (UTF-8, a leading byte-order mark skipped) with ``loads_json``'s errors."""
    path = Path(path)
    raw = path.read_bytes()
    try:
        text = raw.removeprefix(BOM).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HardnegError(f"bytes that are not UTF-8 at offset {exc.start}", where=path,
                           fix="re-encode the file as UTF-8") from None
    return loads_json(text, where=path, fix=fix)


def read_versioned_json(path: str | Path, version: int, *, what: str, fix: str) -> dict[str, Any]:
    """A JSON object file whose ``"format"`` is ``version`` (a manifest, a pool): any other content or format is a
    one-line error saying which ``what`` and what to do (``fix``)."""
    raw = read_json_file(path, fix=fix)
    if not isinstance(raw, dict) or raw.get("format") != version:
        raise HardnegError(f"unsupported {what} format {raw.get('format') if isinstance(raw, dict) else raw!r}",
                           where=path, fix=f"{fix} (this version reads format {version})")
    return raw


def require_file(path: str | Path, what: str, fix: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise HardnegError(f"{what} not found", where=p, fix=fix)
    if not p.is_file():
        raise HardnegError(f"{what} is not a file", where=p, fix=fix)
    return p


def iter_jsonl(path: Path, *, max_line_bytes: int | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (1-based line number, object) for every non-blank line; raise HardnegError on bad lines."""
    max_line_bytes = max_line_bytes or MAX_LINE_BYTES
    with open(path, "rb") as fh:
        lineno = 0
        while True:
            raw = fh.readline(max_line_bytes + 1)
            if not raw:
                return
            lineno += 1
            if lineno == 1:
                raw = raw.removeprefix(BOM)
            if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
                raise HardnegError(f"line is longer than {max_line_bytes:,} bytes", where=path,
                                   line=lineno, fix="put one JSON object per line (is a newline missing?)")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise HardnegError(f"bytes that are not UTF-8 at column {exc.start + 1}", where=path,
                                   line=lineno, fix="re-encode the file as UTF-8") from None
            if not text.strip():
                continue
            obj = loads_json(text, where=path, line=lineno, fix="write one valid JSON object per line")
            if not isinstance(obj, dict):
                raise HardnegError(f"expected a JSON object, got {type(obj).__name__}", where=path, line=lineno,
                                   fix="write one JSON object per line")
            yield lineno, obj


def field_str(obj: dict, key: str, path: Path, lineno: int, *, required: bool = True,
              allow_empty: bool = False, default: str = "") -> str:
    """A string field (ids may be given as JSON numbers; they are turned into strings)."""
    if key not in obj or obj[key] is None:
        if required:
            raise HardnegError(f'missing field "{key}"', where=path, line=lineno,
                               fix=f'add "{key}" to every line')
        return default
    val = obj[key]
    if isinstance(val, bool) or not isinstance(val, (str, int)):
        raise HardnegError(f'field "{key}" must be a string, got {type(val).__name__}', where=path,
                           line=lineno, fix=f'make "{key}" a JSON string')
    val = str(val)
    if not allow_empty and not val.strip():
        raise HardnegError(f'field "{key}" is empty', where=path, line=lineno,
                           fix=f'give "{key}" a non-empty value or remove the line')
    return val
