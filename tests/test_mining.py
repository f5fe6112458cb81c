"""Mining rules on hand-made pools: every expected value below is worked out by hand in the comments."""
from __future__ import annotations

import math

import numpy as np
import pytest

from hardneg.errors import HardnegError
from hardneg.mining.select import apply_strategy
from hardneg.mining.strategy import parse_strategy
from hardneg.types import CandidatePool
from hardneg.testing import make_pool

NAN = float("nan")

# Query A: one positive scored 0.80; candidates (row, score) in rank order.
A = ("qa", [0.80], [(10, 0.79), (11, 0.77), (12, 0.765), (13, 0.70), (14, 0.60), (15, 0.50)])
# Query B: three positives 0.90, 0.60, 0.75 (min 0.60, max 0.90, mean 0.75).
B = ("qb", [0.90, 0.60, 0.75], [(20, 0.85), (21, 0.70), (22, 0.58), (23, 0.55), (24, 0.40)])


def negs(pool: CandidatePool, s: str, seed: int = 0) -> list[list[int]]:
    m = apply_strategy(pool, parse_strategy(s), seed=seed)
    return [[int(x) for x in row if x >= 0] for row in m.neg_idx]


def test_naive_topk_takes_first_n():
    assert negs(make_pool([A]), "topk(2)") == [[10, 11]]


def test_percpos_one_positive():
    # threshold 0.80 * 0.95 = 0.76: 0.79, 0.77, 0.765 removed; 3 survivors, so the row is short of 4.
    assert negs(make_pool([A]), "percpos(0.95)+topk(4)") == [[13, 14, 15]]


def test_percpos_above_one_admits_candidates_above_the_positive_score_times_p():
    # p = 1.05: threshold 0.84, every candidate (max 0.79) survives.
    assert negs(make_pool([A]), "percpos(1.05)+topk(3)") == [[10, 11, 12]]


def test_percpos_sign_safe_for_negative_positive_scores():
    # pos -0.2, p 0.95: threshold -0.2 - 0.2 * 0.05 = -0.21 (stricter than the positive, as for positive scores);
    # the literal product -0.2 * 0.95 = -0.19 would let -0.205 through.
    pool = make_pool([("qn", [-0.2], [(1, -0.195), (2, -0.205), (3, -0.3)])])
    assert negs(pool, "percpos(0.95)+topk(3)") == [[3]]


def test_marginpos_and_abs():
    pool = make_pool([A])
    assert negs(pool, "marginpos(0.05)+topk(4)") == [[13, 14, 15]]  # keep < 0.75
    assert negs(pool, "marginpos(0.02)+topk(2)") == [[11, 12]]  # keep < 0.78: 0.77, 0.765
    assert negs(pool, "abs(0.65)+topk(4)") == [[14, 15]]  # keep <= 0.65


def test_shift_counts_raw_rank_not_survivors():
    pool = make_pool([A])
    assert negs(pool, "shift(2)+topk(2)") == [[12, 13]]
    # shift(1) drops rank 1 (0.79) by raw rank; percpos(0.95) drops 0.77 and 0.765; the first two survivors are
    # 0.70 and 0.60. Skipping one *survivor* instead (sentence-transformers' range_min) would give 0.60, 0.50.
    assert negs(pool, "shift(1)+percpos(0.95)+topk(2)") == [[13, 14]]
    assert negs(pool, "percpos(0.95)+shift(1)+topk(2)") == [[13, 14]]  # order in the string does not matter


@pytest.mark.parametrize("ref,expected", [
    ("min", [[23, 24]] * 3),            # 0.60 * 0.95 = 0.57: keep 0.55, 0.40
    ("max", [[20, 21]] * 3),            # 0.90 * 0.95 = 0.855: keep from 0.85 down
    ("mean", [[21, 22]] * 3),           # 0.75 * 0.95 = 0.7125: keep from 0.70 down
    ("row", [[20, 21], [23, 24], [21, 22]]),  # each row's own positive: 0.855, 0.57, 0.7125
])
def test_several_positives_reference(ref, expected):
    pool = make_pool([B])
    assert negs(pool, f"percpos(0.95,ref={ref})+topk(2)") == expected


def test_one_row_per_positive_and_rows_short_of_n_are_kept():
    pool = make_pool([A, B])
    m = apply_strategy(pool, parse_strategy("percpos(0.95)+topk(4)"))
    assert len(m) == 4  # 1 + 3 positives
    assert m.n_neg.tolist() == [3, 2, 2, 2]
    assert m.removed == {"percpos(0.95)": 3 + 3 * 3}  # A: 3 removed; B: 0.85, 0.70, 0.58 in each of 3 rows


def test_pool_shallower_than_n_and_padding():
    pool = make_pool([("q", [0.9], [(1, 0.5), (2, 0.4)])], depth=3)
    m = apply_strategy(pool, parse_strategy("topk(5)"))
    assert m.neg_idx.tolist() == [[1, 2, -1, -1, -1]]
    assert m.neg_rank.tolist() == [[1, 2, -1, -1, -1]]
    assert np.isnan(m.neg_score[0, 2:]).all()


def test_none_gives_no_negatives():
    m = apply_strategy(make_pool([A, B]), parse_strategy("none"))
    assert m.neg_idx.shape == (4, 0)


def test_sampled_is_seeded_within_window_and_sorted():
    pool = make_pool([A] * 1 + [(f"q{i}", [0.9], A[2]) for i in range(30)])
    s1 = negs(pool, "sampled(5,3)", seed=1)
    assert s1 == negs(pool, "sampled(5,3)", seed=1)
    assert s1 != negs(pool, "sampled(5,3)", seed=2)
    for row in s1:
        assert len(row) == 3 and set(row) <= {10, 11, 12, 13, 14} and row == sorted(row)  # rank order
    # k == n samples the whole window: identical to topk.
    assert negs(pool, "sampled(3,3)", seed=5) == negs(pool, "topk(3)")


def test_sampled_probabilities_are_softmax_of_scores():
    # Two survivors with scores 0 and ln 3: softmax gives P(first) = 3 / (3 + 1) = 0.75 for sampled(2,1).
    pool = make_pool([(f"q{i}", [5.0], [(1, math.log(3)), (2, 0.0)]) for i in range(4000)])
    first = np.array([r[0] == 1 for r in negs(pool, "sampled(2,1)", seed=0)])
    # 4000 Bernoulli(0.75) draws: sd = sqrt(.75 * .25 / 4000) = 0.0068; 5 sd = 0.034.
    assert abs(first.mean() - 0.75) < 0.034
    # temperature 0.1 sharpens it: P = 3^10 / (3^10 + 1) = 0.99998.
    assert np.mean([r[0] == 1 for r in negs(pool, "sampled(2,1,0.1)", seed=0)]) > 0.99


def test_top1_plus_sampled_always_keeps_the_first_survivor():
    pool = make_pool([(f"q{i}", [0.9], A[2]) for i in range(50)])
    rows = negs(pool, "percpos(0.95)+top1+sampled(3,2)", seed=3)
    # survivors of percpos(0.95) at 0.9: threshold 0.855 -> all six; top1 is row 10, one more from 11, 12
    assert all(r[0] == 10 and len(r) == 2 and r[1] in (11, 12) for r in rows)
    assert {r[1] for r in rows} == {11, 12}


def test_sampling_depends_only_on_the_row_not_on_other_rows():
    big = make_pool([(f"q{i}", [0.9], A[2]) for i in range(10)])
    small = make_pool([(f"q{i}", [0.9], A[2]) for i in (3, 7)])
    rb, rs = negs(big, "sampled(6,2)", seed=9), negs(small, "sampled(6,2)", seed=9)
    assert rs == [rb[3], rb[7]]


def _reference_mine(pool: CandidatePool, strategy: str) -> list[list[int]]:
    """A plain-Python re-statement of the paper's Algorithm 1 with the design's rules (no numpy tricks)."""
    st = parse_strategy(strategy)
    out = []
    for qi in range(len(pool)):
        lo, hi = int(pool.pos_ptr[qi]), int(pool.pos_ptr[qi + 1])
        pos = [float(x) for x in pool.pos_score[lo:hi]]
        for pi in range(lo, hi):
            kept = []
            for j in range(pool.depth):
                row, s = int(pool.cand_idx[qi, j]), float(pool.cand_score[qi, j])
                if row < 0:
                    continue
                ok = True
                for f in st.filters:
                    name = type(f).__name__
                    refs = {"min": min(pos), "max": max(pos), "mean": sum(pos) / len(pos),
                            "row": float(pool.pos_score[pi])}
                    if name == "Shift":
                        ok &= j >= f.n
                    elif name == "Abs":
                        ok &= s <= f.t
                    elif name == "MarginPos":
                        ok &= s < refs[f.ref] - f.m
                    elif name == "PercPos":
                        r = refs[f.ref]
                        ok &= s < r - abs(r) * (1 - f.p)
                if ok:
                    kept.append(row)
            out.append(kept[:st.n])
    return out


@pytest.mark.parametrize("strategy", ["topk(4)", "percpos(0.95)+topk(4)", "marginpos(0.1,ref=row)+topk(3)",
                                      "shift(3)+abs(0.5)+topk(2)", "percpos(0.9,ref=mean)+topk(5)",
                                      "shift(2)+marginpos(0.05,ref=max)+topk(4)"])
def test_vectorised_mining_equals_reference_on_random_pools(strategy):
    rng = np.random.default_rng(0)
    queries = []
    for i in range(60):
        npos = int(rng.integers(1, 4))
        ncand = int(rng.integers(0, 12))
        scores = np.sort(rng.uniform(-0.2, 1.0, ncand))[::-1]
        queries.append((f"q{i}", rng.uniform(0.0, 1.0, npos).round(3).tolist(),
                        [(int(r), float(s)) for r, s in zip(rng.permutation(500)[:ncand], scores.round(3))]))
    pool = make_pool(queries, depth=12)
    assert negs(pool, strategy) == _reference_mine(pool, strategy)


def test_bad_strategy_strings_name_the_problem():
    for bad, needle in [("percpos(0.95)", "must end with a selector"), ("topk(0)+", "empty part"),
                        ("topk(0)", "n must be >= 1"), ("sampled(3,4)", "n (4) must be <= k (3)"),
                        ("percpos(0.9,ref=median)+topk(1)", "ref must be one of"), ("frobnicate(1)", "unknown method"),
                        ("abs(inf)+topk(1)", "must be finite"), ("topk(4)+shift(1)", "only the last part")]:
        with pytest.raises(HardnegError, match=needle.replace("(", r"\(").replace(")", r"\)")):
            parse_strategy(bad)


def test_canonical_form_round_trips():
    for s in ["percpos(0.95)+topk(4)", "shift(10)+topk(4)", "abs(0.7)+marginpos(0.05)+topk(4)",
              "percpos(0.95,ref=row)+top1+sampled(10,4)", "sampled(10,4,0.05)", "none"]:
        assert str(parse_strategy(s)) == s
        assert parse_strategy(str(parse_strategy(s))) == parse_strategy(s)
    assert str(parse_strategy(" TopK(4) ")) == "topk(4)"
    assert str(parse_strategy("naive(4)")) == "topk(4)"
    assert parse_strategy("topk(4)+percpos(0.95)".replace("topk(4)+", "") + "+topk(4)") == parse_strategy(
        "percpos(0.95)+topk(4)")
