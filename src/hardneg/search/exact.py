"""Exact top-k search: blocked matrix product with a running top-k merge.

Memory is bounded by the blocks (``query_block x doc_block`` scores), never the full query x corpus matrix.
The block product is numpy's matmul (OpenBLAS): for this shape (K = dim = 384) it runs 20-40% faster than
``torch.mm`` (MKL) on the AMD CPUs we measured (benchmarks/README.md, "search"), and its results do not depend
on the thread count.
Ties are broken stably: score descending, then corpus row ascending, so results never depend on block sizes
or thread counts.

Optional low-precision first pass (``first_pass="bf16"``): the block products run in bfloat16 (``torch.mm`` on
bf16 copies, oneDNN's native bf16 kernels on CPUs with avx512_bf16/amx_bf16), each query keeps its top
``depth + margin`` candidates by bf16 score, and those are rescored exactly in fp32 and sorted by the usual rule.
A slot is *uncertain* when its fp32 score is within the bf16 error bound of the cut (the lowest bf16 score kept):
a document left out of the candidates could then belong there. With ``verify=True`` (the default) queries with an
uncertain slot are searched again in full fp32, so the result is the exact one; ``stats`` reports the counts.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

DocShards = np.ndarray | Sequence[np.ndarray]
FIRST_PASSES: tuple[str, ...] = ("fp32", "bf16")
RESCORE_BLOCK = 64  # queries per fp32 rescoring chunk: [64, depth + margin, dim] gathered rows stay cache-sized


def as_shards(d_emb: DocShards) -> list[np.ndarray]:
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
                 doc_block: int = 65536, progress: bool = False, matmul: str = "numpy", first_pass: str = "fp32",
                 margin: int | None = None, verify: bool = True,
                 stats: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-``depth`` inner-product neighbours of every query over all docs (cosine if both are normalised).

    ``q_emb`` [nq, dim]; ``d_emb`` [nd, dim] or a list of row shards (memmaps welcome).
    ``matmul``: ``"numpy"`` (numpy's BLAS, OpenBLAS in the PyPI wheels) or ``"torch"`` (torch's, MKL on x86),
    whichever is faster on the CPU at hand (``benchmarks/bench_search.py`` measures both: method ``torch-mm``).
    ``first_pass``: ``"fp32"`` (default) or ``"bf16"``: a bf16 candidate pass keeping ``depth + margin``
    candidates per query (``margin`` default: ``depth``), rescored in fp32; ``verify`` re-searches in fp32 the
    queries with a slot within the bf16 error of the cut; ``stats`` (a dict) receives the counts.
    Returns ``scores`` float32 [nq, k] and ``idx`` int64 [nq, k] with ``k = min(depth, nd)``.
    """
    shards = as_shards(d_emb)
    nd = sum(s.shape[0] for s in shards)
    nq = q_emb.shape[0]
    if depth < 1:
        raise ValueError("depth must be >= 1")
    if matmul not in ("numpy", "torch"):
        raise ValueError(f"matmul must be 'numpy' or 'torch', got {matmul!r}")
    if first_pass not in FIRST_PASSES:
        raise ValueError(f"first_pass must be one of {', '.join(FIRST_PASSES)}, got {first_pass!r}")
    if margin is not None and (isinstance(margin, bool) or not isinstance(margin, int) or margin < 0):
        raise ValueError(f"margin must be an integer >= 0, got {margin!r}")
    k = min(depth, nd)
    if first_pass == "bf16":
        m = min(nd, k + (depth if margin is None else margin))
        if m < nd and nq > 0:  # else every document is a candidate: the fp32 pass is the same work
            return _bf16_search(q_emb, shards, k, m, query_block=query_block, doc_block=doc_block,
                                progress=progress, matmul=matmul, verify=verify, stats=stats)
    if stats is not None:
        stats.update({"first_pass": "fp32", "queries": nq, "slots": nq * k, "uncertain_slots": 0,
                      "uncertain_queries": 0, "verified_queries": 0})
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


def _gather_rows(shards: list[np.ndarray], rows: np.ndarray, dim: int) -> np.ndarray:
    """fp32 copies of corpus ``rows`` (any shape of int64) gathered across shards: [*rows.shape, dim]."""
    flat = rows.ravel()
    out = np.empty((flat.size, dim), dtype=np.float32)
    if len(shards) == 1:
        np.copyto(out, shards[0][flat], casting="same_kind")
        return out.reshape(*rows.shape, dim)
    offsets = np.cumsum([0] + [s.shape[0] for s in shards])
    which = np.searchsorted(offsets, flat, side="right") - 1
    for j in np.unique(which):
        sel = np.flatnonzero(which == j)
        out[sel] = shards[j][flat[sel] - offsets[j]]  # (np.copyto(out[sel], ...) would fill a copy)
    return out.reshape(*rows.shape, dim)


def _bf16_search(q_emb: np.ndarray, shards: list[np.ndarray], k: int, m: int, *, query_block: int,
                 doc_block: int, progress: bool, matmul: str, verify: bool,
                 stats: dict | None) -> tuple[np.ndarray, np.ndarray]:
    """bf16 candidate pass (top ``m`` per query by bf16 score), exact fp32 rescoring, top ``k`` by the usual rule.

    Rigorous error bound. With ``q~ = bf16(q)``, ``dq = q - q~`` (same for d), exactly
    ``q.d = q~.d~ + q~.dd + dq.d``, so ``|q.d - q~.d~| <= |q~| max|dd| + |dq| max|d|`` (Cauchy-Schwarz; the
    residual norms are measured, ~2^-9 |x|, not assumed). Add the fp32 accumulation of the bf16 kernel and of the
    fp32 pass (each <= dim 2^-24 |q| max|d|) and the rounding of the bf16 product to bf16 (half an ulp of the
    cut): ``eps``. A document left out has bf16 score <= the cut, so its fp32 score is <= cut + eps; a slot whose
    fp32 score is <= cut + eps is uncertain (a left-out document might belong there).
    """
    nq, dim = q_emb.shape
    nd = sum(s.shape[0] for s in shards)
    out_s = np.empty((nq, k), dtype=np.float32)
    out_i = np.empty((nq, k), dtype=np.int64)
    cut = np.empty(nq, dtype=np.float64)  # the lowest bf16 score kept per query
    q_norm = np.empty(nq, dtype=np.float64)  # |q~|
    q_res = np.empty(nq, dtype=np.float64)  # |q - q~|
    d_max = d_res_max = 0.0  # max |d|, max |d - d~| over the corpus
    bar = tqdm(total=-(-nq // query_block) * -(-nd // doc_block), desc="search (bf16)", unit="block",
               disable=not progress)
    cells = min(query_block, nq) * min(doc_block, nd)
    bbuf = torch.empty(cells, dtype=torch.bfloat16)  # bf16 block products and their fp32 copy, reused (no page
    sbuf = torch.empty(cells, dtype=torch.float32)  # faults from fresh 100s-of-MB allocations every block)
    with torch.inference_mode():
        for qlo in range(0, nq, query_block):
            q = np.ascontiguousarray(q_emb[qlo:qlo + query_block], dtype=np.float32)
            qb = torch.from_numpy(q).to(torch.bfloat16)
            qr = qb.float().numpy()
            q_norm[qlo:qlo + q.shape[0]] = np.linalg.norm(qr.astype(np.float64), axis=1)
            q_res[qlo:qlo + q.shape[0]] = np.linalg.norm(q.astype(np.float64) - qr, axis=1)
            best_s = torch.empty((q.shape[0], 0), dtype=torch.float32)  # [qb, <=m] bf16 scores, widened
            best_i = torch.empty((q.shape[0], 0), dtype=torch.int64)
            for dlo, d in _doc_blocks(shards, doc_block, dim):
                db = torch.from_numpy(d).to(torch.bfloat16)
                if qlo == 0:
                    norm, res = _doc_bounds(d, db)
                    d_max, d_res_max = max(d_max, norm), max(d_res_max, res)
                s = _bf16_scores(qb, db, bbuf, sbuf)
                best_s, best_i = _keep_top(best_s, best_i, s, dlo, m)
                bar.update(1)
            cut[qlo:qlo + q.shape[0]] = best_s.min(dim=1).values.numpy()
            _rescore(q, best_i.numpy(), shards, k, out_s[qlo:qlo + q.shape[0]], out_i[qlo:qlo + q.shape[0]])
    bar.close()
    uncertain, bound = _uncertain_slots(out_s, cut, q_emb, q_norm, q_res, d_max, d_res_max)
    redo = np.flatnonzero(uncertain.any(axis=1))
    if verify and redo.size:
        s2, i2 = exact_search(np.ascontiguousarray(q_emb[redo], dtype=np.float32), shards, k,
                              query_block=query_block, doc_block=doc_block, matmul=matmul)
        out_s[redo], out_i[redo] = s2, i2
    if stats is not None:
        stats.update({"first_pass": "bf16", "candidates": m, "queries": nq, "slots": int(uncertain.size),
                      "uncertain_slots": int(uncertain.sum()), "uncertain_queries": int(redo.size),
                      "verified_queries": int(redo.size) if verify else 0,
                      "eps_max": float(bound.max(initial=0.0))})
    return out_s, out_i


def _doc_bounds(d: np.ndarray, db: torch.Tensor) -> tuple[float, float]:
    """(max |d|, max |d - bf16(d)|) over the rows of a document block ``d`` [cb, dim] and its bf16 copy ``db``."""
    d64 = d.astype(np.float64)
    r = d64 - db.float().numpy()
    return float(np.sqrt(np.einsum("ij,ij->i", d64, d64).max())), float(np.sqrt(np.einsum("ij,ij->i", r, r).max()))


def _bf16_scores(qb: torch.Tensor, db: torch.Tensor, bbuf: torch.Tensor, sbuf: torch.Tensor) -> torch.Tensor:
    """bf16 products of a query block and a document block (fp32 accumulation inside), widened to fp32 [qb, cb]
    in the reused buffers (numpy's compare in ``_above``, and topk, are faster on fp32)."""
    n_cells = qb.shape[0] * db.shape[0]
    sb = bbuf[:n_cells].view(qb.shape[0], db.shape[0])
    torch.mm(qb, db.T, out=sb)
    s = sbuf[:n_cells].view(qb.shape[0], db.shape[0])
    s.copy_(sb)
    return s


def _keep_top(best_s: torch.Tensor, best_i: torch.Tensor, s: torch.Tensor, dlo: int, m: int
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """The running top ``m`` (unsorted) after a block of scores ``s`` whose first column is corpus row ``dlo``."""
    # As in the fp32 pass: once m candidates are held, only scores >= the running m-th can enter.
    new = _above(s, best_s.min(dim=1, keepdim=True).values, 4 * m) if best_s.shape[1] == m else None
    vals, cols = new if new is not None else torch.topk(s, min(m, s.shape[1]), dim=1, sorted=False)
    cat_s = torch.cat([best_s, vals], dim=1)
    cat_i = torch.cat([best_i, cols + dlo], dim=1)
    if cat_s.shape[1] > m:
        cat_s, sel = torch.topk(cat_s, m, dim=1, sorted=False)
        cat_i = torch.gather(cat_i, 1, sel)
    return cat_s, cat_i


def _rescore(q: np.ndarray, cand: np.ndarray, shards: list[np.ndarray], k: int, out_s: np.ndarray,
             out_i: np.ndarray) -> None:
    """Exact fp32 scores of each query's candidates [qb, m], top ``k`` by the usual rule into ``out_s`` /
    ``out_i`` [qb, k]; a cache-sized chunk of queries at a time."""
    for lo in range(0, q.shape[0], RESCORE_BLOCK):
        rows = np.sort(cand[lo:lo + RESCORE_BLOCK], axis=1)  # [b, m] row ascending: column order = row order
        docs = torch.from_numpy(_gather_rows(shards, rows, q.shape[1]))  # [b, m, dim]
        sc = torch.bmm(docs, torch.from_numpy(q[lo:lo + RESCORE_BLOCK])[:, :, None])[:, :, 0]  # [b, m]
        vals, cols = _block_topk(sc, k)  # score desc, column (= row) asc
        out_s[lo:lo + rows.shape[0]] = vals.numpy()
        out_i[lo:lo + rows.shape[0]] = np.take_along_axis(rows, cols.numpy(), axis=1)


def _uncertain_slots(out_s: np.ndarray, cut: np.ndarray, q_emb: np.ndarray, q_norm: np.ndarray, q_res: np.ndarray,
                     d_max: float, d_res_max: float) -> tuple[np.ndarray, np.ndarray]:
    """(slots [nq, k] whose fp32 score is within the bf16 error of the cut, that error per query [nq]); the bound
    is ``_bf16_search``'s docstring."""
    dim = q_emb.shape[1]
    q_full = np.linalg.norm(np.asarray(q_emb, dtype=np.float64), axis=1)
    accumulation = 2 * dim * 2.0 ** -24 * np.maximum(q_full, q_norm) * (d_max * (1 + 2.0 ** -8))
    half_ulp = np.ldexp(1.0, np.frexp(np.abs(cut))[1] - 9)  # bf16: 8 significant bits
    eps = q_norm * d_res_max + q_res * d_max + accumulation  # [nq]
    return out_s <= (cut + half_ulp + eps)[:, None], eps + half_ulp


def score_pairs(q_emb: np.ndarray, d_emb: DocShards, q_rows: np.ndarray, d_rows: np.ndarray) -> np.ndarray:
    """Scores of given (query row, doc row) pairs, e.g. positives outside the top-k.  Returns float32 [n]."""
    shards = as_shards(d_emb)
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
