"""Score fusion and the reranker teacher: expected values are worked out by hand in the comments."""
from __future__ import annotations

import numpy as np
import pytest

from hardneg.errors import HardnegError
from hardneg.mining.candidates import build_pool
from hardneg.mining.fusion import FusionMember, fuse_pools, fusion_name
from hardneg.mining.rerank import cross_encoder_scorer, rerank_pool
from hardneg.types import CandidatePool, Corpus, Dataset, Queries


def make_dataset(docs: list[str], queries: list[str], qrels: dict[str, list[str]]) -> Dataset:
    """Docs d0.., queries q0..; qrels: qid -> positive docids."""
    corpus = Corpus(tuple(f"d{i}" for i in range(len(docs))), ("",) * len(docs), tuple(docs))
    qs = Queries(tuple(f"q{i}" for i in range(len(queries))), tuple(queries))
    return Dataset("toy", "train", corpus, qs, {q: {d: 1 for d in ds} for q, ds in qrels.items()})


def one_dim(scores: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings whose inner products are exactly ``scores`` for the single query: q = [1], d_i = [s_i]."""
    return np.ones((1, 1), dtype=np.float32), np.asarray(scores, dtype=np.float32)[:, None]


# One query, six docs, doc 0 is the positive. Member scores per doc:
#   doc:       0     1     2     3     4     5
#   A:        0.9   0.8   0.1   0.5   0.0   0.45
#   B:        0.3   0.1   0.7   0.6   0.65  0.55
#   A + B:    1.2   0.9   0.8   1.1   0.65  1.0
# depth 2: A's top-2 non-positives {1, 3}, B's {2, 4}; union {1, 2, 3, 4}, fused order 3 (1.1), 1 (0.9), 2, 4.
# Doc 5 (fused 1.0) is in neither top-2: the exact fused ranking is 3 (1.1), 5 (1.0), 1 (0.9).
A_SCORES = [0.9, 0.8, 0.1, 0.5, 0.0, 0.45]
B_SCORES = [0.3, 0.1, 0.7, 0.6, 0.65, 0.55]


@pytest.fixture
def toy():
    ds = make_dataset([f"doc {i}" for i in range(6)], ["query"], {"q0": ["d0"]})
    return ds, [("a", *one_dim(A_SCORES)), ("b", *one_dim(B_SCORES))]


def test_union_fusion_by_hand(toy):
    ds, members = toy
    pool = fuse_pools(members, ds, 2)
    assert pool.teacher == "fusion(a,b)"
    assert pool.cand_idx.tolist() == [[3, 1]]
    np.testing.assert_allclose(pool.cand_score, [[1.1, 0.9]], atol=1e-6)
    np.testing.assert_allclose(pool.pos_score, [1.2], atol=1e-6)
    assert pool.cand_rank.tolist() == [[2, 3]]  # the positive (1.2) ranks first
    assert pool.meta["fusion"]["union_size_mean"] == 4.0


def test_mean_fusion_halves_the_sum(toy):
    ds, members = toy
    pool = fuse_pools(members, ds, 2, how="mean")
    assert pool.teacher == "fusion(a,b,how=mean)" == fusion_name(["a", "b"], "mean")
    np.testing.assert_allclose(pool.cand_score, [[0.55, 0.45]], atol=1e-6)
    np.testing.assert_allclose(pool.pos_score, [0.6], atol=1e-6)


def test_exact_fusion_finds_the_doc_outside_the_union(toy):
    ds, members = toy
    exact = fuse_pools(members, ds, 2, exact=True)
    assert exact.cand_idx.tolist() == [[3, 5]]  # doc 5 (1.0) beats doc 1 (0.9) but no member ranked it top-2
    np.testing.assert_allclose(exact.cand_score, [[1.1, 1.0]], atol=1e-6)
    assert exact.cand_rank.tolist() == [[2, 3]]
    np.testing.assert_allclose(exact.pos_score, [1.2], atol=1e-6)
    exact_mean = fuse_pools(members, ds, 2, how="mean", exact=True)
    np.testing.assert_allclose(exact_mean.cand_score, [[0.55, 0.5]], atol=1e-6)


def _random_members(seed: int, n_docs: int, n_q: int, dims=(8, 12)):
    rng = np.random.default_rng(seed)
    out = []
    for k, dim in enumerate(dims):
        q = rng.normal(size=(n_q, dim)).astype(np.float32)
        d = rng.normal(size=(n_docs, dim)).astype(np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        out.append((f"m{k}", q, d))
    return out


@pytest.fixture
def random_case():
    n_docs, n_q = 60, 7
    qrels = {f"q{i}": [f"d{(5 * i + j) % n_docs}" for j in range(1 + i % 3)] for i in range(n_q)}
    ds = make_dataset([f"doc {i}" for i in range(n_docs)], [f"query {i}" for i in range(n_q)], qrels)
    return ds, _random_members(3, n_docs, n_q)


def test_fused_score_is_the_sum_of_member_scores(random_case):
    ds, members = random_case
    pool = fuse_pools(members, ds, 10)
    qrow = ds.queries.row
    for i, qid in enumerate(pool.qids):
        qr = qrow[qid]
        for d, s in zip(pool.cand_idx[i], pool.cand_score[i]):
            expect = sum(float(q[qr] @ dd[d]) for _, q, dd in members)
            assert s == pytest.approx(expect, abs=1e-5)
        for k in range(pool.pos_ptr[i], pool.pos_ptr[i + 1]):
            d = pool.pos_idx[k]
            assert pool.pos_score[k] == pytest.approx(sum(float(q[qr] @ dd[d]) for _, q, dd in members), abs=1e-5)
    # Every candidate comes from some member's own top-10 (the union), and none is a positive.
    member_pools = [build_pool(n, ds, q, d, 10) for n, q, d in members]
    for i in range(len(pool)):
        union = set(member_pools[0].cand_idx[i]) | set(member_pools[1].cand_idx[i])
        assert set(pool.cand_idx[i]) <= union
        assert not set(pool.cand_idx[i]) & set(pool.pos_idx[pool.pos_ptr[i]:pool.pos_ptr[i + 1]])


def test_union_and_exact_fusion_agree_on_the_union(random_case):
    ds, members = random_case
    depth = 10
    union_pool = fuse_pools(members, ds, depth)
    exact_all = fuse_pools(members, ds, 60, exact=True)  # the full fused ranking of every non-positive
    member_pools = [build_pool(n, ds, q, d, depth) for n, q, d in members]
    for i in range(len(union_pool)):
        union = set(member_pools[0].cand_idx[i]) | set(member_pools[1].cand_idx[i])
        # The exact ranking restricted to the union, truncated to depth, is the union pool's ranking.
        restricted = [(int(d), float(s)) for d, s in zip(exact_all.cand_idx[i], exact_all.cand_score[i])
                      if d in union][:depth]
        assert union_pool.cand_idx[i].tolist() == [d for d, _ in restricted]
        np.testing.assert_allclose(union_pool.cand_score[i], [s for _, s in restricted], atol=1e-5)
    np.testing.assert_allclose(union_pool.pos_score, exact_all.pos_score, atol=1e-5)
    # Ranks in the exact pool count every doc above; in the union pool only union docs + positives: never more.
    exact_d = fuse_pools(members, ds, depth, exact=True)
    same = union_pool.cand_idx == exact_d.cand_idx
    assert (union_pool.cand_rank[same] <= exact_d.cand_rank[same]).all()


def test_callback_members_and_prebuilt_pools(random_case):
    ds, members = random_case
    (n0, q0, d0), (n1, q1, d1) = members
    p0 = build_pool(n0, ds, q0, d0, 10)
    p1 = build_pool(n1, ds, q1, d1, 10)
    cb = [FusionMember(n0, lambda qr, dr: np.einsum("ij,ij->i", q0[qr], d0[dr]), pool=p0),
          FusionMember(n1, lambda qr, dr: np.einsum("ij,ij->i", q1[qr], d1[dr]), pool=p1)]
    a, b = fuse_pools(cb, ds, 10), fuse_pools(members, ds, 10)
    assert a.cand_idx.tolist() == b.cand_idx.tolist()
    np.testing.assert_allclose(a.cand_score, b.cand_score, atol=1e-6)
    with pytest.raises(HardnegError, match="embeddings"):
        fuse_pools(cb, ds, 10, exact=True)


def test_fusion_rejects_bad_members(toy):
    ds, members = toy
    with pytest.raises(HardnegError, match="at least two"):
        fuse_pools(members[:1], ds, 2)
    with pytest.raises(HardnegError, match="twice"):
        fuse_pools([members[0], members[0]], ds, 2)
    with pytest.raises(HardnegError, match="how"):
        fuse_pools(members, ds, 2, how="max")  # type: ignore[arg-type]


# -- reranker teacher ------------------------------------------------------------------------------------------

def overlap_scorer(calls: list[int]):
    """Fake cross-encoder: number of distinct lowercase words shared by query and doc."""
    def score(pairs: list[tuple[str, str]]) -> np.ndarray:
        calls.append(len(pairs))
        return np.asarray([len(set(q.lower().split()) & set(d.lower().split())) for q, d in pairs], dtype=np.float32)
    score.name = "overlap"  # type: ignore[attr-defined]
    return score


def test_rerank_pool_reorders_by_the_new_scores():
    docs = ["cats purr", "cats eat fish", "dogs eat meat", "fish swim", "cats eat cat food fish"]
    ds = make_dataset(docs, ["what do cats eat fish"], {"q0": ["d4"]})
    # First-stage pool (hand-made): candidates 3, 2, 0, 1 in that order; positive d4.
    pool = CandidatePool(teacher="first", qids=("q0",), cand_idx=np.array([[3, 2, 0, 1]], dtype=np.int32),
                         cand_score=np.array([[0.9, 0.8, 0.7, 0.6]], dtype=np.float32),
                         cand_rank=np.array([[2, 3, 4, 5]], dtype=np.int32), pos_ptr=np.array([0, 1]),
                         pos_idx=np.array([4], dtype=np.int32), pos_score=np.array([0.95], dtype=np.float32))
    calls: list[int] = []
    out = rerank_pool(pool, ds, overlap_scorer(calls), batch_size=2, progress=False)
    # Overlap with {what, do, cats, eat, fish}: d0 1, d1 3, d2 1, d3 1, positive d4 3.
    # New order: d1 (3), then the 1s by row: d0, d2, d3.
    assert out.cand_idx.tolist() == [[1, 0, 2, 3]]
    assert out.cand_score.tolist() == [[3.0, 1.0, 1.0, 1.0]]
    assert out.pos_score.tolist() == [3.0]
    # The positive ties d1 at 3 and has the larger row (4 > 1): ranking d1, d4, d0, d2, d3.
    assert out.cand_rank.tolist() == [[1, 3, 4, 5]]
    assert calls == [2, 2, 1]  # 4 candidates + 1 positive in batches of 2
    assert out.teacher == "overlap@first" and out.meta["rerank"]["first_stage"] == "first"


def test_rerank_checks_scorer_output():
    ds = make_dataset(["a b", "b c"], ["a"], {"q0": ["d0"]})
    pool = CandidatePool(teacher="t", qids=("q0",), cand_idx=np.array([[1]], dtype=np.int32),
                         cand_score=np.array([[0.5]], dtype=np.float32), cand_rank=np.array([[2]], dtype=np.int32),
                         pos_ptr=np.array([0, 1]), pos_idx=np.array([0], dtype=np.int32),
                         pos_score=np.array([0.9], dtype=np.float32))
    with pytest.raises(HardnegError, match="scores for"):
        rerank_pool(pool, ds, lambda pairs: np.zeros(len(pairs) + 1), progress=False)
    with pytest.raises(HardnegError, match="NaN"):
        rerank_pool(pool, ds, lambda pairs: np.full(len(pairs), np.nan), progress=False)


def test_cross_encoder_scorer_is_lazy():
    scorer = cross_encoder_scorer("/nonexistent/reranker", activation="none", max_length=128)
    assert scorer.name == "/nonexistent/reranker" and scorer._model is None  # nothing loaded yet
    with pytest.raises(HardnegError, match="activation"):
        cross_encoder_scorer("x", activation="softmax")  # type: ignore[arg-type]
