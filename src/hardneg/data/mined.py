"""Read mined JSONL files (the project format) with file:line errors, e.g. before training on them."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from hardneg.data.jsonl import field_str, iter_jsonl, require_file
from hardneg.errors import HardnegError


def _finite(v: Any) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # an int beyond float range (JSON allows any number of digits)
        return False


def _shown(v: Any) -> str:
    r = repr(v) if not isinstance(v, int) or abs(v) < 10 ** 30 else "a huge integer"
    return r if len(r) <= 40 else r[:37] + "..."


def _score(v: Any, what: str, path: Path, lineno: int) -> None:
    if v is None:
        return
    if not _finite(v):
        raise HardnegError(f"{what} must be a finite number or null, got {_shown(v)}", where=path, line=lineno,
                           fix="mine the file again; scores must not be NaN, infinite or out of float range")


def _rank(v: Any, what: str, path: Path, lineno: int) -> None:
    if v is None or (isinstance(v, int) and not isinstance(v, bool)):
        return
    raise HardnegError(f"{what} must be an integer or null, got {_shown(v)}", where=path, line=lineno,
                       fix="mine the file again; rank is the 1-based rank in the teacher's ranking")


def _doc(obj: Any, what: str, path: Path, lineno: int) -> None:
    if not isinstance(obj, dict):
        raise HardnegError(f"{what} must be an object with docid and text", where=path, line=lineno,
                           fix='write {"docid": ..., "text": ..., "score": ...}')
    field_str(obj, "docid", path, lineno)
    field_str(obj, "text", path, lineno)
    _score(obj.get("score"), f"{what} score", path, lineno)


def read_mined(path: str | Path) -> list[dict]:
    """Rows ``{"qid", "query", "pos": {docid, text, score}, "neg": [{docid, text, score, rank}, ...]}``."""
    path = require_file(path, "mined file", "pass a mined.jsonl written by `hardneg mine`")
    rows = []
    for lineno, obj in iter_jsonl(path):
        field_str(obj, "qid", path, lineno)
        field_str(obj, "query", path, lineno)
        if "pos" not in obj:
            raise HardnegError('missing field "pos"', where=path, line=lineno, fix="every row needs its positive")
        _doc(obj["pos"], "pos", path, lineno)
        negs = obj.get("neg", [])
        if not isinstance(negs, list):
            raise HardnegError(f'"neg" must be a list, got {type(negs).__name__}', where=path, line=lineno,
                               fix='write "neg": [] for a row without negatives')
        for j, n in enumerate(negs):
            _doc(n, f"neg[{j}]", path, lineno)
            _rank(n.get("rank"), f"neg[{j}] rank", path, lineno)
            if n["docid"] == obj["pos"]["docid"]:
                raise HardnegError(f'neg[{j}] is the row\'s own positive "{n["docid"]}"', where=path, line=lineno,
                                   fix="a positive must never be a negative: mine the file again")
        rows.append(obj)
    if not rows:
        raise HardnegError("the mined file has no rows", where=path, fix="mine again with a less strict strategy")
    return rows
