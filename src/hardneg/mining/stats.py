"""Per-strategy statistics: what each filter removed, rows short of n, and the paper's Fig. 4 score data."""
from __future__ import annotations

import numpy as np

from hardneg.types import MinedSet

QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)
HIST_EDGES = np.round(np.linspace(-1.0, 1.0, 81), 6)  # 0.025-wide bins over the cosine range


def _quantiles(x: np.ndarray) -> dict[str, float | None]:
    if x.size == 0:
        return {f"q{int(q * 100):02d}": None for q in QUANTILES} | {"mean": None}
    qs = np.quantile(x, QUANTILES)
    return {f"q{int(q * 100):02d}": round(float(v), 6) for q, v in zip(QUANTILES, qs)} | {
        "mean": round(float(x.mean()), 6)}


def _hist(x: np.ndarray) -> list[int]:
    return np.histogram(np.clip(x, -1.0, 1.0), bins=HIST_EDGES)[0].tolist()


def score_arrays(mined: MinedSet) -> dict[str, np.ndarray]:
    """Per row with >= 1 negative: positive score, top-1 negative score and their difference."""
    has = mined.n_neg > 0
    pos = mined.pos_score[has].astype(np.float64)
    top1 = mined.neg_score[has, 0].astype(np.float64) if mined.neg_col.shape[1] else np.empty(0)
    return {"pos": pos, "top1_neg": top1, "pos_minus_top1": pos - top1}


def mining_stats(mined: MinedSet, n: int, asked: str | None = None) -> dict:
    """Counts and score quantiles (rounded to 1e-6 so the JSON is stable across BLAS builds).

    ``asked``: the strategy as given; when it differs from the one applied (an auto threshold), ``strategy`` is the
    asked one and ``resolved`` the applied, reproducible one (treated sets add ``treatment`` counts).
    """
    n_neg = mined.n_neg
    rows = len(mined)
    arrays = score_arrays(mined)
    q_has_neg = np.zeros(len(mined.pool), dtype=bool)
    q_has_neg[mined.row_q[n_neg > 0]] = True
    valid = int((mined.pool.cand_idx[mined.row_q] >= 0).sum())
    extra: dict = {}
    if asked is not None and asked != mined.strategy:
        extra["resolved"] = mined.strategy
    if getattr(mined, "treatment", ""):
        relabeled = int((mined.relabel_col >= 0).sum()) if mined.relabel_col is not None else 0
        extra["treatment"] = {"name": mined.treatment, "relabeled": relabeled,
                              "dropped_queries": int(mined.dropped_queries)}
    return {
        "strategy": asked if asked is not None else mined.strategy,
        **extra,
        "teacher": mined.pool.teacher,
        "rows": rows,
        "queries": len(mined.pool),
        "queries_without_negatives": int((~q_has_neg).sum()),
        "n_requested": n,
        "rows_full": int((n_neg >= n).sum()),
        "rows_short": int((n_neg < n).sum()),
        "rows_empty": int((n_neg == 0).sum()) if n else 0,
        "negatives_total": int(n_neg.sum()),
        "candidates_considered": valid,
        "removed_by_filter": dict(mined.removed),
        "removed_per_row": {k: round(v / rows, 4) if rows else 0.0 for k, v in mined.removed.items()},
        "pos_score": _quantiles(mined.pos_score.astype(np.float64)),
        "top1_neg_score": _quantiles(arrays["top1_neg"]),
        "pos_minus_top1_neg": _quantiles(arrays["pos_minus_top1"]),
        "top1_neg_above_pos": int((arrays["pos_minus_top1"] < 0).sum()),
        "hist": {"edges": HIST_EDGES.tolist(), "pos": _hist(arrays["pos"]), "top1_neg": _hist(arrays["top1_neg"]),
                 "pos_minus_top1_neg": _hist(arrays["pos_minus_top1"])},
    }
