"""Exact top-k search: blocked matrix product with a running top-k merge.

Memory is bounded by the blocks (``query_block x doc_block`` scores), never the full query x corpus matrix.
The block product is numpy's matmul (OpenBLAS): for this shape (K = dim = 384) it runs 20-40% faster than
``torch.mm`` (MKL) on the AMD CPUs we measured (benchmarks/README.md, "search"), and its results do not depend
on the thread count.
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


def _doc_blocks(shards: list[np.ndarray], doc_block: int, dim: int):
    """Yield (first corpus row, fp32 array block) of ``doc_block`` rows, gathered across (memmapped) shards.

    One preallocated fp32 buffer [doc_block, dim] is reused (fp16 shards are converted into it block by block),
    so blocks do not depend on where shard boundaries fall: shards and one array give the same blocks and bits.
    """
    nd = sum(s.shape[0] for s in shards)
    buf = np.empty((min(doc_block, nd), dim), dtype=np.float32)  # [cb, dim], reused
    start, fill, j, lo = 0, 0, 0, 0
    while j < len(shards):
        take = min(buf.shape[0] - fill, shards[j].shape[0] - lo)
        np.copyto(buf[fill:fill + take], shards[j][lo:lo + take], casting="same_kind")
        fill, lo = fill + take, lo + take
        if lo == shards[j].shape[0]:
            j, lo = j + 1, 0
        if fill and (fill == buf.shape[0] or j == len(shards)):
            yield start, buf[:fill]
            start, fill = start + fill, 0


def _block_topk(s: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of each row of ``s`` [qb, cb] sorted by (score desc, column asc), exact under ties."""
    m = min(k + 1, s.shape[1])  # one extra: a tie across the k-th place exists iff values k and k+1 are equal
    vals, cols = torch.topk(s, m, dim=1, largest=True, sorted=True)  # [qb, m]; tie order unspecified
    # Order equal scores by column: sort columns ascending, then stable-sort by score descending.
    cols, order = torch.sort(cols, dim=1)
    vals = torch.gather(vals, 1, order)
    vals, order = torch.sort(vals, dim=1, descending=True, stable=True)
    cols = torch.gather(cols, 1, order)
    if m > k:
        # Rows where the k-th score is tied with the next one: topk may have kept a later column.
        for r in torch.nonzero(vals[:, k - 1] == vals[:, k]).flatten().tolist():
            row = s[r].numpy()
            keep = np.lexsort((np.arange(row.shape[0]), -row))[:k]  # score desc, column asc
            cols[r, :k] = torch.from_numpy(keep)
            vals[r, :k] = torch.from_numpy(row[keep])
    return vals[:, :k], cols[:, :k]


def _above(s: torch.Tensor, thr: torch.Tensor, max_per_row: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Every score >= ``thr`` [qb, 1] of each row, columns ascending, padded with -inf ([qb, m] each).

    None if some row has more than ``max_per_row`` (then a full top-k is cheaper). numpy's compare and
    flatnonzero are several times faster than torch's ``s >= thr`` + nonzero on CPU.
    """
    sn = s.numpy()
    flat = np.flatnonzero(sn >= thr.numpy())  # row-major: columns ascending within a row
    rows, cols = np.divmod(flat, sn.shape[1])
    counts = np.bincount(rows, minlength=sn.shape[0])
    m = int(counts.max()) if flat.size else 0
    if m > max_per_row:
        return None
    pos = np.arange(flat.size) - (np.cumsum(counts) - counts)[rows]
    vals = np.full((sn.shape[0], m), -np.inf, dtype=np.float32)
    idx = np.zeros((sn.shape[0], m), dtype=np.int64)
    vals[rows, pos] = sn.ravel()[flat]
    idx[rows, pos] = cols
    return torch.from_numpy(vals), torch.from_numpy(idx)


def exact_search(q_emb: np.ndarray, d_emb: DocShards, depth: int, *, query_block: int = 4096,
                 doc_block: int = 65536, progress: bool = False,
                 matmul: str = "numpy") -> tuple[np.ndarray, np.ndarray]:
    """Top-``depth`` inner-product neighbours of every query over all docs (cosine if both are normalised).

    ``q_emb`` [nq, dim]; ``d_emb`` [nd, dim] or a list of row shards (memmaps welcome).
    ``matmul``: ``"numpy"`` (numpy's BLAS, OpenBLAS in the PyPI wheels) or ``"torch"`` (torch's, MKL on x86),
    whichever is faster on the CPU at hand (``benchmarks/bench_search.py`` measures both: method ``torch-mm``).
    Returns ``scores`` float32 [nq, k] and ``idx`` int64 [nq, k] with ``k = min(depth, nd)``.
    """
    shards = _as_shards(d_emb)
    nd = sum(s.shape[0] for s in shards)
    nq = q_emb.shape[0]
    if depth < 1:
        raise ValueError("depth must be >= 1")
    if matmul not in ("numpy", "torch"):
        raise ValueError(f"matmul must be 'numpy' or 'torch', got {matmul!r}")
    k = min(depth, nd)
    out_s = np.empty((nq, k), dtype=np.float32)
    out_i = np.empty((nq, k), dtype=np.int64)
    if nq == 0 or nd == 0:
        return out_s, out_i
    n_steps = -(-nq // query_block) * -(-nd // doc_block)
    bar = tqdm(total=n_steps, desc="search", unit="block", disable=not progress)
    sbuf = torch.empty(min(query_block, nq) * min(doc_block, nd))  # one score buffer, reused by every block
    with torch.inference_mode():
        for qlo in range(0, nq, query_block):
            q = np.ascontiguousarray(q_emb[qlo:qlo + query_block], dtype=np.float32)
            best_s = torch.empty((q.shape[0], 0), dtype=torch.float32)  # [qb, <=k] running top-k
            best_i = torch.empty((q.shape[0], 0), dtype=torch.int64)
            for dlo, d in _doc_blocks(shards, doc_block, q.shape[1]):
                s = sbuf[: q.shape[0] * d.shape[0]].view(q.shape[0], d.shape[0])
                if matmul == "numpy":
                    np.matmul(q, d.T, out=s.numpy())  # [qb, cb]
                else:
                    torch.mm(torch.from_numpy(q), torch.from_numpy(d).T, out=s)
                # Once k results are held, only scores >= the running k-th can enter (ties kept: exact).
                new = _above(s, best_s[:, k - 1:k], 4 * k) if best_s.shape[1] == k else None
                vals, cols = new if new is not None else _block_topk(s, min(k, s.shape[1]))
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
    # fp32 dot products; they can differ from the search's blocked matmul in the last bit (summation order),
    # which only matters for a candidate tied with a positive-relative threshold to ~1e-7.
    return (q.unsqueeze(1) @ d.unsqueeze(2)).flatten().numpy().astype(np.float32)
