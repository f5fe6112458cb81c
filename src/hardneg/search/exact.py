"""Exact top-k search: blocked matrix product with a running top-k merge.

Memory is bounded by the blocks (``query_block x doc_block`` scores), never the full query x corpus matrix.
Ties are broken stably: score descending, then corpus row ascending, so results never depend on block sizes
or thread counts.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

DocShards = np.ndarray | Sequence[np.ndarray]


def _as_shards(d_emb: DocShards) -> list[np.ndarray]:
    return [d_emb] if isinstance(d_emb, np.ndarray) else list(d_emb)


def _doc_blocks(shards: list[np.ndarray], doc_block: int):
    """Yield (first corpus row, fp32 tensor block) over a list of (possibly memmapped) shards."""
    start = 0
    for shard in shards:
        for lo in range(0, shard.shape[0], doc_block):
            block = np.ascontiguousarray(shard[lo:lo + doc_block], dtype=np.float32)
            yield start + lo, torch.from_numpy(block)
        start += shard.shape[0]


def _block_topk(s: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of each row of ``s`` [qb, cb] sorted by (score desc, column asc), exact under ties."""
    vals, cols = torch.topk(s, k, dim=1, largest=True, sorted=True)  # [qb, k]; tie order unspecified
    # Order equal scores by column: sort columns ascending, then stable-sort by score descending.
    cols, order = torch.sort(cols, dim=1)
    vals = torch.gather(vals, 1, order)
    vals, order = torch.sort(vals, dim=1, descending=True, stable=True)
    cols = torch.gather(cols, 1, order)
    if k < s.shape[1]:
        # Rows where the k-th score is tied with an unselected column: topk may have kept a later column.
        kth = vals[:, -1:]
        n_ge = (s >= kth).sum(dim=1)
        for r in torch.nonzero(n_ge > k).flatten().tolist():
            row = s[r].numpy()
            keep = np.lexsort((np.arange(row.shape[0]), -row))[:k]  # score desc, column asc
            cols[r] = torch.from_numpy(keep)
            vals[r] = torch.from_numpy(row[keep])
    return vals, cols


def exact_search(q_emb: np.ndarray, d_emb: DocShards, depth: int, *, query_block: int = 4096,
                 doc_block: int = 65536, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Top-``depth`` inner-product neighbours of every query over all docs (cosine if both are normalised).

    ``q_emb`` [nq, dim]; ``d_emb`` [nd, dim] or a list of row shards (memmaps welcome).
    Returns ``scores`` float32 [nq, k] and ``idx`` int64 [nq, k] with ``k = min(depth, nd)``.
    """
    shards = _as_shards(d_emb)
    nd = sum(s.shape[0] for s in shards)
    nq = q_emb.shape[0]
    if depth < 1:
        raise ValueError("depth must be >= 1")
    k = min(depth, nd)
    out_s = np.empty((nq, k), dtype=np.float32)
    out_i = np.empty((nq, k), dtype=np.int64)
    n_steps = -(-nq // query_block) * sum(-(-s.shape[0] // doc_block) for s in shards)
    bar = tqdm(total=n_steps, desc="search", unit="block", disable=not progress)
    with torch.inference_mode():
        for qlo in range(0, nq, query_block):
            q = torch.from_numpy(np.ascontiguousarray(q_emb[qlo:qlo + query_block], dtype=np.float32))
            best_s = torch.empty((q.shape[0], 0), dtype=torch.float32)  # [qb, <=k] running top-k
            best_i = torch.empty((q.shape[0], 0), dtype=torch.int64)
            for dlo, d in _doc_blocks(shards, doc_block):
                s = q @ d.T  # [qb, cb]
                vals, cols = _block_topk(s, min(k, s.shape[1]))
                # Running entries have smaller rows than this block; a stable sort keeps them first on ties.
                cat_s = torch.cat([best_s, vals], dim=1)
                cat_i = torch.cat([best_i, cols + dlo], dim=1)
                cat_s, order = torch.sort(cat_s, dim=1, descending=True, stable=True)
                best_s = cat_s[:, :k]
                best_i = torch.gather(cat_i, 1, order)[:, :k]
                bar.update(1)
            out_s[qlo:qlo + q.shape[0]] = best_s.numpy()
            out_i[qlo:qlo + q.shape[0]] = best_i.numpy()
    bar.close()
    return out_s, out_i


def score_pairs(q_emb: np.ndarray, d_emb: DocShards, q_rows: np.ndarray, d_rows: np.ndarray) -> np.ndarray:
    """Scores of given (query row, doc row) pairs, e.g. positives outside the top-k.  Returns float32 [n]."""
    shards = _as_shards(d_emb)
    d_rows = np.asarray(d_rows, dtype=np.int64)
    if len(shards) == 1:
        docs = np.asarray(shards[0][np.sort(np.unique(d_rows))], dtype=np.float32) if d_rows.size else None
        uniq = np.sort(np.unique(d_rows))
    else:
        offsets = np.cumsum([0] + [s.shape[0] for s in shards])
        uniq = np.sort(np.unique(d_rows))
        parts = []
        for r in uniq:
            j = int(np.searchsorted(offsets, r, side="right") - 1)
            parts.append(np.asarray(shards[j][r - offsets[j]], dtype=np.float32))
        docs = np.stack(parts) if parts else None
    if docs is None:
        return np.empty(0, dtype=np.float32)
    pos = np.searchsorted(uniq, d_rows)
    q = torch.from_numpy(np.ascontiguousarray(q_emb[np.asarray(q_rows)], dtype=np.float32))
    d = torch.from_numpy(np.ascontiguousarray(docs[pos]))
    # Same fp32 dot product as the matmul path (row-wise), so a positive inside the top-k gets its search score.
    return (q.unsqueeze(1) @ d.unsqueeze(2)).flatten().numpy().astype(np.float32)
