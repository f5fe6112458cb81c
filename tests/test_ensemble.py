"""Teacher ensembles (cross-sample, intra-sample dedup / no-dedup) on hand-made pools."""
from __future__ import annotations


import numpy as np
import pytest

from hardneg.errors import HardnegError
from hardneg.mining.candidates import build_pool
from hardneg.mining.ensemble import (EnsembleSpec, cross_sample, ensemble_mine, ensemble_rows, ensemble_stats,
                                     intra_sample, parse_ensemble, split_ensemble, survivor_sets)
from hardneg.mining.select import apply_strategy
from hardneg.mining.strategy import parse_strategy
from hardneg.types import Corpus, Dataset, Queries
from hardneg.testing import make_pool

def rows_of(es) -> list[list[tuple[int, str]]]:
    """Per row: [(corpus row, teacher name), ...] of the filled slots."""
    return [[(int(d), es.teachers[t]) for d, t in zip(ri, rt) if d >= 0] for ri, rt in zip(es.neg_idx, es.neg_teacher)]


# Three teachers, two queries with one positive each. Teacher A's candidate 4 scores above 0.76 = 0.8 * 0.95,
# so percpos(0.95) removes it; B scores on a logit scale (positive 9.0), C has fewer survivors.
#   query x survivors  A: 5, 6, 7       B: 5, 8       C: 5
#   query y survivors  A: 1, 2, 3       B: 1, 2, 4    C: 2, 3, 9
POOL_A = make_pool([("x", [0.8], [(4, 0.85), (5, 0.7), (6, 0.6), (7, 0.5)]),
                    ("y", [0.8], [(1, 0.7), (2, 0.6), (3, 0.5)])], teacher="A")
POOL_B = make_pool([("x", [9.0], [(5, 7.0), (8, 6.0)]),
                    ("y", [9.0], [(1, 8.0), (2, 7.5), (4, 7.0)])], teacher="B")
POOL_C = make_pool([("x", [0.9], [(5, 0.4)]),
                    ("y", [0.9], [(2, 0.8), (3, 0.7), (9, 0.6)])], teacher="C")
PERC = parse_strategy("percpos(0.95)+topk(4)")


def survivors():
    return survivor_sets([POOL_A, POOL_B, POOL_C], PERC)


def test_survivor_sets_apply_the_filters_and_keep_the_whole_list():
    a, b, c = survivors()
    assert a.neg_idx[0].tolist() == [5, 6, 7, -1]  # 4 removed by percpos
    assert b.neg_idx[1].tolist() == [1, 2, 4]
    assert c.neg_idx[0].tolist() == [5, -1, -1]
    assert a.strategy == str(PERC)


def test_intra_no_dedup_keeps_duplicates():
    es = intra_sample(survivors(), dedup=False)
    assert es.method == "ensemble(intra,no-dedup)" and es.teachers == ("A", "B", "C")
    assert rows_of(es) == [[(5, "A"), (5, "B"), (5, "C")],   # all three agree on 5
                           [(1, "A"), (1, "B"), (2, "C")]]
    # Each negative keeps its own teacher's score and rank (different scales).
    np.testing.assert_allclose(es.neg_score[0], [0.7, 7.0, 0.4])
    assert es.neg_rank[0].tolist() == [2, 1, 1]
    assert ensemble_stats(es)["duplicate_negatives"] == 3  # x: 5 twice extra; y: 1 once extra


def test_intra_dedup_replaces_duplicates_and_leaves_an_empty_slot():
    es = intra_sample(survivors(), dedup=True)
    # x: A 5; B's 5 is taken -> its next, 8; C has only 5 (taken) -> slot empty (moved to the end).
    # y: A 1; B: 1 taken -> 2; C: 2 taken -> 3.
    assert rows_of(es) == [[(5, "A"), (8, "B")], [(1, "A"), (2, "B"), (3, "C")]]
    assert es.neg_idx[0].tolist() == [5, 8, -1] and np.isnan(es.neg_score[0, 2]) and es.neg_teacher[0, 2] == -1
    np.testing.assert_allclose(es.neg_score[1], [0.7, 7.5, 0.7])
    assert es.neg_rank[1].tolist() == [1, 2, 2]
    st = ensemble_stats(es)
    assert st["rows_short"] == 1 and st["duplicate_negatives"] == 0
    assert st["negatives_per_teacher"] == {"A": 2, "B": 2, "C": 1}


def test_intra_round_robin_past_the_number_of_teachers():
    # n = 5: slots A, B, C, A, B.
    nd = intra_sample(survivors(), dedup=False, n=5)
    assert rows_of(nd)[0] == [(5, "A"), (5, "B"), (5, "C"), (6, "A"), (8, "B")]  # round 2 = each one's 2nd
    d = intra_sample(survivors(), dedup=True, n=5)
    # x: A 5, B 8, C empty, A next untaken 6, B: nothing left after 8 -> empty.
    # y: A 1, B 2, C 3, A: 2 and 3 taken -> nothing left (its list is 1, 2, 3), B: 4.
    assert rows_of(d) == [[(5, "A"), (8, "B"), (6, "A")], [(1, "A"), (2, "B"), (3, "C"), (4, "B")]]


def test_ensemble_mine_intra_uses_strategy_n():
    es = ensemble_mine([POOL_A, POOL_B, POOL_C], PERC, EnsembleSpec("intra", dedup=False))
    assert es.neg_idx.shape == (2, 4) and rows_of(es)[1] == [(1, "A"), (1, "B"), (2, "C"), (2, "A")]
    assert es.name == "percpos(0.95)+topk(4)+ensemble(intra,no-dedup)"


def _three_teacher_pools(n_q: int):
    """Teacher k's candidates are corpus rows 1000 k + j, so a negative's row tells its teacher."""
    pools = []
    for k in range(3):
        qs = [(f"q{i}", [0.9], [(1000 * k + j, 0.5 - 0.01 * j) for j in range(6)]) for i in range(n_q)]
        pools.append(make_pool(qs, teacher="ABC"[k]))
    return pools


def test_cross_sample_one_teacher_per_row_seeded_and_uniform():
    pools = _three_teacher_pools(3000)
    mined = [apply_strategy(p, parse_strategy("topk(4)")) for p in pools]
    es = cross_sample(mined, seed=7)
    assert es.method == "ensemble(cross)"
    from_teacher = es.neg_idx // 1000
    assert (from_teacher == es.row_teacher[:, None]).all()  # every negative of a row from its drawn teacher
    assert (es.neg_teacher == es.row_teacher[:, None]).all()
    assert es.neg_idx[0].tolist() == [1000 * es.row_teacher[0] + j for j in range(4)]
    counts = np.bincount(es.row_teacher, minlength=3)
    assert (np.abs(counts - 1000) < 100).all(), counts  # ~3.5 standard deviations (sd ~ 26)
    assert np.array_equal(cross_sample(mined, seed=7).row_teacher, es.row_teacher)
    other = cross_sample(mined, seed=8).row_teacher
    assert (other != es.row_teacher).mean() > 0.5  # a new seed redraws (2/3 expected to change)
    # Row-keyed: a pool of only the first 100 queries draws the same teachers for them.
    small = [apply_strategy(make_pool([(f"q{i}", [0.9], [(1000 * k + j, 0.5) for j in range(6)])
                                       for i in range(100)], teacher="ABC"[k]), parse_strategy("topk(4)"))
             for k in range(3)]
    assert np.array_equal(cross_sample(small, seed=7).row_teacher, es.row_teacher[:100])
    assert ensemble_stats(es)["rows_per_teacher"] == dict(zip("ABC", counts.tolist()))


def test_cross_sample_cuts_to_n_and_keeps_scores():
    pools = _three_teacher_pools(20)
    es = cross_sample(survivor_sets(pools, parse_strategy("topk(4)")), seed=0, n=2)
    assert es.neg_idx.shape == (20, 2)
    np.testing.assert_allclose(es.neg_score, np.tile([0.5, 0.49], (20, 1)))
    assert es.neg_rank.tolist() == [[1, 2]] * 20


def test_rows_must_match():
    a = make_pool([("x", [0.8], [(1, 0.5)])], teacher="A")
    b = make_pool([("z", [0.8], [(1, 0.5)])], teacher="B")
    c = make_pool([("x", [0.8, 0.7], [(1, 0.5)])], teacher="C")  # an extra positive: more rows
    top = parse_strategy("topk(1)")
    with pytest.raises(HardnegError, match="different queries"):
        intra_sample([apply_strategy(a, top), apply_strategy(b, top)], dedup=True)
    with pytest.raises(HardnegError, match="different \\(query, positive\\) rows"):
        cross_sample([apply_strategy(a, top), apply_strategy(c, top)], seed=0)
    with pytest.raises(HardnegError, match="twice"):
        cross_sample([apply_strategy(a, top), apply_strategy(a, top)], seed=0)


def test_parse_ensemble():
    assert parse_ensemble("ensemble(cross)") == EnsembleSpec("cross")
    assert str(parse_ensemble("Ensemble( intra , dedup )")) == "ensemble(intra,dedup)"
    assert str(parse_ensemble("ensemble(intra,no-dedup)")) == "ensemble(intra,no-dedup)"
    assert parse_ensemble("ensemble(intra,no-dedup)").slug == "ensemble-intra-no-dedup"
    assert parse_ensemble("percpos(0.95)") is None
    for bad in ("ensemble(intra)", "ensemble(cross,dedup)", "ensemble", "ensemble(mix)"):
        with pytest.raises(HardnegError):
            parse_ensemble(bad)
    assert split_ensemble("percpos(0.95)+topk(4)+ensemble(intra,dedup)") == (
        "percpos(0.95)+topk(4)", EnsembleSpec("intra", True))
    assert split_ensemble("ensemble(cross)+topk(4)") == ("topk(4)", EnsembleSpec("cross"))
    assert split_ensemble("topk(4)") == ("topk(4)", None)


def test_ensemble_rows_project_format():
    docs = [f"doc {i}" for i in range(12)]
    corpus = Corpus(tuple(f"d{i}" for i in range(12)), ("",) * 12, tuple(docs))
    ds = Dataset("toy", "train", corpus, Queries(("q0", "q1"), ("first query", "second query")),
                 {"q0": {"d0": 1}, "q1": {"d1": 1, "d2": 1}})
    rng = np.random.default_rng(0)
    pools = []
    for name, dim in (("t1", 6), ("t2", 9)):
        q, d = rng.normal(size=(2, dim)).astype(np.float32), rng.normal(size=(12, dim)).astype(np.float32)
        pools.append(build_pool(name, ds, q, d, 5))
    es = ensemble_mine(pools, parse_strategy("topk(2)"), EnsembleSpec("intra", dedup=False))
    rows = list(ensemble_rows(es, ds))
    assert [(r["qid"], r["pos"]["docid"]) for r in rows] == [("q0", "d0"), ("q1", "d1"), ("q1", "d2")]
    assert rows[0]["query"] == "first query"
    assert rows[1]["pos"]["score"] == pytest.approx(float(pools[0].pos_score[1]), abs=1e-6)  # first teacher's
    assert [n["teacher"] for n in rows[0]["neg"]] == ["t1", "t2"]
    n0 = rows[0]["neg"][0]
    assert n0["docid"] == f"d{pools[0].cand_idx[0, 0]}" and n0["rank"] == int(pools[0].cand_rank[0, 0])
    assert n0["score"] == pytest.approx(float(pools[0].cand_score[0, 0]), abs=1e-6)
    n1 = rows[0]["neg"][1]
    assert n1["docid"] == f"d{pools[1].cand_idx[0, 0]}"
    assert set(rows[0]) == {"qid", "query", "pos", "neg"} and set(n0) == {"docid", "text", "score", "rank", "teacher"}
