"""Diagnostics: Jaccard overlap, the hidden-positive probe, near-duplicate queries, score data and outputs."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from hardneg.mining.candidates import build_pool, positive_rows
from hardneg.mining.diagnostics import (jaccard_rows, near_duplicate_query_negatives, normalize_text,
                                        score_distributions, teacher_overlap)
from hardneg.mining.probe import choose_hidden, hidden_positive_probe, probe_pool
from hardneg.mining.fusion import ranks_with_positives
from hardneg.mining.select import apply_strategy
from hardneg.mining.strategy import parse_strategy
from hardneg.report.diagnostics import run_diagnostics, write_diagnostics
from hardneg.types import CandidatePool, Corpus, Dataset, Queries
from hardneg.testing import make_pool

TOP4 = parse_strategy("topk(4)")


def with_true_ranks(pool: CandidatePool) -> CandidatePool:
    """make_pool's ranks ignore positives; recompute them as the rank among candidates + positives."""
    rank = ranks_with_positives(pool.cand_idx, pool.cand_score, pool.pos_ptr, pool.pos_idx, pool.pos_score)
    return dataclasses.replace(pool, cand_rank=rank)


# -- Jaccard (Table 6) ---------------------------------------------------------------------------------------------

def test_jaccard_by_hand():
    a = make_pool([("r1", [0.9], [(1, .5), (2, .4), (3, .3), (4, .2)]), ("r2", [0.9], [(1, .5), (2, .4)]),
                   ("r3", [0.9], [])], depth=4, teacher="A")
    b = make_pool([("r1", [0.9], [(3, .5), (4, .4), (5, .3), (6, .2)]), ("r2", [0.9], [(2, .5), (1, .4)]),
                   ("r3", [0.9], [])], depth=4, teacher="B")
    c = make_pool([("r1", [0.9], [(7, .5)]), ("r2", [0.9], [(1, .5), (9, .4), (8, .3)]), ("r3", [0.9], [(1, .1)])],
                  depth=4, teacher="C")
    ma, mb, mc = (apply_strategy(p, TOP4) for p in (a, b, c))
    # r1: {1,2,3,4} vs {3,4,5,6}: 2 / 6; r2: {1,2} vs {2,1}: 1; r3: both empty -> left out. Mean 2/3.
    out = teacher_overlap({"A": ma, "B": mb, "C": mc}, n=4)
    pair = {(p["a"], p["b"]): p for p in out["pairs"]}
    assert pair[("A", "B")]["mean_jaccard"] == pytest.approx(2 / 3)
    assert pair[("A", "B")]["rows"] == 2 and pair[("A", "B")]["rows_both_empty"] == 1
    # A vs C: r1 {1..4} vs {7}: 0; r2 {1,2} vs {1,9,8}: 1/4; r3 {} vs {1}: 0. Mean 1/12.
    assert pair[("A", "C")]["mean_jaccard"] == pytest.approx(1 / 12)
    assert out["matrix"]["C"]["A"] == pytest.approx(1 / 12)
    # n = 1: r1 {1} vs {3}: 0; r2 {1} vs {2}: 0.
    assert teacher_overlap({"A": ma, "B": mb}, n=1)["pairs"][0]["mean_jaccard"] == 0.0
    assert jaccard_rows(np.array([[1, 1 + 1, -1]]), np.array([[2, -1, -1]])).tolist() == [0.5]


# -- hidden-positive probe ---------------------------------------------------------------------------------------------

def test_probe_pool_inserts_the_hidden_positive_at_its_score():
    # Positives 0.65 and 0.45; candidates 0.7, 0.6, 0.5 (depth 3, full row).
    pool = with_true_ranks(make_pool([("q", [0.65, 0.45], [(1, 0.7), (2, 0.6), (3, 0.5)])], depth=3))
    assert pool.cand_rank.tolist() == [[1, 3, 4]]
    p0, p1 = (int(x) for x in pool.pos_idx)
    probe, info = probe_pool(pool, seed=0)
    _, hid = choose_hidden(pool, seed=0)
    assert len(probe) == 1 and probe.pos_ptr.tolist() == [0, 1]
    if int(hid[0]) == 0:
        # Hide 0.65: it goes between 0.7 and 0.6; 0.5 drops out (depth 3). Full ranking 1, hidden, 2, 3, 0.45.
        assert probe.cand_idx.tolist() == [[1, p0, 2]]
        assert probe.cand_rank.tolist() == [[1, 2, 3]]
        assert probe.pos_idx.tolist() == [p1] and info["hidden_rank"].tolist() == [2]
        assert info["hidden_col"].tolist() == [1]
    else:
        # Hide 0.45: below the 3rd candidate (0.5) of a full row: beyond depth, the pool does not change.
        # Full ranking: 1 (0.7), positive 0.65, 2, 3, hidden: raw rank 5.
        assert probe.cand_idx.tolist() == [[1, 2, 3]]
        assert probe.cand_rank.tolist() == [[1, 3, 4]]
        assert probe.pos_idx.tolist() == [p0] and info["hidden_rank"].tolist() == [5]
        assert info["hidden_col"].tolist() == [-1]


def test_probe_pool_choice_is_seeded_and_covers_every_positive():
    pool = make_pool([(f"q{i}", [0.9, 0.8, 0.7], [(1, 0.5)]) for i in range(300)]
                     + [("single", [0.9], [(1, 0.5)])])
    qs, hid = choose_hidden(pool, seed=3)
    assert len(qs) == 300  # the single-positive query is not probed
    j = hid - pool.pos_ptr[qs]
    counts = np.bincount(j, minlength=3)
    assert (np.abs(counts - 100) < 40).all(), counts
    assert np.array_equal(choose_hidden(pool, seed=3)[1], hid)
    assert (choose_hidden(pool, seed=4)[1] != hid).any()


def test_hidden_positive_catch_rate_known_answer():
    # Group A (10 queries): positives 0.80 and 0.79, candidates 0.70, 0.60, 0.50, 0.40, 0.30.
    #   Whichever positive is hidden, it ranks first among candidates:
    #   topk(4) catches it at slot 1; percpos(0.95): threshold 0.76 or 0.7505 removes it; shift(2) skips it.
    # Group B (5 queries): positives 0.62 and 0.61, candidates 0.70, 0.65, 0.30, 0.20, 0.10.
    #   The hidden one lands at column 2: topk(4) catches it at slot 3; shift(2)+topk(4) at slot 1;
    #   percpos(0.95): threshold 0.589 or 0.5795 removes it (and 0.70, 0.65) -> not caught.
    # Group C (5 queries): one positive only: not probed.
    a = [(f"a{i}", [0.80, 0.79], [(100, .7), (101, .6), (102, .5), (103, .4), (104, .3)]) for i in range(10)]
    b = [(f"b{i}", [0.62, 0.61], [(200, .7), (201, .65), (202, .3), (203, .2), (204, .1)]) for i in range(5)]
    c = [(f"c{i}", [0.9], [(300, .5)]) for i in range(5)]
    pool = with_true_ranks(make_pool(a + b + c))
    qs, hid = choose_hidden(pool, seed=0)
    lower = (hid - pool.pos_ptr[qs]).astype(float)  # 1 where the lower-scored positive is hidden
    out = hidden_positive_probe(pool, ["topk(4)", "percpos(0.95)+topk(4)", "shift(2)+topk(4)"], seed=0)
    assert out["queries_probed"] == 15 and out["queries_total"] == 20 and out["hidden_in_pool"] == 15
    top = out["strategies"]["topk(4)"]
    assert top["rows"] == 15 and top["rows_caught"] == 15 and top["catch_rate"] == 1.0
    assert top["catch_slot"]["mean"] == pytest.approx((10 * 1 + 5 * 3) / 15)
    assert top["catch_slot"]["median"] == 1.0
    # Raw rank of the hidden doc: A 1 (or 2 below the other positive 0.80), B 3 (or 4 below 0.62).
    assert top["catch_rank"]["mean"] == pytest.approx((10 * 1 + 5 * 3 + lower.sum()) / 15)
    assert 0 < lower.sum() < 15  # the seed hides the higher positive in some queries, the lower in others
    assert top["hidden_share"] == pytest.approx(15 / 60)
    perc = out["strategies"]["percpos(0.95)+topk(4)"]
    assert perc["rows_caught"] == 0 and perc["catch_rate"] == 0.0 and perc["catch_slot"]["mean"] is None
    # The inserted hidden doc pushes the 5th candidate out (depth 5): A keeps 0.7 .. 0.4 (4 negatives);
    # B keeps 0.70, 0.65, hidden, 0.3, 0.2 of which only 0.3 and 0.2 pass percpos (2 negatives).
    assert perc["rows_empty"] == 0 and perc["negatives_per_row"] == pytest.approx((10 * 4 + 5 * 2) / 15)
    shift = out["strategies"]["shift(2)+topk(4)"]
    assert shift["rows_caught"] == 5 and shift["catch_rate"] == pytest.approx(1 / 3)
    assert shift["catch_slot"]["mean"] == 1.0 and shift["query_catch_rate"] == pytest.approx(1 / 3)


def test_probe_ref_min_vs_row():
    # Positives 0.9, 0.5, 0.3 (one hidden per query by the seed); candidates 0.45, 0.2, 0.1. Two rows per query.
    #   hide 0.9 (j=0): candidates [0.9, 0.45, 0.2, 0.1]. min (0.3 -> threshold 0.285) keeps 0.2, 0.1; row 0.5
    #                   (0.475) keeps 0.45, 0.2; row 0.3 keeps 0.2, 0.1: never caught. topk(2): caught twice.
    #   hide 0.5 (j=1): candidates [0.5, 0.45, 0.2, 0.1]. min: 0.285 removes it. row 0.9 (0.855) keeps it: caught
    #                   in that row only. topk(2): caught twice.
    #   hide 0.3 (j=2): candidates [0.45, 0.3, 0.2, 0.1]. min = 0.5 (0.475): 0.45, 0.3 survive -> caught in both
    #                   rows; row: 0.9 -> 0.855 and 0.5 -> 0.475, both keep 0.45, 0.3: caught twice.
    pool = with_true_ranks(make_pool([(f"q{i}", [0.9, 0.5, 0.3], [(1, .45), (2, .2), (3, .1)]) for i in range(60)]))
    strategies = ["topk(2)", "percpos(0.95)+topk(2)", "percpos(0.95,ref=row)+topk(2)"]
    out = hidden_positive_probe(pool, strategies, seed=1)["strategies"]
    qs, hid = choose_hidden(pool, seed=1)
    n = np.bincount(hid - pool.pos_ptr[qs], minlength=3)
    assert (n > 0).all()  # every case occurs
    assert out["topk(2)"]["rows"] == 120 and out["topk(2)"]["rows_caught"] == 120
    assert out["percpos(0.95)+topk(2)"]["rows_caught"] == 2 * n[2]
    assert out["percpos(0.95,ref=row)+topk(2)"]["rows_caught"] == n[1] + 2 * n[2]
    assert out["percpos(0.95,ref=row)+topk(2)"]["queries_caught"] == n[1] + n[2]


# -- near-duplicate queries ----------------------------------------------------------------------------------------

def _nd_dataset() -> Dataset:
    corpus = Corpus(tuple(f"d{i}" for i in range(6)), ("",) * 6, tuple(f"doc {i}" for i in range(6)))
    qs = Queries(("q1", "q2", "q3", "q4"), ("What do cats eat?", "what do  cats eat", "feline diet", "dogs"))
    return Dataset("nd", "train", corpus, qs, {"q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d3": 1}, "q4": {"d4": 1}})


def _nd_pool(ds: Dataset) -> CandidatePool:
    qids, ptr, pidx = positive_rows(ds)
    # q1's candidates: d2 (q2's positive), d3 (q3's positive), d5; the others: d0 and d5.
    cands = {"q1": [2, 3, 5], "q2": [0, 5, -1], "q3": [0, 5, -1], "q4": [2, 0, 5]}
    cand_idx = np.array([cands[q] for q in qids], dtype=np.int32)
    cand_score = np.where(cand_idx >= 0, np.array([[0.9, 0.8, 0.7]] * 4), np.nan).astype(np.float32)
    cand_rank = np.where(cand_idx >= 0, np.array([[2, 3, 4]] * 4), -1).astype(np.int32)
    return CandidatePool("t", tuple(qids), cand_idx, cand_score, cand_rank, ptr, pidx,
                         np.ones(len(pidx), dtype=np.float32))


def test_near_duplicate_negatives_by_text_and_by_embeddings():
    assert normalize_text("  What do  CATS eat?") == "what do cats eat"
    ds = _nd_dataset()
    mined = apply_strategy(_nd_pool(ds), parse_strategy("topk(3)"))
    # Text only: q1 ~ q2 (same normalised text). q1's negative d2 is q2's positive: flagged. q4 also mines d2,
    # but q4 has no near duplicate: not flagged.
    out = near_duplicate_query_negatives(ds, mined, 0.95)
    assert out["query_pairs"] == 1 and out["negatives_flagged"] == 1 and out["rows_flagged"] == 1
    assert out["negatives_total"] == 3 + 2 + 2 + 3
    ex = out["examples"][0]
    assert (ex["qid"], ex["dup_qid"], ex["docid"], ex["slot"], ex["similarity"]) == ("q1", "q2", "d2", 1, 1.0)
    # Embeddings: q3 has cosine 0.96 with q1 -> q1's negative d3 is flagged too (threshold 0.95, not 0.97).
    e = np.array([[1.0, 0.0], [1.0, 0.0], [0.96, 0.28], [0.0, 1.0]], dtype=np.float32)
    out2 = near_duplicate_query_negatives(ds, mined, 0.95, q_emb=e)
    assert out2["query_pairs"] == 3  # q1-q2 (text and cosine), q1-q3, q2-q3
    assert out2["negatives_flagged"] == 2 and out2["rows_flagged"] == 1
    assert near_duplicate_query_negatives(ds, mined, 0.97, q_emb=e)["negatives_flagged"] == 1


# -- score distributions, outputs, driver ------------------------------------------------------------------------------

def test_score_distributions_by_hand():
    pool = make_pool([("a", [0.8], [(1, 0.9), (2, 0.5)]), ("b", [0.6], [(3, 0.4)]), ("c", [0.7], [])], depth=2)
    data = score_distributions({"naive": apply_strategy(pool, TOP4),
                                "perc": apply_strategy(pool, parse_strategy("percpos(0.95)+topk(4)"))})
    naive, perc = data["sets"]["naive"], data["sets"]["perc"]
    assert naive["rows"] == 2 and naive["top1_neg_above_pos"] == 1  # row a: 0.9 > 0.8; row c has no negative
    assert perc["rows"] == 2 and perc["top1_neg_above_pos"] == 0  # a: 0.9 removed -> 0.5
    assert sum(naive["hist"]["pos"]) == 2 and len(data["edges"]["pos"]) == 41
    assert perc["quantiles"]["pos_minus_top1"]["mean"] == pytest.approx(((0.8 - 0.5) + (0.6 - 0.4)) / 2)


def test_write_diagnostics_is_stable(tmp_path):
    res = {"b": 1 / 3, "a": [np.float32(0.1234567891), float("nan")], "dataset": {"name": "x", "split": "y"}}
    write_diagnostics(res, tmp_path)
    text = (tmp_path / "diagnostics.json").read_text()
    assert json.loads(text) == {"a": [0.123457, None], "b": 0.333333, "dataset": {"name": "x", "split": "y"}}
    assert text.index('"a"') < text.index('"b"')
    assert (tmp_path / "diagnostics.md").read_text().startswith("# Diagnostics: x (y)")


def test_run_diagnostics_end_to_end(tmp_path):
    n_docs = 40
    corpus = Corpus(tuple(f"d{i}" for i in range(n_docs)), ("",) * n_docs, tuple(f"doc {i}" for i in range(n_docs)))
    qs = Queries(tuple(f"q{i}" for i in range(8)), tuple(f"query {i}" for i in range(8)))
    qrels = {f"q{i}": {f"d{3 * i + k}": 1 for k in range(1 + i % 3)} for i in range(8)}
    ds = Dataset("toy", "train", corpus, qs, qrels)
    rng = np.random.default_rng(1)
    pools, embs = {}, {}
    for name, dim in (("t1", 8), ("t2", 16)):
        q, d = rng.normal(size=(8, dim)).astype(np.float32), rng.normal(size=(n_docs, dim)).astype(np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        pools[name], embs[name] = build_pool(name, ds, q, d, 20), q
    strategies = ["topk(4)", "percpos(0.95)+topk(4)"]
    res = run_diagnostics(ds, pools, strategies, seed=0, q_embs=embs, out=tmp_path / "diag")
    assert set(res["hidden_positive"]) == {"t1", "t2"}
    assert res["hidden_positive"]["t1"]["queries_probed"] == 5  # q1, q2, q4, q5, q7 have 2 or 3 positives
    assert res["overlap"]["topk(4)"]["pairs"][0]["a"] == "t1"
    for f in ("diagnostics.json", "diagnostics.md", "scores-t1.png", "scores-t2.png"):
        assert (tmp_path / "diag" / f).is_file()
    first = (tmp_path / "diag" / "diagnostics.json").read_bytes()
    run_diagnostics(ds, pools, strategies, seed=0, q_embs=embs, out=tmp_path / "diag", plot=False)
    assert json.loads((tmp_path / "diag" / "diagnostics.json").read_bytes()) | {"plots": None} == \
        json.loads(first) | {"plots": None}
