"""False-negative filters (posnbr, dedup), auto thresholds, treatments and SimANS on hand-made pools.

Every expected value is worked out by hand in the comments, as in test_mining.py.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from hardneg.errors import HardnegError
from hardneg.mining.neighbours import dup_mask, normalise_text, pos_cos_matrix
from hardneg.mining.select import PoolExtras, TreatedSet, apply_strategy, resolve_auto
from hardneg.mining.strategy import parse_strategy
from hardneg.testing import make_pool

# Query A: one positive (corpus row 0) scored 0.80; candidates (row, score) in rank order.
A = ("qa", [(0, 0.80)], [(10, 0.79), (11, 0.77), (12, 0.765), (13, 0.70), (14, 0.60), (15, 0.50)])
# Query B: two positives (rows 1, 2) scored 0.90 and 0.60.
B = ("qb", [(1, 0.90), (2, 0.60)], [(20, 0.85), (21, 0.70), (22, 0.58), (23, 0.55), (24, 0.40)])
# Document cosines of the candidates to their query's closest positive (max over positives), by hand.
POS_COS = np.array([[0.99, 0.50, 0.93, 0.91, 0.20, 0.10],
                    [0.95, 0.30, 0.20, 0.96, 0.10, np.nan]], dtype=np.float32)
# dedup: 11 has a positive's text, 14 repeats 12's text (12 ranks higher, so only 14 goes); B: 23 repeats 21.
DUP = np.array([[False, True, False, False, True, False],
                [False, False, False, True, False, False]])
EXTRAS = PoolExtras(pos_cos=POS_COS, dup=DUP)


def negs(pool, s: str, seed: int = 0, extras=EXTRAS) -> list[list[int]]:
    m = apply_strategy(pool, parse_strategy(s), seed=seed, extras=extras)
    return [[int(x) for x in row if x >= 0] for row in m.neg_idx]


def test_posnbr_drops_candidates_at_or_above_tau():
    pool = make_pool([A, B])
    # tau 0.93: A drops 0.99 and 0.93 (>= is dropped) -> 11, 13, 14; B drops 0.95, 0.96 -> 21, 22, 24 (both rows)
    assert negs(pool, "posnbr(0.93)+topk(3)") == [[11, 13, 14], [21, 22, 24], [21, 22, 24]]
    # tau 0.92: 13 (0.91 < 0.92) is still kept -> the same
    assert negs(pool, "posnbr(0.92)+topk(3)") == [[11, 13, 14], [21, 22, 24], [21, 22, 24]]
    # tau 0.9: 13 (0.91) goes too -> 11, 14, 15
    assert negs(pool, "posnbr(0.9)+topk(3)") == [[11, 14, 15], [21, 22, 24], [21, 22, 24]]
    m = apply_strategy(pool, "posnbr(0.9)+topk(3)", extras=EXTRAS)
    assert m.removed == {"posnbr(0.9)": 3 + 2 * 2}  # A: 10, 12, 13; B: 20, 23 in each of its 2 rows


def test_dedup_drops_positive_and_earlier_duplicates():
    pool = make_pool([A, B])
    assert negs(pool, "dedup+topk(4)") == [[10, 12, 13, 15], [20, 21, 22, 24], [20, 21, 22, 24]]
    # with percpos(0.95) (A: keep < 0.76 -> 13, 14, 15; dedup removes 14)
    assert negs(pool, "percpos(0.95)+dedup+topk(4)")[0] == [13, 15]


def test_dup_mask_from_texts():
    texts = {0: "Cats  purr.", 10: "cats purr", 11: "Dogs, bark!", 12: "dogs bark", 13: "Birds"}
    pool = make_pool([("q", [(0, 0.9)], [(10, 0.8), (11, 0.7), (12, 0.6), (13, 0.5)])])
    # 10 equals the positive ("cats purr"); 12 equals the earlier 11 ("dogs bark"); 11 and 13 are first of their text
    assert dup_mask(pool, texts).tolist() == [[True, False, True, False]]
    assert normalise_text("  Hello,\tWORLD!! ") == "hello world"


def test_pos_cos_matrix_is_max_cosine_to_any_positive():
    emb = np.zeros((30, 2), dtype=np.float32)
    emb[1], emb[2] = [1, 0], [0, 2]  # positives of B (row 2 not unit: cosines normalise)
    emb[20], emb[21] = [3, 4], [1, -1]  # cos(20, 1) = 0.6, cos(20, 2) = 0.8 -> 0.8; 21: 1/sqrt2, -1/sqrt2 -> 0.7071
    pool = make_pool([("qb", [(1, 0.9), (2, 0.6)], [(20, 0.85), (21, 0.70)])], depth=3)
    got = pos_cos_matrix(pool, emb)
    assert got[0, :2] == pytest.approx([0.8, math.sqrt(0.5)], abs=1e-6)
    assert np.isnan(got[0, 2])


def test_missing_extras_is_a_one_line_error():
    with pytest.raises(HardnegError, match="posnbr needs per-pool arrays"):
        apply_strategy(make_pool([A]), "posnbr(0.9)+topk(2)")


@pytest.mark.parametrize("bad,needle", [
    ("posnbr(1.5)+topk(2)", "tau must be <= 1.0"), ("posnbr(-2)+topk(2)", "tau must be >= -1.0"),
    ("dedup(1)+topk(2)", "takes no arguments"), ("percpos(auto,coverage=1.2)+topk(2)", "coverage must be <= 1.0"),
    ("percpos(0.9,coverage=0.9)+topk(2)", "coverage only goes with auto"),
    ("percpos(auto)+abs(auto)+topk(2)", "only one filter may be auto"),
    ("relabel(shift(2))+topk(2)", "the judge takes value filters only"),
    ("cure(percpos(0.9))+topk(2)", "unknown method"), ("relabel(percpos(0.9),x=1)+topk(2)", "unknown option"),
    ("simans(3,4,1,0)", r"n \(4\) must be <= k \(3\)"),
])
def test_bad_new_strategies(bad, needle):
    with pytest.raises(HardnegError, match=needle):
        parse_strategy(bad)


def test_new_canonical_forms_round_trip():
    for s in ["posnbr(0.9)+topk(4)", "percpos(0.95)+posnbr(0.9)+dedup+topk(4)", "percpos(auto,coverage=0.95)+topk(4)",
              "marginpos(auto,coverage=0.9,ref=row)+topk(4)", "abs(auto,coverage=0.8)+topk(2)",
              "posnbr(auto,coverage=0.95)+topk(4)", "relabel(percpos(0.98))+topk(4)",
              "relabel(percpos(0.98)+posnbr(0.9),k=5)+topk(4)", "drop(dedup)+topk(4)",
              "drop-query(percpos(0.98),m=2,k=10)+topk(4)", "simans(10,4,1.0,0.1)",
              "percpos(0.95)+simans(10,4,2.0,0.0)"]:
        assert str(parse_strategy(s)) == s
        assert parse_strategy(str(parse_strategy(s))) == parse_strategy(s)
    assert str(parse_strategy("dedup+posnbr(0.9)+topk(4)")) == "posnbr(0.9)+dedup+topk(4)"
    assert str(parse_strategy("percpos(auto)+topk(4)")) == "percpos(auto,coverage=0.95)+topk(4)"
    assert str(parse_strategy("relabel(percpos(0.98),k=10)+topk(4)")) == "relabel(percpos(0.98))+topk(4)"


def test_auto_percpos_resolves_to_the_strictest_grid_value():
    # Query A: p must exceed 1 + (s - 0.8) / 0.8 for a candidate to survive: 0.79 -> 0.9875, 0.77 -> 0.9625,
    # 0.765 -> 0.95625, 0.70 -> 0.875, 0.60 -> 0.75, 0.50 -> 0.625. n = 2: the 2nd smallest is 0.75, so the
    # strictest grid value keeping 2 negatives is 0.751 (percpos(0.75) would keep only 0.50).
    pool = make_pool([A])
    st = resolve_auto(pool, parse_strategy("percpos(auto,coverage=1.0)+topk(2)"))
    assert str(st) == "percpos(0.751)+topk(2)"
    m = apply_strategy(pool, "percpos(auto,coverage=1.0)+topk(2)")
    assert m.strategy == "percpos(0.751)+topk(2)" and negs(pool, "percpos(0.751)+topk(2)") == [[14, 15]]


def test_auto_coverage_share_of_rows_and_unreachable():
    # Rows (ref=min): A (ref 0.80) 2nd smallest c = 0.75 (above); B (ref 0.60, 2 rows): c = 1 + (s - 0.6) / 0.6:
    # 0.85 -> 1.4167, 0.70 -> 1.1667, 0.58 -> 0.9667, 0.55 -> 0.9167, 0.40 -> 0.6667; 2nd smallest 0.9167.
    # Rows sorted: 0.75, 0.9167, 0.9167. coverage 1/3 needs 1 row -> 0.751; coverage 1.0 needs 3 -> 0.917.
    pool = make_pool([A, B])
    assert str(resolve_auto(pool, parse_strategy("percpos(auto,coverage=0.3)+topk(2)"))) == "percpos(0.751)+topk(2)"
    assert str(resolve_auto(pool, parse_strategy("percpos(auto,coverage=1.0)+topk(2)"))) == "percpos(0.917)+topk(2)"
    # n = 6: only A has 6 candidates (B has 5): 1 of 3 rows = 33.3% reachable
    with pytest.raises(HardnegError, match=r"coverage 0.9 is unreachable; at most 33.3% of rows keep 6 negatives"):
        resolve_auto(pool, parse_strategy("percpos(auto,coverage=0.9)+topk(6)"))


def test_auto_marginpos_abs_posnbr():
    pool = make_pool([A])
    # marginpos: keep iff s < 0.80 - m (a larger m is stricter); n = 2 needs the 2nd lowest, 0.60, kept:
    # m < 0.80 - 0.60 = 0.2 -> the strictest grid m is 0.199
    assert str(resolve_auto(pool, parse_strategy("marginpos(auto,coverage=1.0)+topk(2)"))) == \
        "marginpos(0.199)+topk(2)"
    # abs: keep iff s <= t; n = 3 -> t = 3rd smallest score, 0.70 -> abs(0.7)
    assert str(resolve_auto(pool, parse_strategy("abs(auto,coverage=1.0)+topk(3)"))) == "abs(0.7)+topk(3)"
    # posnbr: keep iff cos < tau; A's cosines sorted 0.10, 0.20, 0.50, 0.91, ...; n = 4 -> tau 0.911
    ex = PoolExtras(pos_cos=POS_COS[:1])
    assert str(resolve_auto(pool, parse_strategy("posnbr(auto,coverage=1.0)+topk(4)"), extras=ex)) == \
        "posnbr(0.911)+topk(4)"


def test_relabel_marks_flagged_top_k_candidates_as_positives():
    pool = make_pool([A])
    # judge percpos(0.97): flags s >= 0.8 * 0.97 = 0.776 -> 10 (0.79) only; k = 2 looks at columns 0, 1
    m = apply_strategy(pool, "relabel(percpos(0.97),k=2)+topk(3)")
    assert isinstance(m, TreatedSet) and m.treatment == "relabel(percpos(0.97),k=2)"
    assert m.relabel_idx.tolist() == [[10, -1]]
    assert m.neg_idx.tolist() == [[11, 12, 13]]  # the relabelled 10 is no longer a negative


def test_drop_query_drops_queries_with_more_than_m_flagged():
    pool = make_pool([A, B])
    # judge percpos(0.95) (ref=min): A flags 0.79, 0.77, 0.765 (>= 0.76) -> 3 in its top 3; B (ref 0.60, >= 0.57)
    # flags 0.85, 0.70, 0.58 -> 3 in top 3 too. m = 2, k = 3 drops both; m = 3 keeps both (3 is not > 3).
    m = apply_strategy(pool, "drop-query(percpos(0.95),m=2,k=3)+topk(2)")
    assert len(m) == 0 and m.dropped_queries == 2
    # k = 2: A has 2 flagged in its top 2, B 2 -> m = 1 drops both, m = 2 keeps both with flagged dropped
    m = apply_strategy(pool, "drop-query(percpos(0.95),m=2,k=2)+topk(2)")
    assert m.dropped_queries == 0 and [[int(x) for x in r] for r in m.neg_idx] == [[13, 14], [23, 24], [23, 24]]


def test_drop_treatment_equals_the_judge_filter():
    pool = make_pool([A, B])
    assert negs(pool, "drop(percpos(0.95))+topk(3)") == negs(pool, "percpos(0.95)+topk(3)")


def test_simans_probabilities():
    # s_pos 0.8, b 0.1: candidates 0.7 (s - s_pos - b = -0.2) and 0.5 (-0.4) get logits -a*0.04 and -a*0.16, whose
    # ratio is exp(a * 0.12); a = ln(3) / 0.12 gives P(0.7 first) = 3 / (3 + 1) = 0.75 for simans(2,1,a,0.1).
    a = math.log(3) / 0.12
    pool = make_pool([(f"q{i}", [0.8], [(1, 0.7), (2, 0.5)]) for i in range(4000)])
    first = np.array([r[0] == 1 for r in negs(pool, f"simans(2,1,{a!r},0.1)", seed=0)])
    # 4000 Bernoulli(0.75) draws: sd 0.0068, 5 sd = 0.034
    assert abs(first.mean() - 0.75) < 0.034
    # b = -0.3 puts the peak at s = 0.5: logits 0 (0.5) and -a * 0.2^2 = -ln(3)/3 (0.7), so
    # P(0.5 first) = 1 / (1 + 3^(-1/3)) = 1 / 1.6934 = 0.5905
    second = np.array([r[0] == 2 for r in negs(pool, f"simans(2,1,{a!r},-0.3)", seed=0)])
    assert abs(second.mean() - 0.5905) < 0.04
    # seeded and replayable like sampled: same seed same draw, k == n is topk
    assert negs(pool, f"simans(2,1,{a!r},0.1)", seed=3) == negs(pool, f"simans(2,1,{a!r},0.1)", seed=3)
    assert negs(pool, "simans(2,2,1.0,0.0)", seed=3) == negs(pool, "topk(2)")


def test_judge_with_another_teacher():
    pool = make_pool([A])
    # teacher t2 scores the positive 0.90 and the candidates 0.10, 0.20, 0.30, 0.95, 0.40, 0.50 (13 looks like a
    # copy to it); percpos(0.95) by t2: threshold 0.855 -> only 13 is flagged (the mining teacher would flag 10-12)
    alt = (np.array([[0.10, 0.20, 0.30, 0.95, 0.40, 0.50]], dtype=np.float32), np.array([0.90], dtype=np.float32))
    ex = PoolExtras(judge={"t2": alt})
    s = "relabel(percpos(0.95),k=6,teacher=t2)+topk(3)"
    assert str(parse_strategy(s)) == s and parse_strategy(s).needs() == {"judge:t2"}
    m = apply_strategy(pool, s, extras=ex)
    assert m.relabel_idx.tolist() == [[13, -1, -1, -1, -1, -1]] and m.neg_idx.tolist() == [[10, 11, 12]]
    with pytest.raises(HardnegError, match="judge:t2"):
        apply_strategy(pool, s)
    # a hub id keeps its case in the canonical string; the slug stays file-name safe
    st = parse_strategy("drop(percpos(0.9),teacher=BAAI/bge-small-en-v1.5)+topk(2)")
    assert str(st) == "drop(percpos(0.9),teacher=BAAI/bge-small-en-v1.5)+topk(2)"
    assert st.slug == "drop-percpos-0.9-teacher-baai-bge-small-en-v1.5_topk-2"
