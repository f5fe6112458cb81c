"""The hidden-positive probe: hide one labelled positive of every multi-positive query, mine again, and count how
often each strategy picks the hidden positive as a negative (a known-answer false-negative rate)."""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from hardneg.mining.select import apply_strategy, mix64
from hardneg.mining.strategy import Strategy, as_strategy
from hardneg.types import CandidatePool

PROBE_SALT = 0x48494445  # "HIDE"


def _stat(x: np.ndarray) -> dict[str, float | None]:
    if x.size == 0:
        return {"mean": None, "median": None}
    return {"mean": float(np.mean(x)), "median": float(np.median(x))}


def _qkeys(qids: Sequence[str]) -> np.ndarray:
    return np.array([int.from_bytes(hashlib.blake2b(q.encode("utf-8"), digest_size=8).digest(), "little")
                     for q in qids], dtype=np.uint64)


def choose_hidden(pool: CandidatePool, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One positive to hide per query with >= 2 positives: (pool query indices [Q'], index into pos arrays [Q']).

    The choice is a hash of (seed, qid), uniform over the query's positives.
    """
    npos = np.diff(pool.pos_ptr)
    multi = np.nonzero(npos >= 2)[0]
    if multi.size == 0:
        return multi.astype(np.int64), multi.astype(np.int64)
    with np.errstate(over="ignore"):
        salt = mix64(np.array([(seed & 0xFFFFFFFFFFFFFFFF) ^ PROBE_SALT], dtype=np.uint64))
        h = mix64(_qkeys([pool.qids[i] for i in multi]) ^ salt)
    j = (h % npos[multi].astype(np.uint64)).astype(np.int64)
    return multi.astype(np.int64), pool.pos_ptr[multi] + j


def probe_pool(pool: CandidatePool, seed: int = 0) -> tuple[CandidatePool, dict[str, np.ndarray]]:
    """The pool the teacher would give if one positive per multi-positive query were unlabelled.

    No re-encoding: the hidden doc's score is known (positives are scored directly), so it is inserted into the
    candidate list at its score position (ties: corpus row ascending); the last candidate drops out if the row
    was full, and a hidden doc ranking below the ``depth``-th candidate stays out (as a fresh search would).
    Raw ranks of the other candidates do not change (the full ranking is the same; only labels changed).

    Returns the probe pool (only the multi-positive queries, with the remaining positives) and per probe query:
    ``hidden_idx`` (corpus row), ``hidden_score``, ``hidden_rank`` (1-based raw rank), ``hidden_col`` (its
    candidate column in the probe pool, -1 if beyond depth).
    """
    qs, hid = choose_hidden(pool, seed)
    d = pool.depth
    qn = qs.shape[0]
    cand_idx = np.full((qn, d), -1, dtype=np.int32)
    cand_score = np.full((qn, d), np.nan, dtype=np.float32)
    cand_rank = np.full((qn, d), -1, dtype=np.int32)
    ptr, pidx, pscore = [0], [], []
    h_idx = pool.pos_idx[hid].astype(np.int64)
    h_score = pool.pos_score[hid].astype(np.float32)
    h_rank = np.zeros(qn, dtype=np.int64)
    h_col = np.full(qn, -1, dtype=np.int64)
    for i, (q, hp) in enumerate(zip(qs.tolist(), hid.tolist())):
        lo, hi = int(pool.pos_ptr[q]), int(pool.pos_ptr[q + 1])
        keep = [k for k in range(lo, hi) if k != hp]
        pidx.extend(pool.pos_idx[keep].tolist())
        pscore.extend(pool.pos_score[keep].tolist())
        ptr.append(len(pidx))
        c, s, r = pool.cand_idx[q], pool.cand_score[q], pool.cand_rank[q]
        v = c >= 0
        hs, hr = h_score[i], h_idx[i]
        above = v & ((s > hs) | ((s == hs) & (c < hr)))  # candidates ranked above the hidden doc
        pos_above = int(np.count_nonzero(above))
        others_s, others_r = pool.pos_score[keep], pool.pos_idx[keep]
        p_above = int(np.count_nonzero((others_s > hs) | ((others_s == hs) & (others_r < hr))))
        h_rank[i] = 1 + pos_above + p_above
        # pos_above == d: the row is full and every candidate outranks the hidden doc (beyond depth).
        if pos_above < d:
            h_col[i] = pos_above
            new_c = np.concatenate([c[:pos_above], [hr], c[pos_above:]])[:d]
            new_s = np.concatenate([s[:pos_above], [hs], s[pos_above:]])[:d]
            new_r = np.concatenate([r[:pos_above], [h_rank[i]], r[pos_above:]])[:d]
        else:
            new_c, new_s, new_r = c, s, r
        cand_idx[i], cand_score[i], cand_rank[i] = new_c, new_s, new_r
    probe = CandidatePool(teacher=pool.teacher, qids=tuple(pool.qids[q] for q in qs.tolist()), cand_idx=cand_idx,
                          cand_score=cand_score, cand_rank=cand_rank, pos_ptr=np.asarray(ptr, dtype=np.int64),
                          pos_idx=np.asarray(pidx, dtype=np.int32), pos_score=np.asarray(pscore, dtype=np.float32),
                          meta={**pool.meta, "probe": {"seed": seed, "hidden_per_query": 1}})
    if qn:
        probe.validate()
    return probe, {"query": qs, "hidden_idx": h_idx, "hidden_score": h_score, "hidden_rank": h_rank,
                   "hidden_col": h_col}


def hidden_positive_probe(pool: CandidatePool, strategies: Sequence[Strategy | str], *, seed: int = 0) -> dict:
    """Per strategy: how often the hidden positive of a (query, remaining positive) row is mined as a negative.

    ``pool`` is a teacher's pool built with the full qrels; only queries with >= 2 positives are probed (one
    positive hidden each, chosen by ``seed``; the same seed is passed to sampled strategies). Output per
    strategy: ``rows``, ``rows_caught``, ``catch_rate``, ``queries_caught``, ``query_catch_rate``,
    ``catch_slot`` (1-based position among the row's negatives: mean, median), ``catch_rank`` (the hidden doc's
    raw teacher rank when caught), ``rows_empty`` and ``negatives_per_row`` (a strategy that mines nothing
    catches nothing), ``hidden_share`` (caught / all mined negatives).
    """
    probe, info = probe_pool(pool, seed)
    qn = len(probe)
    in_pool = info["hidden_col"] >= 0
    out: dict[str, Any] = {
        "teacher": pool.teacher, "seed": seed, "depth": pool.depth, "queries_probed": qn,
        "queries_total": len(pool), "hidden_in_pool": int(in_pool.sum()),
        "hidden_rank": _stat(info["hidden_rank"].astype(np.float64)),
        "hidden_score": _stat(info["hidden_score"].astype(np.float64)),
        "strategies": {},
    }
    for st in map(as_strategy, strategies):
        if qn == 0:
            out["strategies"][str(st)] = {"rows": 0, "rows_caught": 0, "catch_rate": None, "queries": 0,
                                          "queries_caught": 0, "query_catch_rate": None}
            continue
        m = apply_strategy(probe, st, seed=seed)
        hidden = info["hidden_idx"][m.row_q]  # [R]
        neg = m.neg_idx
        hit = neg == hidden[:, None]  # [R, n]
        caught = hit.any(axis=1)
        slot = np.argmax(hit, axis=1)[caught] + 1
        rank = info["hidden_rank"][m.row_q][caught]
        q_caught = np.zeros(qn, dtype=bool)
        q_caught[m.row_q[caught]] = True
        n_neg = m.n_neg
        rows = len(m)
        out["strategies"][str(st)] = {
            "rows": rows, "rows_caught": int(caught.sum()), "catch_rate": float(caught.mean()),
            "queries": qn, "queries_caught": int(q_caught.sum()), "query_catch_rate": float(q_caught.mean()),
            "catch_slot": _stat(slot.astype(np.float64)), "catch_rank": _stat(rank.astype(np.float64)),
            "rows_empty": int((n_neg == 0).sum()) if st.n else 0,
            "negatives_per_row": float(n_neg.mean()) if rows else 0.0,
            "hidden_share": float(caught.sum() / n_neg.sum()) if n_neg.sum() else None,
        }
    return out

