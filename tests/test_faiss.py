"""FAISS backend and out-of-core search: flat == exact (ties included), IVF/HNSW recall, fp16 memmapped shards."""
from __future__ import annotations

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from hardneg.errors import HardnegError  # noqa: E402
from hardneg.search import merge_topk, search, sort_topk  # noqa: E402
from hardneg.search.exact import exact_search  # noqa: E402

faiss = pytest.importorskip("faiss")
from hardneg.search.faiss_backend import faiss_search  # noqa: E402


def tie_data(nd: int = 400, nq: int = 23, dim: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Small integers: many exactly equal scores, every product exact in fp16 storage and fp32 arithmetic."""
    rng = np.random.default_rng(seed)
    d = rng.integers(-2, 3, size=(nd, dim)).astype(np.float32)
    d[[10, 200, 399]] = d[3]  # duplicate docs in different shards
    q = rng.integers(-2, 3, size=(nq, dim)).astype(np.float32)
    return q, d


def brute(q: np.ndarray, d: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    s = q.astype(np.float64) @ d.astype(np.float64).T
    idx = np.stack([np.lexsort((np.arange(d.shape[0]), -row))[:k] for row in s])
    return np.take_along_axis(s, idx, axis=1).astype(np.float32), idx


def fp16_shards(tmp_path, d: np.ndarray, bounds: list[int]) -> list[np.ndarray]:
    out = []
    for j, (lo, hi) in enumerate(zip([0, *bounds], [*bounds, d.shape[0]], strict=True)):
        f = tmp_path / f"shard-{j:05d}.npy"
        np.save(f, d[lo:hi].astype(np.float16))
        out.append(np.load(f, mmap_mode="r"))
    return out


def test_memmapped_fp16_shards_equal_in_memory_search_with_ties(tmp_path):
    q, d = tie_data()
    shards = fp16_shards(tmp_path, d, [64, 65, 300])
    assert all(isinstance(s, np.memmap) and s.dtype == np.float16 for s in shards)
    s, i = exact_search(q, shards, 30, doc_block=50)
    bs, bi = brute(q, d, 30)
    np.testing.assert_array_equal(i, bi)
    np.testing.assert_array_equal(s, bs)
    # Random data: the memmapped fp16 shards equal the in-memory fp32 copy of the same rounded values.
    rng = np.random.default_rng(1)
    dr = rng.normal(size=(3000, 48)).astype(np.float16)
    qr = rng.normal(size=(40, 48)).astype(np.float32)
    shards = fp16_shards(tmp_path, dr, [1000, 2000])
    s1, i1 = exact_search(qr, shards, 50, doc_block=1000)
    s2, i2 = exact_search(qr, dr.astype(np.float32), 50, doc_block=1000)  # same blocks: same float bits
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_array_equal(s1, s2)
    s3, i3 = exact_search(qr, dr.astype(np.float32), 50)  # other block shapes: last-bit rounding only
    np.testing.assert_array_equal(i1, i3)
    # Scores here reach ~26, so one float32 ulp is ~2e-6; BLAS kernels differ per CPU in summation order
    # (seen: 5.7e-6 = 3.7e-7 relative on an AVX-512 machine). Allow a few ulps, relative to the magnitude.
    np.testing.assert_allclose(s1, s3, rtol=1e-6, atol=0)


@pytest.mark.parametrize("doc_block", [7, 64, 100_000])
def test_faiss_flat_equals_exact_with_ties(tmp_path, doc_block):
    q, d = tie_data()
    want_s, want_i = exact_search(q, d, 25)
    s, i = faiss_search(q, d, 25, index="flat", doc_block=doc_block)
    assert s.dtype == np.float32 and i.dtype == np.int64
    np.testing.assert_array_equal(i, want_i)
    np.testing.assert_allclose(s, want_s, rtol=0, atol=1e-5)
    s, i = faiss_search(q, fp16_shards(tmp_path, d, [50, 51, 333]), 25, index="flat", doc_block=doc_block)
    np.testing.assert_array_equal(i, want_i)


def test_faiss_flat_resolves_a_tie_group_larger_than_k():
    rng = np.random.default_rng(2)
    d = rng.normal(size=(500, 8)).astype(np.float32) * 0.01
    d[rng.choice(500, size=60, replace=False)] = 1.0  # 60 identical best docs, scattered rows
    q = np.ones((3, 8), dtype=np.float32)
    s, i = faiss_search(q, d, 10, index="flat")
    want_s, want_i = exact_search(q, d, 10)
    np.testing.assert_array_equal(i, want_i)
    assert (np.diff(i[0]) > 0).all()  # the 10 smallest rows of the tie group, in row order
    np.testing.assert_allclose(s, want_s, rtol=0, atol=1e-5)


def test_faiss_flat_random_data_and_dispatcher():
    rng = np.random.default_rng(4)
    d = rng.normal(size=(5000, 32)).astype(np.float32)
    q = rng.normal(size=(64, 32)).astype(np.float32)
    want_s, want_i = exact_search(q, d, 100)
    s, i = search(q, [d[:1234], d[1234:]], 100, backend="faiss-flat", doc_block=1000)
    np.testing.assert_array_equal(i, want_i)
    np.testing.assert_allclose(s, want_s, rtol=0, atol=1e-5)
    s, i = search(q, d, 10_000, backend="faiss-flat")  # depth beyond the corpus
    assert s.shape == (64, 5000)
    with pytest.raises(HardnegError, match="unknown search backend"):
        search(q, d, 10, backend="faiss-pq")
    with pytest.raises(ValueError, match="depth"):
        faiss_search(q, d, 0)
    with pytest.raises(HardnegError, match="dim"):
        faiss_search(q[:, :8], d, 5)


def clustered(n: int, nq: int, dim: int = 32, n_clusters: int = 50, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_clusters, dim))
    d = centers[rng.integers(n_clusters, size=n)] + 0.3 * rng.normal(size=(n, dim))
    q = centers[rng.integers(n_clusters, size=nq)] + 0.3 * rng.normal(size=(nq, dim))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return q.astype(np.float32), d.astype(np.float32)


def recall(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.mean([len(set(g) & set(w)) / len(w) for g, w in zip(got, want, strict=True)]))


@pytest.mark.parametrize("index,kw", [("ivf", {"nprobe": 8}), ("hnsw", {"ef_search": 64})])
def test_ann_recall_at_10_on_clustered_data(index, kw):
    q, d = clustered(10_000, 200)
    _, want = exact_search(q, d, 10)
    s, i = faiss_search(q, [d[:3500], d[3500:]], 10, index=index, seed=0, doc_block=4096, **kw)
    assert recall(i, want) > 0.9
    np.testing.assert_array_equal(sort_topk(s, i, 10)[1], i)  # sorted by the project's rule
    if index == "ivf":  # k-means is seeded: the same seed gives the same index and results
        np.testing.assert_array_equal(faiss_search(q, d, 10, index=index, seed=0, **kw)[1], i)


def test_merge_topk_is_order_free_and_puts_missing_rows_last():
    s1, i1 = np.array([[0.5, 0.2]], np.float32), np.array([[7, 3]])
    s2, i2 = np.array([[0.5, -np.inf]], np.float32), np.array([[2, -1]])
    for parts in ([(s1, i1), (s2, i2)], [(s2, i2), (s1, i1)]):
        s, i = merge_topk(parts, 4)
        assert i.tolist() == [[2, 7, 3, -1]]
        assert s.tolist()[0][:3] == [0.5, 0.5, pytest.approx(0.2)]


def test_missing_faiss_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` raise ImportError
    with pytest.raises(HardnegError, match="pip install faiss-cpu"):
        faiss_search(np.zeros((1, 4), np.float32), np.zeros((3, 4), np.float32), 2)
