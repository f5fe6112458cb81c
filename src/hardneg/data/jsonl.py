"""JSON reading with one-line errors that name the file, the line and the fix.

Every reader of user JSON goes through ``loads_json`` (or ``iter_jsonl`` / ``read_json_file``), so each way
``json.loads`` can fail, or succeed with something unusable, is reported the same way: malformed text, nesting
too deep for the parser (RecursionError), integers too long to convert (ValueError), and lone surrogate escapes
such as ``"\\ud800"`` (json accepts them, but the string can never be encoded to UTF-8 later). A UTF-8
byte-order mark at the start of a file is skipped.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hardneg.errors import HardnegError
from hardneg.io import BOM, loads_json, read_json_file, read_versioned_json  # noqa: F401 (the JSON readers)

# A single JSON line above this size is almost surely a broken file (a missing newline joining records,
# a binary file); refusing it keeps memory bounded and gives a clear message instead of a stall.
MAX_LINE_BYTES = 16 * 1024 * 1024

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
