"""Exact search: equals a brute-force full sort (score desc, row asc) for any block sizes, ties included."""
from __future__ import annotations

import numpy as np
import pytest

from hardneg.mining.candidates import build_pool, candidates_from_search
from hardneg.search.exact import exact_search, score_pairs
from hardneg.types import Corpus, Dataset, Queries


def brute(q: np.ndarray, d: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    s = q.astype(np.float32) @ d.astype(np.float32).T
    idx = np.stack([np.lexsort((np.arange(d.shape[0]), -row))[:k] for row in s])
    return np.take_along_axis(s, idx, axis=1), idx


@pytest.mark.parametrize("matmul", ["numpy", "torch"])
@pytest.mark.parametrize("qb,db", [(1, 1), (3, 7), (64, 5), (1000, 100000)])
def test_blocked_search_equals_brute_force_with_ties(qb, db, matmul):
    rng = np.random.default_rng(0)
    # Small integer vectors make many exactly-equal scores (ties) that float arithmetic represents exactly.
    d = rng.integers(-2, 3, size=(50, 4)).astype(np.float32)
    d[10] = d[3]  # duplicate documents tie exactly
    d[40] = d[3]
    q = rng.integers(-2, 3, size=(9, 4)).astype(np.float32)
    s, i = exact_search(q, d, 12, query_block=qb, doc_block=db, matmul=matmul)
    bs, bi = brute(q, d, 12)
    np.testing.assert_array_equal(i, bi)
    np.testing.assert_array_equal(s, bs)


def test_shards_equal_one_array_and_depth_larger_than_corpus():
    rng = np.random.default_rng(1)
    d = rng.normal(size=(30, 8)).astype(np.float32)
    q = rng.normal(size=(5, 8)).astype(np.float32)
    s1, i1 = exact_search(q, d, 100)
    s2, i2 = exact_search(q, [d[:7], d[7:20], d[20:]], 100, doc_block=4)
    assert s1.shape == (5, 30)
    np.testing.assert_array_equal(i1, i2)
    # BLAS picks kernels by matrix shape, so other block shapes may round the last bit differently.
    np.testing.assert_allclose(s1, s2, rtol=0, atol=2e-6)
    s3, i3 = exact_search(q, [d[:7], d[7:20], d[20:]], 100, doc_block=4)
    np.testing.assert_array_equal(s2, s3)  # same blocks: bit-identical


def test_score_pairs_matches_dot_products():
    rng = np.random.default_rng(2)
    d = rng.normal(size=(20, 6)).astype(np.float32)
    q = rng.normal(size=(4, 6)).astype(np.float32)
    qr, dr = np.array([0, 0, 3, 2]), np.array([5, 19, 5, 0])
    want = np.einsum("ij,ij->i", q[qr].astype(np.float64), d[dr].astype(np.float64))
    np.testing.assert_allclose(score_pairs(q, d, qr, dr), want, rtol=1e-5)
    np.testing.assert_allclose(score_pairs(q, [d[:6], d[6:]], qr, dr), want, rtol=1e-5)


def test_candidates_drop_positives_and_keep_raw_rank():
    # One query, search result rows [7, 3, 9, 1, 4] with 3 and 1 positive.
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5]], dtype=np.float32)
    idx = np.array([[7, 3, 9, 1, 4]])
    ci, cs, cr = candidates_from_search(scores, idx, np.array([0, 2]), np.array([3, 1], dtype=np.int32), 4, 10)
    assert ci.tolist() == [[7, 9, 4, -1]]
    assert cr.tolist() == [[1, 3, 5, -1]]  # raw ranks with the positives counted
    assert np.isnan(cs[0, 3]) and cs[0, :3].tolist() == pytest.approx([0.9, 0.7, 0.5])


def test_pool_scores_a_positive_outside_the_top_depth_directly():
    # 2-d unit vectors at angles: the query at 0 degrees; the positive (d4) is the least similar doc.
    ang = np.radians([10, 20, 30, 40, 170])
    d_emb = np.stack([np.cos(ang), np.sin(ang)], axis=1).astype(np.float32)
    q_emb = np.array([[1.0, 0.0]], dtype=np.float32)
    ds = Dataset("toy", "train", Corpus(tuple(f"d{i}" for i in range(5)), ("",) * 5, tuple("abcde")),
                 Queries(("q",), ("x",)), {"q": {"d4": 1, "d0": 0}})
    pool = build_pool("toy", ds, q_emb, d_emb, depth=2)
    assert pool.cand_idx.tolist() == [[0, 1]]  # d0 is judged 0: a valid negative
    assert pool.pos_idx.tolist() == [4]
    assert pool.pos_score[0] == pytest.approx(np.cos(np.radians(170)), abs=1e-6)
