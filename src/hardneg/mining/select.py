"""Apply a strategy to a candidate pool: filters as boolean masks over [rows, depth], then a selector.

Everything is vectorised over rows; sampling draws Gumbel noise from a counter-based hash of
(seed, query, positive, column), so a row's negatives depend only on the seed and that row, never on
the other rows or their order.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace

import numpy as np

from hardneg.errors import HardnegError
from hardneg.mining.strategy import (THRESHOLD_FIELD, Abs, Dedup, MarginPos, NoNegatives, PercPos, PosNbr, Sampled,
                                     Shift, SimANS, Strategy, Top1Sampled, TopK, Treat, is_auto, parse_strategy)
from hardneg.types import CandidatePool, MinedSet


@dataclass(frozen=True)
class PoolExtras:
    """Per-pool arrays some filters read besides the pool (computed once per pool: ``hardneg.mining.neighbours``).

      pos_cos  float32 [Q, D]  max cosine of each candidate document to the positive documents of its query
                               (the teacher's document embeddings; NaN where padded)
      dup      bool    [Q, D]  the candidate's normalised text equals a positive's or a higher-ranked candidate's
      judge    {teacher: (cand_score float32 [Q, D], pos_score float32 [P])}: another teacher's scores of the pool's
               candidates and positives, for a treatment's judge (``relabel(percpos(0.98),teacher=mpnet)``)
    """

    pos_cos: np.ndarray | None = None
    dup: np.ndarray | None = None
    judge: dict | None = None


@dataclass(frozen=True)
class TreatedSet(MinedSet):
    """A MinedSet from a strategy with a treatment (``relabel(...)``, ``drop-query(...)``, ``drop(...)``).

      relabel_col  int32 [R, k]  pool columns the judge flagged among the first k, to become extra positives of the
                                 row (rank order, -1 pads); zero columns for drop / drop-query
      treatment    canonical string of the treatment; dropped_queries: queries drop-query removed
    """

    treatment: str = ""
    relabel_col: np.ndarray | None = None
    dropped_queries: int = 0

    @property
    def relabel_idx(self) -> np.ndarray:
        """Corpus rows of the relabelled candidates, int32 [R, k] (-1 pads)."""
        cols = np.maximum(self.relabel_col, 0)
        out = np.take_along_axis(self.pool.cand_idx[self.row_q], cols, axis=1)
        return np.where(self.relabel_col >= 0, out, -1).astype(np.int32)


def _need(extras: PoolExtras | None, name: str, what: str) -> np.ndarray:
    arr = None if extras is None else getattr(extras, name, None)
    if arr is None:
        raise HardnegError(f"{what} needs per-pool arrays that were not computed ({name})", where="apply_strategy",
                           fix="pass extras=hardneg.mining.neighbours.pool_extras(pool, dataset, cache_dir) (hardneg "
                               "mine does this itself)")
    return arr


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
                row_pos: np.ndarray, extras: PoolExtras | None = None) -> np.ndarray:
    """Boolean [R, D]: which candidates filter ``f`` keeps (the paper's rules; see strategy.py)."""
    if isinstance(f, Shift):
        # Pool columns are the positive-free candidates in raw rank order: column j is the (j+1)-th non-positive
        # (its cand_rank also counts the positives above it), so shift(N) drops columns 0..N-1.
        return np.broadcast_to(np.arange(score.shape[1]) >= f.n, score.shape)
    if is_auto(f):
        raise HardnegError(f"{f} must be resolved first (resolve_auto)", where="filter_mask",
                           fix="call apply_strategy, which resolves auto thresholds per pool")
    if isinstance(f, Dedup):
        return ~_need(extras, "dup", "dedup")[row_q]  # [R, D]
    if isinstance(f, Treat):  # the judge's keep mask (what the treatment does with the rest: apply_strategy)
        jpool, jscore = pool, score
        if f.teacher is not None:  # the judge teacher's scores replace the pool's (posnbr/dedup are unaffected)
            judges = (extras.judge if extras is not None else None) or {}
            if f.teacher not in judges:
                _need(None, f"judge:{f.teacher}", f"{f}")
            cand_score, pos_score = judges[f.teacher]
            jpool = replace(pool, cand_score=cand_score, pos_score=pos_score)
            jscore = np.asarray(cand_score)[row_q].astype(np.float64)
        keep = np.ones(score.shape, dtype=bool)
        for g in f.judge:
            keep &= filter_mask(g, jscore, valid, jpool, row_q, row_pos, extras)
        return keep
    with np.errstate(invalid="ignore"):  # NaN pads compare False
        if isinstance(f, PosNbr):
            return _need(extras, "pos_cos", "posnbr").astype(np.float64)[row_q] < f.tau  # [R, D]
        if isinstance(f, Abs):
            return score <= f.t
        ref = pos_reference(pool, row_q, row_pos, f.ref)[:, None]  # [R, 1]
        if isinstance(f, MarginPos):
            return score < ref - f.m
        if isinstance(f, PercPos):
            return score < ref - np.abs(ref) * (1.0 - f.p)
    raise TypeError(f"not a filter: {f!r}")


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser (uint64 arrays; wrap-around multiplication is intended)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def row_keys(pool: CandidatePool, row_q: np.ndarray, row_pos: np.ndarray) -> np.ndarray:
    """A 64-bit key per row from (qid, positive's corpus row): stable across runs and row orders."""
    qkeys = np.array([int.from_bytes(hashlib.blake2b(q.encode("utf-8"), digest_size=8).digest(), "little")
                      for q in pool.qids], dtype=np.uint64)
    return mix64(qkeys[row_q] ^ mix64(pool.pos_idx[row_pos].astype(np.uint64)))


def gumbel(seed: int, keys: np.ndarray, width: int) -> np.ndarray:
    """Deterministic standard Gumbel noise, float64 [R, width], a function of (seed, row key, column)."""
    with np.errstate(over="ignore"):
        base = mix64(keys ^ mix64(np.full(keys.shape, seed & 0xFFFFFFFFFFFFFFFF, dtype=np.uint64)))
        x = mix64(base[:, None] + np.arange(width, dtype=np.uint64)[None, :])
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


AUTO_GRID = 1000  # auto thresholds are resolved on a 0.001 grid (a short, reproducible canonical string)


def _critical(f, score: np.ndarray, pool: CandidatePool, row_q: np.ndarray, row_pos: np.ndarray,
              extras: PoolExtras | None) -> np.ndarray:
    """float64 [R, D] c such that filter ``f`` with threshold x keeps a candidate iff x > c (abs: x >= c), where x is
    the threshold (marginpos: x = -m, so that a larger x always keeps more)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        if isinstance(f, Abs):
            return score
        if isinstance(f, PosNbr):
            return _need(extras, "pos_cos", "posnbr").astype(np.float64)[row_q]
        ref = pos_reference(pool, row_q, row_pos, f.ref)[:, None]  # [R, 1]
        if isinstance(f, MarginPos):
            return score - ref  # keep iff s < ref - m  <=>  -m > s - ref
        # percpos: keep iff s < ref - |ref| (1 - p)  <=>  p > 1 + (s - ref) / |ref|; ref == 0: keep iff s < 0
        c = 1.0 + (score - ref) / np.abs(ref)
        return np.where(ref == 0, np.where(score < 0, -np.inf, np.inf), c)


def _with_threshold(f, x: float):
    """``f`` with threshold x (marginpos: m = -x), auto cleared."""
    v = round(-x if isinstance(f, MarginPos) else x, 6) + 0.0  # + 0.0: no "-0.0" in canonical strings
    return replace(f, **{THRESHOLD_FIELD[type(f)]: v, "coverage": None})


def resolve_auto(pool: CandidatePool, strategy: Strategy, *, extras: PoolExtras | None = None) -> Strategy:
    """``strategy`` with its auto filter replaced by the strictest threshold (0.001 grid) that leaves >= n negatives
    in at least ``coverage`` of the rows of ``pool`` (the other filters applied); unchanged when nothing is auto.

    Raises a one-line HardnegError naming the coverage that is reachable when the asked one is not.
    """
    f = strategy.auto
    if f is None:
        return strategy
    n = strategy.n
    if n == 0:
        raise HardnegError(f'"{strategy}": an auto threshold needs a selector with n >= 1', where="auto",
                           fix="end the strategy with e.g. topk(4)")
    row_q, row_pos = row_layout(pool)
    score = pool.cand_score[row_q].astype(np.float64)  # [R, D]
    valid = pool.cand_idx[row_q] >= 0  # [R, D]
    for g in strategy.filters:
        if g is not f:
            valid &= filter_mask(g, score, valid, pool, row_q, row_pos, extras)
    c = np.where(valid, _critical(f, score, pool, row_q, row_pos, extras), np.inf)  # [R, D]
    rows = c.shape[0]
    v = np.sort(c, axis=1)[:, n - 1] if c.shape[1] >= n else np.full(rows, np.inf)  # [R] n-th smallest
    strict = not isinstance(f, Abs)
    # the loosest threshold each filter allows: percpos p <= 10, posnbr tau <= 1, marginpos m >= 0, abs any
    hi = {PercPos: 10.0, PosNbr: 1.0, MarginPos: 0.0, Abs: math.inf}[type(f)]
    reach_rows = (v < hi) if strict else (v <= hi)
    reach_rows &= np.isfinite(v)
    need = math.ceil(f.coverage * rows - 1e-9)
    reachable = float(reach_rows.mean()) if rows else 0.0
    if rows == 0 or int(reach_rows.sum()) < need:
        loosest = _with_threshold(f, hi) if math.isfinite(hi) else f
        raise HardnegError(f'"{strategy}" on the pool of {pool.teacher}: coverage {f.coverage:g} is unreachable; '
                           f"at most {100 * reachable:.1f}% of rows keep {n} negatives (at {loosest})",
                           where="auto", fix=f"use coverage <= {math.floor(reachable * 1000) / 1000:g}, fewer "
                                             "negatives, or a deeper pool (--depth)")
    vstar = float(np.sort(v)[need - 1])
    lo = {PercPos: 1.0 / AUTO_GRID, PosNbr: -1.0, MarginPos: -math.inf, Abs: -math.inf}[type(f)]
    x = (math.floor(vstar * AUTO_GRID) + (1 if strict else 0)) / AUTO_GRID
    if not strict and x < vstar:
        x += 1.0 / AUTO_GRID
    for _ in range(3):  # float rounding of the grid value: step until the coverage verifiably holds
        x = min(max(x, lo), hi)
        cand = _with_threshold(f, x)
        keep = valid & filter_mask(cand, score, valid, pool, row_q, row_pos, extras)
        if int((keep.sum(axis=1) >= n).sum()) >= need or x >= hi:
            break
        x += 1.0 / AUTO_GRID
    return Strategy(tuple(cand if g is f else g for g in strategy.filters), strategy.selector)


def simans_logits(score: np.ndarray, pos_score: np.ndarray, a: float, b: float) -> np.ndarray:
    """SimANS (Zhou et al. 2022) log-probabilities up to a constant: -a (s - s_pos - b)^2, float64 [R, D]."""
    return -a * (score - pos_score[:, None] - b) ** 2


def apply_strategy(pool: CandidatePool, strategy: Strategy | str, *, seed: int = 0,
                   extras: PoolExtras | None = None) -> MinedSet:
    """Mine negatives for every (query, positive) row of ``pool`` with ``strategy`` (a value or its string).

    An auto threshold is resolved first (``resolve_auto``): the returned set's ``strategy`` is the resolved,
    reproducible string. ``extras`` holds the per-pool arrays posnbr and dedup read. A strategy with a treatment
    returns a ``TreatedSet``.
    """
    if isinstance(strategy, str):
        strategy = parse_strategy(strategy)
    if not isinstance(pool, CandidatePool) or not isinstance(strategy, Strategy):
        raise HardnegError(f"apply_strategy takes a CandidatePool and a strategy, got {type(pool).__name__} and "
                           f"{type(strategy).__name__}", where="apply_strategy",
                           fix='pass get_pool(...)\'s pool and e.g. "percpos(0.95)+topk(4)"')
    strategy = resolve_auto(pool, strategy, extras=extras)
    row_q, row_pos = row_layout(pool)
    score = pool.cand_score[row_q].astype(np.float64)  # [R, D]
    valid = pool.cand_idx[row_q] >= 0  # [R, D]
    removed: dict[str, int] = {}
    treat, relabel_col, keep_row = None, None, None
    for f in strategy.filters:
        keep = filter_mask(f, score, valid, pool, row_q, row_pos, extras)
        if isinstance(f, Treat):
            treat = f
            flagged = valid & ~keep  # [R, D] the judge's verdict on the survivors
            first_k = np.arange(score.shape[1])[None, :] < f.k  # [1, D]
            if f.kind == "relabel":
                relabel_col = _first_cols(flagged & first_k, f.k)  # [R, k]
            elif f.kind == "drop-query":
                bad_row = (flagged & first_k).sum(axis=1) > f.m  # [R]
                bad_q = np.zeros(len(pool), dtype=bool)
                bad_q[row_q[bad_row]] = True
                keep_row = ~bad_q[row_q]  # [R]
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
    elif isinstance(sel, SimANS):
        noise = gumbel(seed, row_keys(pool, row_q, row_pos), score.shape[1])
        logits = simans_logits(score, pool.pos_score[row_pos].astype(np.float64), sel.a, sel.b)  # [R, D]
        chosen = _sample(valid & (rank <= sel.k), np.where(valid, logits, 0.0), sel.n, 1.0, noise)
    else:
        raise TypeError(f"not a selector: {sel!r}")
    n = strategy.n
    neg_col = _first_cols(chosen, n)  # chosen first, in rank order
    if treat is None:
        return MinedSet(strategy=str(strategy), pool=pool, row_q=row_q, row_pos=row_pos, neg_col=neg_col,
                        removed=removed)
    if relabel_col is None:
        relabel_col = np.full((len(row_q), 0), -1, dtype=np.int32)
    dropped = 0
    if keep_row is not None:
        dropped = int(len(np.unique(row_q[~keep_row])))
        row_q, row_pos, neg_col, relabel_col = row_q[keep_row], row_pos[keep_row], neg_col[keep_row], \
            relabel_col[keep_row]
    return TreatedSet(strategy=str(strategy), pool=pool, row_q=row_q, row_pos=row_pos, neg_col=neg_col,
                      removed=removed, treatment=str(treat), relabel_col=relabel_col, dropped_queries=dropped)


def _first_cols(chosen: np.ndarray, n: int) -> np.ndarray:
    """int32 [R, n]: the columns where ``chosen`` [R, D] is True, in column order, -1 padded."""
    cols = np.argsort(~chosen, axis=1, kind="stable")[:, :n].astype(np.int32)
    has = np.take_along_axis(chosen, cols, axis=1) if n else np.zeros((chosen.shape[0], 0), dtype=bool)
    out = np.where(has, cols, -1).astype(np.int32)
    if out.shape[1] < n:  # pool shallower than n
        out = np.pad(out, ((0, 0), (0, n - out.shape[1])), constant_values=-1)
    return out
