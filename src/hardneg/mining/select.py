"""Apply a strategy to a candidate pool: filters as boolean masks over [rows, depth], then a selector.

Everything is vectorised over rows; sampling draws Gumbel noise from a counter-based hash of
(seed, query, positive, column), so a row's negatives depend only on the seed and that row, never on
the other rows or their order.
"""
from __future__ import annotations

import hashlib

import numpy as np

from hardneg.mining.strategy import (Abs, MarginPos, NoNegatives, PercPos, Sampled, Shift, Strategy, Top1Sampled,
                                     TopK)
from hardneg.types import CandidatePool, MinedSet


def row_layout(pool: CandidatePool) -> tuple[np.ndarray, np.ndarray]:
    """One row per (query, positive): (row_q int64 [R], row_pos int64 [R])."""
    npos = np.diff(pool.pos_ptr)
    return np.repeat(np.arange(len(pool), dtype=np.int64), npos), np.arange(pool.pos_idx.shape[0], dtype=np.int64)


def pos_reference(pool: CandidatePool, row_q: np.ndarray, row_pos: np.ndarray, ref: str) -> np.ndarray:
    """The positive score a filter compares against, per row, float64 [R]."""
    s = pool.pos_score.astype(np.float64)
    starts = pool.pos_ptr[:-1]
    if ref == "row":
        return s[row_pos]
    if ref == "min":
        per_q = np.minimum.reduceat(s, starts)
    elif ref == "max":
        per_q = np.maximum.reduceat(s, starts)
    elif ref == "mean":
        per_q = np.add.reduceat(s, starts) / np.diff(pool.pos_ptr)
    else:
        raise ValueError(f"unknown ref {ref}")
    return per_q[row_q]


def filter_mask(f, score: np.ndarray, valid: np.ndarray, pool: CandidatePool, row_q: np.ndarray,
                row_pos: np.ndarray) -> np.ndarray:
    """Boolean [R, D]: which candidates filter ``f`` keeps (the paper's rules; see strategy.py)."""
    if isinstance(f, Shift):
        # Pool columns are the positive-free candidates in raw rank order: column j is the (j+1)-th non-positive
        # (its cand_rank also counts the positives above it), so shift(N) drops columns 0..N-1.
        return np.broadcast_to(np.arange(score.shape[1]) >= f.n, score.shape)
    with np.errstate(invalid="ignore"):  # NaN pads compare False
        if isinstance(f, Abs):
            return score <= f.t
        ref = pos_reference(pool, row_q, row_pos, f.ref)[:, None]  # [R, 1]
        if isinstance(f, MarginPos):
            return score < ref - f.m
        if isinstance(f, PercPos):
            return score < ref - np.abs(ref) * (1.0 - f.p)
    raise TypeError(f"not a filter: {f!r}")


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser (uint64 arrays; wrap-around multiplication is intended)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def row_keys(pool: CandidatePool, row_q: np.ndarray, row_pos: np.ndarray) -> np.ndarray:
    """A 64-bit key per row from (qid, positive's corpus row): stable across runs and row orders."""
    qkeys = np.array([int.from_bytes(hashlib.blake2b(q.encode("utf-8"), digest_size=8).digest(), "little")
                      for q in pool.qids], dtype=np.uint64)
    return _mix64(qkeys[row_q] ^ _mix64(pool.pos_idx[row_pos].astype(np.uint64)))


def gumbel(seed: int, keys: np.ndarray, width: int) -> np.ndarray:
    """Deterministic standard Gumbel noise, float64 [R, width], a function of (seed, row key, column)."""
    with np.errstate(over="ignore"):
        base = _mix64(keys ^ _mix64(np.full(keys.shape, seed & 0xFFFFFFFFFFFFFFFF, dtype=np.uint64)))
        x = _mix64(base[:, None] + np.arange(width, dtype=np.uint64)[None, :])
    u = ((x >> np.uint64(11)).astype(np.float64) + 0.5) * (1.0 / (1 << 53))  # uniform in (0, 1)
    return -np.log(-np.log(u))


def _sample(window: np.ndarray, score: np.ndarray, n: int, temperature: float, noise: np.ndarray) -> np.ndarray:
    """Pick up to n columns of ``window`` per row without replacement, P ~ softmax(score / temperature).

    Gumbel-top-n: the n largest of score/T + Gumbel noise are a draw of successive sampling without
    replacement with softmax probabilities.
    """
    key = np.where(window, score / temperature + noise, -np.inf)
    top = np.argsort(-key, axis=1, kind="stable")[:, :n]
    picked = np.zeros_like(window)
    np.put_along_axis(picked, top, True, axis=1)
    return picked & window


def apply_strategy(pool: CandidatePool, strategy: Strategy, *, seed: int = 0) -> MinedSet:
    """Mine negatives for every (query, positive) row of ``pool`` with ``strategy``."""
    row_q, row_pos = row_layout(pool)
    score = pool.cand_score[row_q].astype(np.float64)  # [R, D]
    valid = pool.cand_idx[row_q] >= 0  # [R, D]
    removed: dict[str, int] = {}
    for f in strategy.filters:
        keep = filter_mask(f, score, valid, pool, row_q, row_pos)
        removed[str(f)] = int((valid & ~keep).sum())
        valid = valid & keep
    sel = strategy.selector
    rank = np.cumsum(valid, axis=1)  # 1-based survivor rank where valid
    if isinstance(sel, NoNegatives):
        chosen = np.zeros_like(valid)
    elif isinstance(sel, TopK):
        chosen = valid & (rank <= sel.n)
    elif isinstance(sel, Sampled):
        noise = gumbel(seed, row_keys(pool, row_q, row_pos), score.shape[1])
        chosen = _sample(valid & (rank <= sel.k), score, sel.n, sel.temperature, noise)
    elif isinstance(sel, Top1Sampled):
        noise = gumbel(seed, row_keys(pool, row_q, row_pos), score.shape[1])
        rest = _sample(valid & (rank >= 2) & (rank <= sel.k), score, sel.n - 1, sel.temperature, noise)
        chosen = (valid & (rank == 1)) | rest
    else:
        raise TypeError(f"not a selector: {sel!r}")
    n = strategy.n
    cols = np.argsort(~chosen, axis=1, kind="stable")[:, :n].astype(np.int32)  # chosen first, in rank order
    has = np.take_along_axis(chosen, cols, axis=1) if n else np.zeros((len(row_q), 0), dtype=bool)
    neg_col = np.where(has, cols, -1).astype(np.int32)
    if neg_col.shape[1] < n:  # pool shallower than n
        neg_col = np.pad(neg_col, ((0, 0), (0, n - neg_col.shape[1])), constant_values=-1)
    return MinedSet(strategy=str(strategy), pool=pool, row_q=row_q, row_pos=row_pos, neg_col=neg_col,
                    removed=removed)
