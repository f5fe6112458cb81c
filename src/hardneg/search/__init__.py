"""Top-k search over embeddings: one signature for every backend, stable ties (score desc, row asc).

``search(q_emb, d_emb, depth, backend=...)`` dispatches to the exact blocked search (default), FAISS
(flat / IVF / HNSW, optional extra ``faiss``) or Ray sharded exact search (optional extra ``ray``).
``merge_topk`` is the one merge rule every sharded path uses, so sharded results equal one big search.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from hardneg.errors import HardnegError
from hardneg.search.exact import exact_search, score_pairs
from hardneg.search.merge import merge_topk, sort_topk

BACKENDS: tuple[str, ...] = ("exact", "faiss-flat", "faiss-ivf", "faiss-hnsw", "ray")


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
        from hardneg.search.ray_backend import ray_search
        return ray_search(q_emb, d_emb, depth, **kw)
    raise HardnegError(f"unknown search backend {backend!r}", fix=f"use one of: {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "exact_search", "merge_topk", "score_pairs", "search", "sort_topk"]
