"""False-negative diagnostics and teacher comparisons: pure functions over pools / mined sets (the tables and
plots are rendered by ``hardneg.report.diagnostics``).

- ``teacher_overlap``: mean Jaccard of the top-n negative sets per row between teacher pairs (paper Table 6).
- ``hidden_positive_probe`` (``hardneg.mining.probe``): hide one labelled positive of every multi-positive query,
  mine again, and count how often each strategy picks the hidden positive as a negative.
- ``near_duplicate_query_negatives``: negatives that are labelled positives of a near-duplicate query.
- ``score_distributions``: the paper's Fig. 4 data (positive, top-1 negative, positive minus top-1 negative).
- ``diagnose``: every diagnostic for every teacher x strategy, as one dict.
"""
from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hardneg.errors import HardnegError
from hardneg.mining.ensemble import EnsembleSet, check_same_rows
from hardneg.mining.probe import hidden_positive_probe
from hardneg.mining.select import apply_strategy
from hardneg.mining.stats import score_arrays
from hardneg.mining.strategy import Strategy, as_strategy
from hardneg.search.exact import exact_search
from hardneg.types import CandidatePool, Dataset, MinedSet


# -- teacher overlap (Table 6) --------------------------------------------------------------------------------

def jaccard_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row Jaccard of two [R, n] sets of corpus rows (-1 = empty); NaN where both rows are empty."""
    va, vb = a >= 0, b >= 0
    inter = ((a[:, :, None] == b[:, None, :]) & va[:, :, None] & vb[:, None, :]).any(axis=2).sum(axis=1)
    union = va.sum(axis=1) + vb.sum(axis=1) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.maximum(union, 1), np.nan)


def teacher_overlap(mined_by_teacher: Mapping[str, MinedSet], n: int = 4) -> dict:
    """Mean over rows of Jaccard(top-n negatives of teacher a, of teacher b), for every teacher pair.

    Rows where both teachers have no negative are left out (counted in ``rows_both_empty``).
    """
    names = list(mined_by_teacher)
    sets = [mined_by_teacher[k] for k in names]
    check_same_rows(sets)
    tops = [m.neg_idx[:, :n] for m in sets]
    pairs, matrix = [], {a: {} for a in names}
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            jac = jaccard_rows(tops[i], tops[j])
            ok = ~np.isnan(jac)
            mean = float(jac[ok].mean()) if ok.any() else None
            pairs.append({"a": names[i], "b": names[j], "mean_jaccard": mean, "rows": int(ok.sum()),
                          "rows_both_empty": int((~ok).sum())})
            matrix[names[i]][names[j]] = matrix[names[j]][names[i]] = mean
    return {"n": n, "strategy": sets[0].strategy if sets else None, "pairs": pairs, "matrix": matrix}


# -- near-duplicate queries -------------------------------------------------------------------------------------

def normalize_text(text: str) -> str:
    """NFKC, lowercase, every run of non-word characters -> one space, stripped."""
    return re.sub(r"\W+", " ", unicodedata.normalize("NFKC", text).lower()).strip()


def _rows_of(mined: MinedSet | EnsembleSet) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(qid per row, neg_idx [R, n], neg_rank [R, n]) of a MinedSet or an EnsembleSet."""
    if isinstance(mined, EnsembleSet):
        return [mined.qids[q] for q in mined.row_q.tolist()], mined.neg_idx, mined.neg_rank
    return [mined.pool.qids[q] for q in mined.row_q.tolist()], mined.neg_idx, mined.neg_rank


def near_duplicate_pairs(dataset: Dataset, threshold: float, q_emb: np.ndarray | None = None, *,
                         max_neighbors: int = 50) -> dict[str, dict[str, float]]:
    """qid -> {near-duplicate qid: similarity} over the split's queries (symmetric, no self pairs).

    Near duplicate: identical normalised text (similarity reported as 1.0), or cosine of the teacher's query
    embeddings >= ``threshold`` among each query's ``max_neighbors`` nearest queries (``q_emb`` in
    ``dataset.queries`` order; None: text identity only).
    """
    ids, texts = dataset.queries.ids, dataset.queries.texts
    out: dict[str, dict[str, float]] = {q: {} for q in ids}
    groups: dict[str, list[int]] = {}
    for i, t in enumerate(texts):
        groups.setdefault(normalize_text(t), []).append(i)
    for members in groups.values():
        for a in members:
            for b in members:
                if a != b:
                    out[ids[a]][ids[b]] = 1.0
    if q_emb is not None and len(ids) > 1:
        e = np.asarray(q_emb, dtype=np.float32)
        if e.shape[0] != len(ids):
            raise HardnegError(f"query embeddings have {e.shape[0]} rows for {len(ids)} queries",
                               fix="pass the teacher's embeddings of dataset.queries, in its order")
        norms = np.linalg.norm(e, axis=1, keepdims=True)
        e = np.divide(e, norms, out=np.zeros_like(e), where=norms > 0)
        scores, idx = exact_search(e, e, min(max_neighbors + 1, len(ids)))
        for a, b in zip(*np.nonzero(scores >= threshold)):
            j = int(idx[a, b])
            if j != a:
                s = float(scores[a, b])
                qa, qb = ids[a], ids[j]
                out[qa][qb] = max(out[qa].get(qb, s), s)
                out[qb][qa] = max(out[qb].get(qa, s), s)
    return out


def near_duplicate_query_negatives(dataset: Dataset, mined: MinedSet | EnsembleSet, threshold: float = 0.95, *,
                                   q_emb: np.ndarray | None = None, max_neighbors: int = 50,
                                   examples: int = 10, pairs: dict[str, dict[str, float]] | None = None) -> dict:
    """Count mined negatives that are labelled positives of a near-duplicate query (likely false negatives).

    ``pairs`` (from ``near_duplicate_pairs``) can be passed to reuse one neighbour search for many mined sets.
    """
    if pairs is None:
        pairs = near_duplicate_pairs(dataset, threshold, q_emb, max_neighbors=max_neighbors)
    drow = dataset.corpus.row
    pos_rows = {q: {drow[d] for d in dataset.positives(q)} for q in dataset.queries.ids}
    qtext = dict(zip(dataset.queries.ids, dataset.queries.texts))
    row_qids, neg_idx, neg_rank = _rows_of(mined)
    flagged_rows = flagged = total = 0
    ex: list[dict] = []
    cache: dict[str, dict[int, tuple[str, float]]] = {}
    for r, qid in enumerate(row_qids):
        if qid not in cache:  # doc row -> (near-duplicate qid with that positive, similarity), best similarity
            m: dict[int, tuple[str, float]] = {}
            for q2, sim in sorted(pairs.get(qid, {}).items(), key=lambda kv: (-kv[1], kv[0])):
                for d in pos_rows.get(q2, ()):
                    if d not in m and d not in pos_rows.get(qid, set()):
                        m[d] = (q2, sim)
            cache[qid] = m
        m = cache[qid]
        negs = neg_idx[r]
        row_hit = False
        for j, d in enumerate(negs.tolist()):
            if d < 0:
                continue
            total += 1
            if d in m:
                flagged += 1
                row_hit = True
                if len(ex) < examples:
                    q2, sim = m[d]
                    ex.append({"qid": qid, "query": qtext[qid], "dup_qid": q2, "dup_query": qtext[q2],
                               "similarity": sim, "docid": dataset.corpus.ids[d], "slot": j + 1,
                               "rank": int(neg_rank[r, j])})
        flagged_rows += row_hit
    n_pairs = sum(len(v) for v in pairs.values()) // 2
    return {"threshold": threshold, "by_embeddings": q_emb is not None, "query_pairs": n_pairs,
            "queries_with_near_duplicate": sum(1 for v in pairs.values() if v),
            "rows": len(row_qids), "rows_flagged": flagged_rows, "negatives_total": total,
            "negatives_flagged": flagged, "flagged_rate": flagged / total if total else None, "examples": ex}


# -- score distributions (Fig. 4) --------------------------------------------------------------------------------

KINDS = ("pos", "top1_neg", "pos_minus_top1")


def _score_arrays(m: MinedSet | EnsembleSet) -> dict[str, np.ndarray]:
    if isinstance(m, EnsembleSet):
        has = m.n_neg > 0
        t = np.maximum(m.neg_teacher[has, 0], 0)
        pos = m.pos_score[has, t].astype(np.float64)  # the top-1 negative's own teacher's positive score
        top1 = m.neg_score[has, 0].astype(np.float64)
        return {"pos": pos, "top1_neg": top1, "pos_minus_top1": pos - top1}
    a = score_arrays(m)
    return {"pos": a["pos"], "top1_neg": a["top1_neg"], "pos_minus_top1": a["pos_minus_top1"]}


def _edges(values: list[np.ndarray], bins: int) -> np.ndarray:
    x = np.concatenate([v for v in values if v.size] or [np.zeros(0)])
    if x.size == 0:
        return np.linspace(-1.0, 1.0, bins + 1)
    lo, hi = math.floor(float(x.min()) * 20) / 20, math.ceil(float(x.max()) * 20) / 20
    if hi <= lo:
        hi = lo + 0.05
    return np.round(np.linspace(lo, hi, bins + 1), 6)


def score_distributions(mined_sets: Mapping[str, MinedSet | EnsembleSet], *, bins: int = 40) -> dict:
    """Histogram data per set (shared edges per kind): positive, top-1 negative, positive - top-1 negative.

    Rows without a negative are left out. Per set also quantiles and ``top1_neg_above_pos`` (rows where the
    top-1 negative outscores the positive: the paper's Fig. 4b).
    """
    arrays = {name: _score_arrays(m) for name, m in mined_sets.items()}
    edges = {k: _edges([a[k] for a in arrays.values()], bins) for k in KINDS}
    sets = {}
    for name, a in arrays.items():
        q = {k: ({f"q{int(p * 100):02d}": float(v) for p, v in zip((0.05, 0.5, 0.95),
                                                                   np.quantile(a[k], (0.05, 0.5, 0.95)))}
                 | {"mean": float(a[k].mean())}) if a[k].size else None for k in KINDS}
        sets[name] = {"rows": int(a["pos"].size), "hist": {k: np.histogram(a[k], bins=edges[k])[0].tolist()
                                                          for k in KINDS},
                      "quantiles": q, "top1_neg_above_pos": int((a["pos_minus_top1"] < 0).sum())}
    return {"kinds": list(KINDS), "edges": {k: v.tolist() for k, v in edges.items()}, "sets": sets}


def diagnose(dataset: Dataset, pools: Mapping[str, CandidatePool], strategies: Sequence[Strategy | str], *,
             seed: int = 0, n_overlap: int = 4, q_embs: Mapping[str, np.ndarray] | None = None,
             near_dup_threshold: float = 0.95, examples: int = 10) -> dict:
    """Every diagnostic for every teacher x strategy (``hardneg.report.diagnostics.run_diagnostics`` writes it).

    ``pools``: teacher name -> its candidate pool for ``dataset`` (full qrels, e.g. from ``get_pool``).
    ``q_embs``: teacher name -> its query embeddings in ``dataset.queries`` order (optional; enables the
    embedding test of near-duplicate queries, else identical normalised text only).
    """
    if not pools:
        raise HardnegError("diagnose needs at least one teacher", fix="pass --teacher")
    strats = [as_strategy(s) for s in strategies]
    if not strats:
        raise HardnegError("diagnose needs at least one strategy", fix="pass --strategy, e.g. percpos(0.95)+topk(4)")
    q_embs = q_embs or {}
    teachers = list(pools)
    mined = {t: {str(s): apply_strategy(pools[t], s, seed=seed) for s in strats} for t in teachers}
    result: dict[str, Any] = {
        "dataset": {"name": dataset.name, "split": dataset.split, "docs": len(dataset.corpus),
                    "queries": len(dataset.queries)},
        "seed": seed, "teachers": teachers, "strategies": [str(s) for s in strats],
        "hidden_positive": {t: hidden_positive_probe(pools[t], strats, seed=seed) for t in teachers},
        "near_duplicates": {}, "score_distributions": {},
    }
    if len(teachers) >= 2:
        result["overlap"] = {str(s): teacher_overlap({t: mined[t][str(s)] for t in teachers}, n_overlap)
                             for s in strats}
    for t in teachers:
        pairs = near_duplicate_pairs(dataset, near_dup_threshold, q_embs.get(t))
        result["near_duplicates"][t] = {s: near_duplicate_query_negatives(dataset, m, near_dup_threshold,
                                                                          q_emb=q_embs.get(t), examples=examples,
                                                                          pairs=pairs)
                                        for s, m in mined[t].items()}
        result["score_distributions"][t] = score_distributions(mined[t])
    return result
