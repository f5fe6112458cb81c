"""The one top-k order of every search path: score descending, corpus row ascending, missing rows (-1) last."""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def sort_topk(scores: np.ndarray, idx: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Sort each row by (score desc, row asc; missing rows ``-1`` last) and keep the first ``k`` columns.

    ``scores`` float [nq, m], ``idx`` int [nq, m]; returns float32 [nq, min(k, m)] and int64 [nq, min(k, m)].
    """
    scores = np.asarray(scores, dtype=np.float32)
    idx = np.asarray(idx, dtype=np.int64)
    key = np.where(idx < 0, np.iinfo(np.int64).max, idx)  # [nq, m] missing rows sort after every real row
    o1 = np.argsort(key, axis=1, kind="stable")  # row ascending ...
    s1 = np.take_along_axis(scores, o1, axis=1)
    o2 = np.argsort(-s1, axis=1, kind="stable")[:, :k]  # ... then score descending, stable keeps row order
    out_s = np.take_along_axis(s1, o2, axis=1)
    out_i = np.take_along_axis(np.take_along_axis(idx, o1, axis=1), o2, axis=1)
    return np.ascontiguousarray(out_s), np.ascontiguousarray(out_i)


def merge_topk(parts: Iterable[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-shard top-k results (``idx`` already global corpus rows) into the global top-``k``.

    Exact whenever each part is the exact top-k of its shard under the same rule: the result then does not
    depend on the order of ``parts`` or on where the shard boundaries fall.
    """
    parts = list(parts)
    if not parts:
        raise ValueError("merge_topk needs at least one part")
    s = np.concatenate([np.asarray(p[0], dtype=np.float32) for p in parts], axis=1)  # [nq, sum k_i]
    i = np.concatenate([np.asarray(p[1], dtype=np.int64) for p in parts], axis=1)
    return sort_topk(s, i, k)
