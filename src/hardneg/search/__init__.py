"""Top-k search over embeddings: one signature for every backend, stable ties (score desc, row asc).

``search(q_emb, d_emb, depth, backend=...)`` dispatches to the exact blocked search (default), FAISS
(flat / IVF / HNSW, optional extra ``faiss``) or Ray sharded exact search (optional extra ``ray``).
``merge_topk`` is the one merge rule every sharded path uses, so sharded results equal one big search.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from hardneg.errors import HardnegError
from hardneg.search.exact import exact_search, score_pairs

BACKENDS: tuple[str, ...] = ("exact", "faiss-flat", "faiss-ivf", "faiss-hnsw", "ray")


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


def search(q_emb: np.ndarray, d_emb: Any, depth: int, backend: str = "exact",
           **kw: Any) -> tuple[np.ndarray, np.ndarray]:
    """Top-``depth`` inner-product neighbours with the chosen backend; returns (scores float32, idx int64).

    ``exact``: ``exact_search`` (kw: query_block, doc_block, progress). ``faiss-flat|ivf|hnsw``:
    ``faiss_search`` with ``index=`` set (kw: nlist, nprobe, hnsw_m, ef_search, seed, progress...).
    ``ray``: ``hardneg.scale.ray_search`` (kw: address, query_block, doc_block, rows_per_task,
    cpus_per_task, max_in_flight, progress).
    """
    if backend == "exact":
        return exact_search(q_emb, d_emb, depth, **kw)
    if backend.startswith("faiss-") and backend in BACKENDS:
        from hardneg.search.faiss_backend import faiss_search
        return faiss_search(q_emb, d_emb, depth, index=backend.removeprefix("faiss-"), **kw)
    if backend == "ray":
        from hardneg.scale.ray_mining import ray_search
        return ray_search(q_emb, d_emb, depth, **kw)
    raise HardnegError(f"unknown search backend {backend!r}", fix=f"use one of: {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "exact_search", "merge_topk", "score_pairs", "search", "sort_topk"]
