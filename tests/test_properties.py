"""Property tests (hypothesis) for the mining filters on random pools built by real search."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

from hardneg.mining.candidates import build_pool
from hardneg.mining.select import apply_strategy
from hardneg.mining.strategy import parse_strategy
from hardneg.types import Corpus, Dataset, Queries

SETTINGS = settings(max_examples=40, deadline=None)


@st.composite
def pools(draw):
    """A random corpus/query set with 1-3 positives per query, searched exactly (depth 8)."""
    seed = draw(st.integers(0, 2**31 - 1))
    n_docs = draw(st.integers(5, 40))
    n_q = draw(st.integers(1, 8))
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(n_docs, 6)).astype(np.float32)
    if draw(st.booleans()):
        d[1::3] = d[0]  # exact duplicates: ties in scores
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    q = rng.normal(size=(n_q, 6)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    ids = tuple(f"d{i}" for i in range(n_docs))
    qrels = {f"q{i}": {f"d{j}": 1 for j in rng.choice(n_docs, size=rng.integers(1, 4), replace=False)}
             for i in range(n_q)}
    ds = Dataset("rand", "train", Corpus(ids, ("",) * n_docs, ids), Queries(tuple(qrels), tuple(qrels)), qrels)
    return build_pool("rand", ds, q, d, depth=8), qrels


def survivors(pool, s):
    m = apply_strategy(pool, parse_strategy(s + "+topk(8)"))
    return [set(r[r >= 0].tolist()) for r in m.neg_idx]


@SETTINGS
@given(pools(), st.floats(0.5, 1.2), st.floats(0.5, 1.2), st.sampled_from(["min", "max", "mean", "row"]))
def test_stricter_percpos_keeps_a_subset(pool_q, p1, p2, ref):
    pool, _ = pool_q
    lo, hi = sorted((p1, p2))
    for a, b in zip(survivors(pool, f"percpos({lo},ref={ref})"), survivors(pool, f"percpos({hi},ref={ref})")):
        assert a <= b


@SETTINGS
@given(pools(), st.floats(0, 0.5), st.floats(0, 0.5), st.floats(-1, 1), st.floats(-1, 1))
def test_stricter_margin_and_abs_keep_subsets(pool_q, m1, m2, t1, t2):
    pool, _ = pool_q
    for a, b in zip(survivors(pool, f"marginpos({max(m1, m2)})"), survivors(pool, f"marginpos({min(m1, m2)})")):
        assert a <= b
    for a, b in zip(survivors(pool, f"abs({min(t1, t2)})"), survivors(pool, f"abs({max(t1, t2)})")):
        assert a <= b


STRATS = ["topk(4)", "percpos(0.95)+topk(3)", "marginpos(0.05,ref=row)+topk(3)", "shift(2)+topk(3)",
          "sampled(6,3)", "percpos(1.05)+top1+sampled(5,3,0.1)", "abs(0.3)+topk(2)"]


@SETTINGS
@given(pools(), st.sampled_from(STRATS), st.integers(0, 5))
def test_no_positive_is_a_negative_and_rows_are_sorted(pool_q, s, seed):
    pool, qrels = pool_q
    m = apply_strategy(pool, parse_strategy(s), seed=seed)
    for r in range(len(m)):
        qid = pool.qids[m.row_q[r]]
        k = int(m.n_neg[r])
        negs = [f"d{i}" for i in m.neg_idx[r, :k]]
        assert not set(negs) & set(qrels[qid])
        assert len(set(negs)) == k
        ranks = m.neg_rank[r, :k]
        assert np.all(np.diff(ranks) > 0)  # teacher rank order
        assert np.all(np.diff(m.neg_score[r, :k]) <= 0)  # hence score order


@SETTINGS
@given(pools(), st.floats(0.5, 1.2), st.floats(0, 0.3), st.integers(1, 5))
def test_filters_agree_with_their_definitions(pool_q, p, margin, n):
    pool, _ = pool_q
    for s, rule in ((f"percpos({p},ref=row)", lambda sc, ref: sc < ref - abs(ref) * (1 - p)),
                    (f"marginpos({margin},ref=row)", lambda sc, ref: sc < ref - margin)):
        m = apply_strategy(pool, parse_strategy(f"{s}+topk({n})"))
        for r in range(len(m)):
            ref = float(pool.pos_score[m.row_pos[r]])
            row_sc = pool.cand_score[m.row_q[r]]
            row_ok = [j for j in range(pool.depth) if pool.cand_idx[m.row_q[r], j] >= 0
                      and rule(float(row_sc[j]), ref)]
            # the selection is exactly the first n candidates (rank order) that satisfy the rule
            assert m.neg_col[r][m.neg_col[r] >= 0].tolist() == row_ok[:n]
