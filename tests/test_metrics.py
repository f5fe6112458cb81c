"""BEIR-exact metric core: hand-worked values, trec_eval conventions, TREC files, paired tests."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest
import pytrec_eval

from hardneg.errors import HardnegError
from hardneg.evaluate.metrics import (build_run, compute_metrics, paired_test, ranked, read_trec_run,
                                      write_trec_run)

L3 = math.log2(3)  # discount at rank 2 = log2(2 + 1)


def _one(qrels, run, **kw):
    agg, per = compute_metrics(qrels, run, **kw)
    return agg, per


# ------------------------------------------------------------------------------------------ nDCG
def test_ndcg_binary_hand_worked():
    # Relevant d1, d2 retrieved at ranks 2 and 4.
    # DCG  = 1/log2(3) + 1/log2(5) = 0.630930 + 0.430677 = 1.061606
    # IDCG = 1/log2(2) + 1/log2(3) = 1 + 0.630930      = 1.630930
    # nDCG = 1.061606 / 1.630930 = 0.650921
    qrels = {"q": {"d1": 1, "d2": 1}}
    run = {"q": {"d3": 0.9, "d1": 0.8, "d4": 0.7, "d2": 0.6}}
    agg, per = _one(qrels, run)
    expected = (1 / L3 + 1 / math.log2(5)) / (1 + 1 / L3)
    assert per["q"]["ndcg@10"] == pytest.approx(expected, abs=1e-12)
    assert agg["ndcg@10"] == pytest.approx(0.650921, abs=1e-6)
    assert agg["n_queries"] == 1


def test_ndcg_graded_uses_trec_eval_linear_gain():
    # qrels a=2, b=1, c=0; ranking b, c, a.
    # trec_eval gain = rel (linear), discount log2(rank+1):
    #   DCG  = 1/log2(2) + 0/log2(3) + 2/log2(4) = 1 + 0 + 1 = 2
    #   IDCG = 2/log2(2) + 1/log2(3)             = 2 + 0.630930 = 2.630930   (c, rel 0, adds nothing)
    #   nDCG = 2 / 2.630930 = 0.760188
    # The exponential gain 2^rel-1 would give (1 + 3/2) / (3 + 1/log2(3)) = 2.5 / 3.630930 = 0.688529:
    # that is NOT what pytrec_eval (hence BEIR) computes.
    qrels = {"q": {"a": 2, "b": 1, "c": 0}}
    run = {"q": {"b": 0.9, "c": 0.8, "a": 0.7}}
    _, per = _one(qrels, run)
    assert per["q"]["ndcg@10"] == pytest.approx(2 / (2 + 1 / L3), abs=1e-12)
    assert per["q"]["ndcg@10"] == pytest.approx(0.760188, abs=1e-6)
    assert per["q"]["ndcg@10"] != pytest.approx(2.5 / (3 + 1 / L3), abs=1e-3)


def test_rel_zero_and_negative_are_gain_zero_and_not_relevant():
    # "z" (rel 0) and "n" (rel -1) at ranks 1-2 add no gain; relevant "r" at rank 3.
    # nDCG = (1/log2(4)) / 1 = 0.5; recall = 1/1 (denominator counts rel >= 1 only); MRR@10 = 1/3.
    qrels = {"q": {"z": 0, "n": -1, "r": 1}}
    run = {"q": {"z": 0.9, "n": 0.8, "r": 0.7}}
    _, per = _one(qrels, run)
    assert per["q"] == pytest.approx({"ndcg@10": 0.5, "recall@100": 1.0, "mrr@10": 1 / 3})


def test_query_without_relevant_docs_scores_zero_and_counts():
    # q2 has only rel-0 / negative judgements: 0 on every metric (as trec_eval), still in the mean.
    # mean nDCG = (1 + 0 + 0) / 3
    qrels = {"q1": {"a": 1}, "q2": {"a": 0}, "q3": {"a": -1}}
    run = {"q1": {"a": 1.0}, "q2": {"a": 1.0}, "q3": {"a": 1.0}}
    agg, per = _one(qrels, run)
    assert per["q2"] == per["q3"] == {"ndcg@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0}
    assert agg["ndcg@10"] == pytest.approx(1 / 3)
    assert agg["n_queries"] == 3


# -------------------------------------------------------------------------------- the query set
def test_query_missing_from_run_scores_zero_and_lowers_mean():
    # q1 perfect (1.0); q2 absent from the run; q3 with an empty result list.
    # pytrec_eval alone would average over q1 only (1.0); here: (1 + 0 + 0) / 3 = 0.333333.
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 1}}
    run = {"q1": {"a": 0.5}, "q3": {}}
    assert set(pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(run)) <= {"q1", "q3"}
    agg, per = _one(qrels, run)
    assert per["q2"] == {"ndcg@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0}
    assert per["q3"] == {"ndcg@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0}
    for m in ("ndcg@10", "recall@100", "mrr@10"):
        assert agg[m] == pytest.approx(1 / 3)
    assert agg["n_queries"] == 3


def test_run_query_not_in_qrels_is_ignored():
    qrels = {"q1": {"a": 1}}
    agg1, per1 = _one(qrels, {"q1": {"a": 0.5, "b": 0.4}})
    agg2, per2 = _one(qrels, {"q1": {"a": 0.5, "b": 0.4}, "zz": {"a": 0.9}})
    assert agg1 == agg2 and per1 == per2
    assert "zz" not in per2


def test_empty_qrels_is_a_user_error():
    with pytest.raises(HardnegError, match="qrels are empty"):
        compute_metrics({}, {"q": {"a": 1.0}})


# ---------------------------------------------------------------------------- recall and MRR
def test_recall_at_k_hand_worked():
    # 4 relevant docs (r1..r4) plus one judged non-relevant (z, rel 0: not in the denominator).
    # Ranking: r1, x, r2, z, r3, then r4 at rank 7.
    # recall@3 = |{r1, r2}| / 4 = 0.5; recall@5 = 3/4 = 0.75; recall@100 = 4/4 = 1.
    qrels = {"q": {"r1": 1, "r2": 2, "r3": 1, "r4": 1, "z": 0}}
    run = {"q": {"r1": 0.9, "x": 0.8, "r2": 0.7, "z": 0.6, "r3": 0.5, "y": 0.4, "r4": 0.3}}
    _, per = _one(qrels, run, recall_at=(3, 5, 100), ndcg_at=(), mrr_at=())
    assert per["q"] == {"recall@3": 0.5, "recall@5": 0.75, "recall@100": 1.0}


def test_mrr_first_relevant_at_rank_3_and_none_in_top_10():
    # qa: ranks 1-2 are non-relevant (one judged rel 0), first rel > 0 at rank 3 -> 1/3.
    # qb: the only relevant doc is at rank 11 -> MRR@10 = 0, MRR@20 = 1/11.
    # mean MRR@10 = (1/3 + 0) / 2 = 0.166667
    qrels = {"qa": {"z": 0, "r": 1}, "qb": {"r": 1}}
    run = {"qa": {"z": 0.9, "x": 0.8, "r": 0.7},
           "qb": {**{f"n{i:02d}": 1.0 - i / 100 for i in range(10)}, "r": 0.5}}
    agg, per = _one(qrels, run, mrr_at=(10, 20))
    assert per["qa"]["mrr@10"] == pytest.approx(1 / 3)
    assert per["qb"]["mrr@10"] == 0.0
    assert per["qb"]["mrr@20"] == pytest.approx(1 / 11)
    assert agg["mrr@10"] == pytest.approx(1 / 6)


# ----------------------------------------------------------------------------------- ties
def test_ties_follow_trec_eval_docid_descending():
    # trec_eval (form_res_rels.c, comp_sim_docno) sorts by score desc, then strcmp(docid) DESCENDING.
    # Tie x/y at 0.5: y ranks 1, x ranks 2. With x relevant: nDCG = 1/log2(3) = 0.630930, MRR = 1/2.
    qrels = {"q": {"x": 1}}
    for run in ({"q": {"x": 0.5, "y": 0.5}}, {"q": {"y": 0.5, "x": 0.5}}):  # dict order is irrelevant
        raw = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(run)
        assert raw["q"]["ndcg_cut_10"] == pytest.approx(1 / L3)
        _, per = _one(qrels, run)
        assert per["q"]["ndcg@10"] == pytest.approx(1 / L3)
        assert per["q"]["mrr@10"] == 0.5  # BEIR's stable sort would give 1.0 for the first dict order
    # Byte order, not numeric: "9" > "10", so "9" ranks first and relevant "10" is at rank 2.
    _, per = _one({"q": {"10": 1}}, {"q": {"10": 1.0, "9": 1.0}})
    assert per["q"]["ndcg@10"] == pytest.approx(1 / L3)
    assert [d for d, _ in ranked({"10": 1.0, "9": 1.0, "a": 2.0})] == ["a", "9", "10"]


def test_tie_at_cutoff_decided_by_docid():
    # 11 docs tied; cutoff 10 keeps the 10 largest docids. Relevant "d00" is the smallest -> rank 11.
    qrels = {"q": {"d00": 1}}
    run = {"q": {f"d{i:02d}": 1.0 for i in range(11)}}
    _, per = _one(qrels, run, ndcg_at=(10, 11), recall_at=(10, 11), mrr_at=(10, 11))
    assert per["q"]["ndcg@10"] == 0.0 and per["q"]["recall@10"] == 0.0 and per["q"]["mrr@10"] == 0.0
    assert per["q"]["ndcg@11"] == pytest.approx(1 / math.log2(12))
    assert per["q"]["recall@11"] == 1.0 and per["q"]["mrr@11"] == pytest.approx(1 / 11)


# ---------------------------------------------------------------------------- equivalence
def test_equivalent_to_pytrec_eval_on_random_graded_example():
    rng = random.Random(7)
    docs = [f"d{i}" for i in range(120)]
    qrels, run = {}, {}
    for qi in range(40):
        q = f"q{qi}"
        qrels[q] = {d: rng.choice([0, 1, 1, 2, 3]) for d in rng.sample(docs, rng.randint(1, 8))}
        # Scores on a coarse grid: plenty of ties to exercise the tie rule.
        run[q] = {d: rng.randint(0, 20) / 20 for d in rng.sample(docs, rng.randint(0, 60))}
    run["extra"] = {"d1": 1.0}
    ks = (1, 3, 10, 50)
    _, per = compute_metrics(qrels, run, ndcg_at=ks, recall_at=ks, mrr_at=(1000,))
    measures = {"ndcg_cut.1,3,10,50", "recall.1,3,10,50", "recip_rank"}
    ref = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    assert set(per) == set(qrels)
    for q in qrels:
        r = ref.get(q)
        for k in ks:
            assert per[q][f"ndcg@{k}"] == pytest.approx(r[f"ndcg_cut_{k}"] if r else 0.0, abs=1e-12)
            assert per[q][f"recall@{k}"] == pytest.approx(r[f"recall_{k}"] if r else 0.0, abs=1e-12)
        # At a depth beyond the run, MRR@k is trec_eval's recip_rank: same ranking, same ties.
        assert per[q]["mrr@1000"] == pytest.approx(r["recip_rank"] if r else 0.0, abs=1e-12)


# -------------------------------------------------------------------------------- build_run
def test_build_run_padding_identical_ids_and_python_floats():
    docids = ["q1", "d1", "d2"]
    scores = np.array([[0.9, 0.7, 0.5], [0.8, 0.0, 0.0]], dtype=np.float32)
    idx = np.array([[0, 2, 1], [1, -1, -1]])
    run = build_run(["q1", "q2"], docids, scores, idx)
    assert list(run["q1"]) == ["q1", "d2", "d1"] and list(run["q2"]) == ["d1"]  # -1 padding skipped
    assert all(type(s) is float for s in run["q1"].values())
    assert run["q1"]["d2"] == float(np.float32(0.7))  # exact float32 value, widened
    beir = build_run(["q1", "q2"], docids, scores, idx, ignore_identical_ids=True)
    assert list(beir["q1"]) == ["d2", "d1"]
    # The self-match at rank 1 would have made nDCG 0.63; without it the relevant d2 is at rank 1.
    assert compute_metrics({"q1": {"d2": 1}}, beir)[1]["q1"]["ndcg@10"] == 1.0


def test_build_run_rejects_bad_inputs():
    with pytest.raises(HardnegError, match="query ids"):
        build_run(["q1"], ["d"], np.zeros((2, 1), np.float32), np.zeros((2, 1), int))
    with pytest.raises(HardnegError, match="outside the corpus"):
        build_run(["q1"], ["d"], np.zeros((1, 1), np.float32), np.array([[3]]))
    with pytest.raises(HardnegError, match="NaN"):
        build_run(["q1"], ["d"], np.array([[np.nan]], np.float32), np.array([[0]]))


# ------------------------------------------------------------------------------------- TREC
def _sample_run():
    rng = np.random.default_rng(3)
    vals = rng.standard_normal((3, 6)).astype(np.float32)
    docids = [f"doc{i}" for i in range(6)]
    run = build_run(["q2", "q10", "q1"], docids, vals, np.tile(np.arange(6), (3, 1)))
    run["q1"]["doc0"] = run["q1"]["doc1"]  # a tie
    return run


def test_trec_round_trip_and_byte_identity(tmp_path):
    run = _sample_run()
    p1, p2, p3 = tmp_path / "a.trec", tmp_path / "b.trec", tmp_path / "c.trec"
    write_trec_run(p1, run)
    write_trec_run(p2, dict(reversed(list(run.items()))))  # input order must not matter
    back = read_trec_run(p1)
    assert back == run  # exact floats: repr round-trips
    write_trec_run(p3, back)
    assert p1.read_bytes() == p2.read_bytes() == p3.read_bytes()
    lines = p1.read_text().splitlines()
    assert [ln.split()[0] for ln in lines] == sorted(ln.split()[0] for ln in lines)  # queries sorted
    q1 = [ln.split() for ln in lines if ln.startswith("q1 ")]
    assert [int(f[3]) for f in q1] == list(range(1, 7)) and all(f[1] == "Q0" and f[5] == "hardneg" for f in q1)
    # The tied pair is written in trec_eval's order (docid descending), so the rank column is the evaluated rank.
    tied = [f[2] for f in q1 if float(f[4]) == run["q1"]["doc1"]]
    assert tied == ["doc1", "doc0"]


@pytest.mark.parametrize("line, match", [
    ("q1 Q0 d1 1 0.5", "expected 6 fields"),
    ("q1 Q0 d1 one 0.5 tag", "rank 'one'"),
    ("q1 Q0 d1 1 high tag", "score 'high'"),
    ("q1 Q0 d1 1 nan tag", "NaN"),
])
def test_read_trec_run_malformed_line(tmp_path, line, match):
    p = tmp_path / "bad.trec"
    p.write_text(f"q1 Q0 d0 1 0.9 tag\n\n{line}\n")
    with pytest.raises(HardnegError, match=match) as ei:
        read_trec_run(p)
    assert ei.value.line == 3 and ei.value.fix and f"{p}:3" in str(ei.value)


def test_read_trec_run_duplicate_and_missing(tmp_path):
    p = tmp_path / "dup.trec"
    p.write_text("q1 Q0 d0 1 0.9 t\nq1 Q0 d0 2 0.8 t\n")
    with pytest.raises(HardnegError, match="twice"):
        read_trec_run(p)
    with pytest.raises(HardnegError, match="not found"):
        read_trec_run(tmp_path / "nope.trec")


def test_write_trec_run_rejects_whitespace_ids(tmp_path):
    with pytest.raises(HardnegError, match="whitespace"):
        write_trec_run(tmp_path / "x.trec", {"q 1": {"d": 1.0}})
    assert not (tmp_path / "x.trec").exists()


# ------------------------------------------------------------------------------ paired tests
@pytest.mark.parametrize("method", ["randomization", "bootstrap"])
def test_paired_identical_inputs(method):
    a = {f"q{i}": i / 50 for i in range(50)}
    r = paired_test(a, dict(a), method=method, n_resamples=2000)
    assert r["mean_diff"] == 0.0 and r["p_value"] == 1.0
    assert r["ci_low"] == r["ci_high"] == 0.0


@pytest.mark.parametrize("method", ["randomization", "bootstrap"])
def test_paired_clear_shift_and_determinism(method):
    rng = np.random.default_rng(1)
    base = rng.uniform(0.2, 0.8, 60)
    a = {f"q{i}": float(v) for i, v in enumerate(base)}
    b = {f"q{i}": float(v + 0.1 + rng.normal(0, 0.05)) for i, v in enumerate(base)}
    r = paired_test(a, b, method=method, n_resamples=5000, seed=0)
    assert r["mean_diff"] == pytest.approx(np.mean([b[q] - a[q] for q in a]))
    assert r["p_value"] < 1e-3 and r["ci_low"] > 0.05 and r["ci_high"] < 0.15
    assert paired_test(a, b, method=method, n_resamples=5000, seed=0) == r
    # Reversed direction: same p, negated difference and CI.
    rev = paired_test(b, a, method=method, n_resamples=5000, seed=0)
    assert rev["mean_diff"] == pytest.approx(-r["mean_diff"]) and rev["p_value"] == pytest.approx(r["p_value"])


def test_paired_seed_changes_monte_carlo_and_exact_small_n():
    rng = np.random.default_rng(2)
    a = {f"q{i}": float(v) for i, v in enumerate(rng.uniform(0, 1, 40))}
    b = {q: v + float(rng.normal(0.02, 0.2)) for q, v in a.items()}
    p0 = paired_test(a, b, n_resamples=3000, seed=0)["p_value"]
    p1 = paired_test(a, b, n_resamples=3000, seed=1)["p_value"]
    assert p0 != p1 and abs(p0 - p1) < 0.1
    # n=3, all diffs +0.1: of the 2^3 = 8 sign patterns only +++ and --- reach |mean| >= 0.1 -> p = 2/8.
    r = paired_test({"a": 0.0, "b": 0.5, "c": 0.2}, {"a": 0.1, "b": 0.6, "c": 0.3})
    assert r["exact"] and r["p_value"] == pytest.approx(0.25)


def test_paired_rejects_mismatched_queries():
    with pytest.raises(HardnegError, match="different queries"):
        paired_test({"q1": 0.1}, {"q2": 0.2})
    with pytest.raises(HardnegError, match="method"):
        paired_test({"q1": 0.1}, {"q1": 0.2}, method="t")  # type: ignore[arg-type]
