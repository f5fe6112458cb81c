"""FAISS backend (optional extra ``faiss``: ``pip install faiss-cpu``) behind the ``exact_search`` signature.

- ``flat``: exact inner product, streamed: each doc block (converted to float32 on its own, so fp16 memmapped
  shards are never concatenated) goes into a fresh ``IndexFlatIP``, and the per-block top-k are merged with
  the stable rule. Boundary ties are resolved by widening the block search, so ``flat`` returns the same rows as
  ``exact_search`` (scores equal up to the last float bit: FAISS and torch use different BLAS kernels).
- ``ivf`` (``IndexIVFFlat``) and ``hnsw`` (``IndexHNSWFlat``): approximate; the corpus is added block by
  block to one index that holds every vector in float32 RAM (``nd * dim * 4`` bytes, plus the HNSW graph).
  A query with fewer than ``k`` hits is padded with row ``-1`` and score ``-inf``.

Every result is re-sorted by (score desc, row asc), the project's tie rule.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np
from tqdm.auto import tqdm

from hardneg.errors import HardnegError
from hardneg.search.merge import merge_topk, sort_topk

IndexKind = Literal["flat", "ivf", "hnsw"]
INDEXES: tuple[str, ...] = ("flat", "ivf", "hnsw")


def import_faiss() -> Any:
    """The ``faiss`` module, or a HardnegError telling how to install it."""
    try:
        import faiss
    except ImportError as exc:
        raise HardnegError("the FAISS search backend needs the faiss package, which is not installed",
                           fix='run `pip install faiss-cpu` (or `pip install "hardneg[faiss]"`), or use the '
                               'exact backend') from exc
    return faiss


def _shards(d_emb: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    return [d_emb] if isinstance(d_emb, np.ndarray) else list(d_emb)


def _blocks(shards: list[np.ndarray], block: int) -> Iterator[tuple[int, np.ndarray]]:
    """(first corpus row, float32 C-contiguous block) over the shards, one block in memory at a time."""
    start = 0
    for shard in shards:
        for lo in range(0, shard.shape[0], block):
            yield start + lo, np.ascontiguousarray(shard[lo:lo + block], dtype=np.float32)
        start += shard.shape[0]


def _check(q_emb: np.ndarray, shards: list[np.ndarray], depth: int, index: str) -> tuple[int, int]:
    if index not in INDEXES:
        raise HardnegError(f"unknown FAISS index {index!r}", fix=f"use one of: {', '.join(INDEXES)}")
    if isinstance(depth, bool) or not isinstance(depth, int | np.integer) or depth < 1:
        raise ValueError("depth must be >= 1")
    if q_emb.ndim != 2 or any(s.ndim != 2 for s in shards):
        raise HardnegError("embeddings must be 2-D arrays [rows, dim]", fix="pass q_emb [nq, dim], d_emb [nd, dim]")
    dim = q_emb.shape[1]
    bad = [s.shape[1] for s in shards if s.shape[1] != dim]
    if bad:
        raise HardnegError(f"query dim {dim} differs from doc dim {bad[0]}",
                           fix="encode queries and docs with the same model")
    return dim, sum(s.shape[0] for s in shards)


def _flat_block_topk(faiss: Any, q: np.ndarray, block: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of one block under (score desc, column asc), ties at the k-th place included."""
    n = block.shape[0]
    k = min(k, n)
    index = faiss.IndexFlatIP(block.shape[1])
    index.add(block)
    kk = min(n, k + 1)
    s, i = index.search(q, kk)  # [nq, kk]; FAISS orders ties arbitrarily
    out_s, out_i = sort_topk(s, i, k)
    # A row is exact once the k-th score is above the last fetched score (or everything was fetched).
    todo = np.flatnonzero(s[:, -1] >= out_s[:, -1]) if kk < n else np.empty(0, dtype=np.int64)
    while todo.size:
        kk = min(n, 2 * kk)
        s2, i2 = index.search(np.ascontiguousarray(q[todo]), kk)
        t_s, t_i = sort_topk(s2, i2, k)
        out_s[todo], out_i[todo] = t_s, t_i
        todo = todo[s2[:, -1] >= t_s[:, -1]] if kk < n else np.empty(0, dtype=np.int64)
    return out_s, out_i


def _train_sample(shards: list[np.ndarray], nd: int, n_train: int, seed: int) -> np.ndarray:
    """``n_train`` rows drawn without replacement (sorted, per shard: memmap friendly), float32."""
    rows = np.sort(np.random.default_rng(seed).choice(nd, size=n_train, replace=False))
    parts, start = [], 0
    for shard in shards:
        hi = start + shard.shape[0]
        sel = rows[(rows >= start) & (rows < hi)] - start
        if sel.size:
            parts.append(np.asarray(shard[sel], dtype=np.float32))
        start = hi
    return np.ascontiguousarray(np.concatenate(parts, axis=0))


def default_nlist(nd: int) -> int:
    """About 4 * sqrt(n) inverted lists, with at least 39 training points per list (FAISS's minimum)."""
    return max(1, min(int(4 * math.sqrt(nd)), nd // 39))


def faiss_search(q_emb: np.ndarray, d_emb: np.ndarray | Sequence[np.ndarray], depth: int, *,
                 index: IndexKind = "flat", nlist: int | None = None, nprobe: int | None = None,
                 train_size: int | None = None, hnsw_m: int = 32, ef_search: int | None = None,
                 ef_construction: int = 80, seed: int = 0,
                 doc_block: int = 65536, threads: int | None = None,
                 progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Top-``depth`` inner-product neighbours with FAISS; same inputs and outputs as ``exact_search``.

    ``q_emb`` [nq, dim]; ``d_emb`` [nd, dim] or row shards (fp16/fp32 memmaps welcome).
    Returns ``scores`` float32 [nq, k] and ``idx`` int64 [nq, k], ``k = min(depth, nd)``, sorted by
    (score desc, row asc). IVF: ``nlist`` lists (default ~4 sqrt(nd)), ``nprobe`` probed (default nlist/8),
    k-means on ``train_size`` rows (default 64 per list) drawn and seeded by ``seed``. HNSW: ``hnsw_m`` links, ``ef_search`` (default max(2k, 64)).
    """
    faiss = import_faiss()
    shards = _shards(d_emb)
    q_emb = np.asarray(q_emb) if not isinstance(q_emb, np.ndarray) else q_emb
    dim, nd = _check(q_emb, shards, depth, index)
    nq = q_emb.shape[0]
    if nd == 0:
        raise HardnegError("the corpus is empty", fix="search a corpus with at least one document")
    k = min(int(depth), nd)
    if threads is not None:
        faiss.omp_set_num_threads(int(threads))
    q = np.ascontiguousarray(q_emb, dtype=np.float32)  # [nq, dim]
    n_blocks = sum(-(-s.shape[0] // doc_block) for s in shards)
    if nq == 0:
        return np.empty((0, k), dtype=np.float32), np.empty((0, k), dtype=np.int64)

    if index == "flat":
        best: tuple[np.ndarray, np.ndarray] | None = None
        for lo, block in tqdm(_blocks(shards, doc_block), total=n_blocks, desc="faiss-flat", unit="block",
                              disable=not progress):
            s, i = _flat_block_topk(faiss, q, block, k)
            part = (s, i + lo)
            best = part if best is None else merge_topk([best, part], k)
        assert best is not None
        return best

    if index == "ivf":
        nl = default_nlist(nd) if nlist is None else int(nlist)
        if nl < 1 or nl > nd:
            raise HardnegError(f"nlist must be between 1 and the corpus size {nd}, got {nl}",
                               fix=f"use e.g. nlist={default_nlist(nd)}")
        quantizer = faiss.IndexFlatIP(dim)
        ix = faiss.IndexIVFFlat(quantizer, dim, nl, faiss.METRIC_INNER_PRODUCT)
        ix.cp.seed = int(seed)
        n_train = min(nd, max(64 * nl, 39 * nl) if train_size is None else int(train_size))
        if n_train < nl:
            raise HardnegError(f"train_size {n_train} is below nlist {nl}", fix=f"use train_size >= {39 * nl}")
        ix.train(_train_sample(shards, nd, n_train, seed))
        ix.nprobe = max(1, nl // 8) if nprobe is None else int(nprobe)
        if ix.nprobe < 1:
            raise HardnegError(f"nprobe must be >= 1, got {nprobe}", fix="use e.g. nprobe=32")
        index_obj = ix  # faiss's Python wrapper keeps a reference to the quantizer
    else:
        if hnsw_m < 2:
            raise HardnegError(f"hnsw_m must be >= 2, got {hnsw_m}", fix="use e.g. hnsw_m=32")
        index_obj = faiss.IndexHNSWFlat(dim, int(hnsw_m), faiss.METRIC_INNER_PRODUCT)
        index_obj.hnsw.efConstruction = int(ef_construction)
        index_obj.hnsw.efSearch = max(2 * k, 64) if ef_search is None else max(int(ef_search), k)
    for _lo, block in tqdm(_blocks(shards, doc_block), total=n_blocks, desc=f"faiss-{index} add", unit="block",
                           disable=not progress):
        index_obj.add(block)
    s, i = index_obj.search(q, k)  # [nq, k]; FAISS pads missing hits with id -1
    s = np.where(i < 0, -np.inf, s).astype(np.float32)
    return sort_topk(s, i, k)


__all__ = ["INDEXES", "default_nlist", "faiss_search", "import_faiss"]
