"""Score fusion of several teachers: one "fusion teacher" whose score is the sum (or mean) of the members'.

Two ways to build the fused candidate pool:

- **union** (default, ``exact=False``): the candidates are the UNION of the members' own top-``depth``
  non-positive lists; every union candidate is rescored by every member (so each has every member's score),
  ranked by fused score (ties: corpus row ascending) and truncated to ``depth``. This works with any member
  that can score arbitrary (query, doc) pairs (an embedder, or a callback around a reranker), but the
  ranking is **only exact within the union**: a doc outside every member's top-``depth`` could have a higher
  fused score than some union candidate (it would need to be mediocre for every member at once, so it is rare
  near the top; deeper member lists make it rarer).
- **exact** (``exact=True``, embedders only): one exact search with concatenated embeddings,
  ``[q_1, ..., q_M] . [d_1, ..., d_M] = s_1 + ... + s_M`` (query parts scaled by ``1/M`` for ``mean``), which is
  the fused ranking over the whole corpus. Costs one extra search and a concatenated copy of the doc
  embeddings in memory (``n_docs x sum(dim)`` float32).

In both, positives' fused scores are computed directly (a positive may fall outside every top-``depth``), and
``cand_rank`` is the 1-based rank in the fused ranking with positives included (for ``union``: the ranking of
union candidates + positives).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from hardneg.errors import HardnegError
from hardneg.mining.candidates import build_pool, candidates_from_search, positive_rows
from hardneg.search.exact import DocShards, as_shards, exact_search, score_pairs
from hardneg.types import CandidatePool, Dataset

How = Literal["sum", "mean"]
HOWS = ("sum", "mean")

# (dataset query rows int64 [n] (rows of dataset.queries), corpus rows int64 [n]) -> scores float [n]
PairScorer = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class FusionMember:
    """One member teacher: a name, a pair scorer, and (optional) its own candidate pool / embeddings.

    ``pool``: the member's own top-k non-positive candidates for the same dataset (e.g. from ``get_pool``);
    when None it is built from ``q_emb``/``d_emb`` by exact search. ``q_emb`` is in ``dataset.queries`` order,
    ``d_emb`` in corpus order (an array or a list of row shards).
    """

    name: str
    score: PairScorer
    pool: CandidatePool | None = None
    q_emb: np.ndarray | None = None
    d_emb: DocShards | None = None

    @classmethod
    def from_embeddings(cls, name: str, q_emb: np.ndarray, d_emb: DocShards,
                        pool: CandidatePool | None = None) -> FusionMember:
        """A member scored by the inner product of its embeddings (cosine when normalised)."""
        q_emb = np.asarray(q_emb)

        def score(q_rows: np.ndarray, d_rows: np.ndarray) -> np.ndarray:
            return score_pairs(q_emb, d_emb, q_rows, d_rows)

        return cls(name=name, score=score, pool=pool, q_emb=q_emb, d_emb=d_emb)


MemberLike = FusionMember | tuple[str, np.ndarray, DocShards]


def fusion_name(names: Sequence[str], how: How = "sum") -> str:
    """Canonical teacher name of a fusion: ``fusion(minilm,mpnet)`` (sum) or ``fusion(minilm,mpnet,how=mean)``."""
    return f"fusion({','.join(names)}{'' if how == 'sum' else ',how=' + how})"


def _as_member(m: MemberLike) -> FusionMember:
    if isinstance(m, FusionMember):
        return m
    if isinstance(m, tuple) and len(m) == 3 and isinstance(m[0], str):
        return FusionMember.from_embeddings(m[0], m[1], m[2])
    raise TypeError(f"a fusion member is a FusionMember or (name, q_emb, d_emb), got {type(m).__name__}")


def _check_members(members: list[FusionMember], how: str, exact: bool) -> None:
    if len(members) < 2:
        raise HardnegError(f"score fusion needs at least two teachers, got {len(members)}",
                           fix="write e.g. fusion(minilm,mpnet)")
    if how not in HOWS:
        raise HardnegError(f"fusion how must be one of {', '.join(HOWS)}, got {how!r}", fix="use how=sum or how=mean")
    names = [m.name for m in members]
    if len(set(names)) != len(names):
        raise HardnegError(f"a fusion member is listed twice: {', '.join(names)}", fix="list each teacher once")
    if exact and any(m.q_emb is None or m.d_emb is None for m in members):
        raise HardnegError("exact fusion needs every member's embeddings (a callback-only member cannot be "
                           "searched)", fix="use exact=False (union of the members' candidate lists)")


def _member_pool(m: FusionMember, dataset: Dataset, depth: int, progress: bool) -> CandidatePool:
    if m.pool is not None:
        return m.pool
    if m.q_emb is None or m.d_emb is None:
        raise HardnegError(f"fusion member {m.name!r} has neither a candidate pool nor embeddings",
                           fix="pass FusionMember(name, score, pool=...) or embeddings")
    return build_pool(m.name, dataset, m.q_emb, m.d_emb, depth, progress=progress)


def _fused_scores(members: list[FusionMember], q_rows: np.ndarray, d_rows: np.ndarray, how: str) -> np.ndarray:
    """Sum (or mean) of every member's score of the pairs, accumulated in float64, returned float32 [n]."""
    total = np.zeros(q_rows.shape[0], dtype=np.float64)
    if q_rows.size == 0:
        return total.astype(np.float32)
    for m in members:
        s = np.asarray(m.score(q_rows, d_rows), dtype=np.float64).reshape(-1)
        if s.shape != total.shape:
            raise HardnegError(f"fusion member {m.name!r} returned {s.shape[0]} scores for {total.shape[0]} pairs",
                               fix="its scorer must return one score per (query row, doc row) pair")
        if not np.all(np.isfinite(s)):
            raise HardnegError(f"fusion member {m.name!r} returned a NaN or infinite score",
                               fix="check the member's embeddings / scorer")
        total += s
    if how == "mean":
        total /= len(members)
    return total.astype(np.float32)


def ranks_with_positives(cand_idx: np.ndarray, cand_score: np.ndarray, pos_ptr: np.ndarray, pos_idx: np.ndarray,
                         pos_score: np.ndarray) -> np.ndarray:
    """1-based rank of every candidate in the ranking of (candidates + positives), score desc, row asc.

    Candidates must be sorted already; rank = column + 1 + positives ranked above. int32 [Q, D], -1 pads.
    """
    q, d = cand_idx.shape
    rank = np.broadcast_to(np.arange(1, d + 1, dtype=np.int64), (q, d)).copy()
    npos = np.diff(pos_ptr)
    for j in range(int(npos.max()) if q else 0):  # loop over the j-th positive of each query (few iterations)
        has = npos > j
        qs = np.nonzero(has)[0]
        p_row = pos_idx[pos_ptr[:-1][has] + j].astype(np.int64)[:, None]  # [q', 1]
        p_s = pos_score[pos_ptr[:-1][has] + j][:, None]
        s, r = cand_score[qs], cand_idx[qs]
        with np.errstate(invalid="ignore"):
            above = (p_s > s) | ((p_s == s) & (p_row < r))
        rank[qs] += above
    return np.where(cand_idx >= 0, rank, -1).astype(np.int32)


def sort_candidates(idx: np.ndarray, score: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row: score desc, corpus row asc, pads (-1) last; first ``depth`` columns, padded if narrower."""
    q = idx.shape[0]
    key_s = np.where(idx >= 0, -score.astype(np.float64), np.inf)
    key_r = np.where(idx >= 0, idx, np.iinfo(np.int64).max)
    order = np.lexsort((key_r, key_s), axis=1)[:, :depth] if idx.shape[1] else np.zeros((q, 0), dtype=np.int64)
    out_i = np.take_along_axis(idx, order, axis=1).astype(np.int32)
    out_s = np.where(out_i >= 0, np.take_along_axis(score, order, axis=1), np.nan).astype(np.float32)
    if out_i.shape[1] < depth:
        pad = depth - out_i.shape[1]
        out_i = np.pad(out_i, ((0, 0), (0, pad)), constant_values=-1)
        out_s = np.pad(out_s, ((0, 0), (0, pad)), constant_values=np.nan)
    return out_i, out_s


def _union(pools: list[CandidatePool], depth: int) -> np.ndarray:
    """Union of the members' first ``depth`` candidates per query, int64 [Q, M*depth], -1 for empty/duplicate."""
    cat = np.concatenate([p.cand_idx[:, :depth].astype(np.int64) for p in pools], axis=1)  # [Q, M*d]
    cat = np.sort(np.where(cat >= 0, cat, np.iinfo(np.int64).max), axis=1)
    dup = np.zeros_like(cat, dtype=bool)
    dup[:, 1:] = cat[:, 1:] == cat[:, :-1]
    return np.where(dup | (cat == np.iinfo(np.int64).max), -1, cat)


def _check_pool(p: CandidatePool, qids: list[str], pos_ptr: np.ndarray, pos_idx: np.ndarray, name: str) -> None:
    if list(p.qids) != qids or not np.array_equal(p.pos_ptr, pos_ptr) or not np.array_equal(p.pos_idx, pos_idx):
        raise HardnegError(f"fusion member {name!r}: its candidate pool was built for other queries or qrels",
                           fix="build every member's pool from the same dataset split")


def fuse_pools(members: Sequence[MemberLike], dataset: Dataset, depth: int, how: How = "sum", *,
               exact: bool = False, name: str | None = None, progress: bool = False) -> CandidatePool:
    """The fusion teacher's candidate pool: score = sum (or mean) of the member scores.

    ``members``: ``FusionMember`` values or ``(name, q_emb, d_emb)`` tuples (q_emb in dataset query order).
    ``exact=False``: union of the members' top-``depth`` lists, rescored by every member, re-ranked, truncated
    (exact only within the union). ``exact=True``: one exact search over concatenated embeddings.
    """
    ms = [_as_member(m) for m in members]
    _check_members(ms, how, exact)
    if depth < 1:
        raise HardnegError(f"depth must be >= 1, got {depth}", fix="use e.g. depth 100")
    qids, pos_ptr, pos_idx = positive_rows(dataset)
    if not qids:
        raise HardnegError(f"no query of split '{dataset.split}' has a positive (relevance > 0)",
                           where=dataset.name, fix="check the qrels scores, or use another split")
    qrow = dataset.queries.row
    q_rows = np.asarray([qrow[q] for q in qids], dtype=np.int64)  # pool query -> dataset query row
    n_docs = len(dataset.corpus)
    pos_q = np.repeat(np.arange(len(qids)), np.diff(pos_ptr))
    pos_score = _fused_scores(ms, q_rows[pos_q], pos_idx.astype(np.int64), how)  # [P]
    meta: dict = {"fusion": {"members": [m.name for m in ms], "how": how, "exact": exact}}

    if exact:
        scale = 1.0 / len(ms) if how == "mean" else 1.0
        q_cat = np.concatenate([np.asarray(m.q_emb, dtype=np.float32)[q_rows] * np.float32(scale) for m in ms],
                               axis=1)  # [Q, sum(dim)]
        d_cat = np.concatenate([np.concatenate([np.asarray(s, dtype=np.float32) for s in as_shards(m.d_emb)])
                                for m in ms], axis=1)  # [n_docs, sum(dim)]
        k = depth + int(np.diff(pos_ptr).max())
        scores, idx = exact_search(q_cat, d_cat, k, progress=progress)
        cand_idx, cand_score, cand_rank = candidates_from_search(scores, idx, pos_ptr, pos_idx, depth, n_docs)
        # Positives through the same concatenated fp32 path, so a positive and a candidate compare consistently.
        pos_score = score_pairs(q_cat, d_cat, pos_q, pos_idx)
    else:
        pools = [_member_pool(m, dataset, depth, progress) for m in ms]
        for m, p in zip(ms, pools):
            _check_pool(p, qids, pos_ptr, pos_idx, m.name)
        short = [m.name for m, p in zip(ms, pools) if p.depth < depth]
        union = _union(pools, depth)  # [Q, U]
        valid = union >= 0
        qq, cc = np.nonzero(valid)
        fused = np.full(union.shape, np.nan, dtype=np.float32)
        fused[qq, cc] = _fused_scores(ms, q_rows[qq], union[qq, cc], how)
        cand_idx, cand_score = sort_candidates(union, fused, depth)
        cand_rank = ranks_with_positives(cand_idx, cand_score, pos_ptr, pos_idx, pos_score)
        sizes = valid.sum(axis=1)
        meta["fusion"].update({"union_size_mean": round(float(sizes.mean()), 3), "union_size_max": int(sizes.max()),
                               "member_depths": [p.depth for p in pools], "shallow_members": short})
    pool = CandidatePool(teacher=name or fusion_name([m.name for m in ms], how), qids=tuple(qids),
                         cand_idx=cand_idx, cand_score=cand_score, cand_rank=cand_rank, pos_ptr=pos_ptr,
                         pos_idx=pos_idx, pos_score=pos_score,
                         meta={**meta, "depth": depth, "corpus": dataset.corpus.fingerprint, "n_docs": n_docs,
                               "dataset": dataset.name, "split": dataset.split})
    pool.validate()
    return pool
