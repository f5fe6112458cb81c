"""Report tables from synthetic ablation records: means, sds, selection on dev, significance, byte-stability."""
from __future__ import annotations

import json

import pytest

from hardneg.report import method_of, read_results, sampling_references, summarise, unsampled, write_report

QIDS = [f"q{i}" for i in range(20)]


def _record(strategy: str, seed: int, test: list[float], dev: float) -> dict:
    pq = {q: {"ndcg@10": v, "recall@100": 1.0} for q, v in zip(QIDS, test)}
    base_pq = {q: {"ndcg@10": 0.1, "recall@100": 0.5} for q in QIDS}
    mean = sum(test) / len(test)
    stats = {"rows": 10, "rows_short": 1, "rows_empty": 0, "removed_per_row": {}, "top1_neg_above_pos": 3,
             "pos_score": {"q50": 0.6}, "top1_neg_score": {"q50": 0.5}, "pos_minus_top1_neg": {"q50": 0.1},
             "hist": {"edges": [-1.0, 0.0, 1.0], "pos": [0, 10], "top1_neg": [1, 9], "pos_minus_top1_neg": [2, 8]}}
    return {"key": f"{strategy}/{seed}", "point": {"teacher": "t", "student": "s", "strategy": strategy, "seed": seed},
            "metrics": {"test": {"base": {"ndcg@10": 0.1, "recall@100": 0.5},
                                 "finetuned": {"ndcg@10": mean, "recall@100": 1.0}},
                        "dev": {"base": {"ndcg@10": 0.1, "recall@100": 0.5},
                                "finetuned": {"ndcg@10": dev, "recall@100": 1.0}}},
            "per_query": {"test": {"base": base_pq, "finetuned": pq}}, "mining": stats,
            "timings": {"train": 10.0, "mine": 2.0, "mine_encode": 1.0, "mine_search": 0.5,
                        "evaluate_finetuned_test": 3.0}}


@pytest.fixture
def results(tmp_path):
    recs = []
    for seed, shift in ((0, 0.0), (1, 0.02)):
        recs.append(_record("topk(4)", seed, [0.5] * 20, dev=0.50 + shift))
        recs.append(_record("percpos(0.95)+topk(4)", seed, [0.6 + shift] * 20, dev=0.55))
        recs.append(_record("percpos(0.9)+topk(4)", seed, [0.7] * 20, dev=0.52))
        recs.append(_record("shift(10)+topk(4)", seed, [0.5 + (0.01 if i % 2 else -0.01) for i in range(20)], dev=0.4))
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs) + '{"torn": ')  # a killed run's torn last line
    (tmp_path / "ablation.json").write_text(json.dumps({"slices": {"unseen": QIDS[:5]}}))
    return path


def test_method_names():
    assert method_of("topk(4)") == ("topk", "")
    assert method_of("shift(10)+topk(4)") == ("shift", "N=10")
    assert method_of("percpos(0.95)+topk(4)") == ("percpos", "95%")
    assert method_of("percpos(0.95)+sampled(10,4)") == ("sampled", "k=10")
    assert method_of("marginpos(0.05,ref=row)+topk(4)") == ("marginpos", "0.05 ref=row")
    assert method_of("none") == ("none", "")


def test_fig2_reference_is_the_same_filter_without_sampling(results, tmp_path):
    assert unsampled("percpos(0.95)+sampled(10,4)") == "percpos(0.95)+topk(4)"
    assert unsampled("percpos(0.95)+top1+sampled(30,4)") == "percpos(0.95)+topk(4)"
    assert unsampled("marginpos(0.05)+shift(3)+sampled(20,2,0.5)") == "shift(3)+marginpos(0.05)+topk(2)"
    assert unsampled("percpos(0.95)+topk(4)") is None and unsampled("none") is None
    assert unsampled("topk(4)+ensemble(intra,dedup)") is None
    assert "fig2_sampled.png" not in write_report(results, tmp_path / "no-sampling")
    recs = read_results(results) + [_record("percpos(0.95)+sampled(10,4)", 0, [0.55] * 20, dev=0.5)]
    path = tmp_path / "with-sampling.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert "fig2_sampled.png" in write_report(path, tmp_path / "sampling")
    # The reference line: PercPos 95% top-4 (seeds 0.60 and 0.62 -> 0.61 ± 0.0141); none for a teacher without
    # the plain filter.
    rows = summarise(read_results(path), [])
    (label, (y, sd)), = sampling_references(rows)
    assert label == "percpos(0.95)+topk(4), no sampling (t)"
    assert y == pytest.approx(0.61) and sd == pytest.approx(0.0141421356)
    other = [dict(r, teacher="u") for r in rows if r["strategy"] == "percpos(0.95)+sampled(10,4)"]
    assert sampling_references(other) == []


def test_sampling_table_by_hand(results, tmp_path):
    """sampling.md: each sampled strategy against its plain top-n over the seeds both ran, with the hardest
    negative's median score; absent when nothing samples."""
    assert "sampling.md" not in write_report(results, tmp_path / "none")
    sampled = _record("percpos(0.95)+sampled(10,4)", 0, [0.55] * 20, dev=0.5)
    sampled["mining"] = dict(sampled["mining"], top1_neg_score={"q50": 0.45})
    top1 = [_record("percpos(0.95)+top1+sampled(10,4)", seed, [0.6 + shift + (0.01 if i % 2 else -0.01)
                                                             for i in range(20)], dev=0.5)
            for seed, shift in ((0, 0.0), (1, 0.02))]
    orphan = _record("abs(0.5)+sampled(10,4)", 0, [0.9] * 20, dev=0.5)  # no abs(0.5)+topk(4) in the grid
    path = tmp_path / "with-sampling.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in read_results(results) + [sampled, *top1, orphan]))
    assert "sampling.md" in write_report(path, tmp_path / "out")
    rows = [ln for ln in (tmp_path / "out" / "sampling.md").read_text().splitlines() if ln.startswith("| t |")]
    assert len(rows) == 2 and "abs(0.5)" not in "".join(rows)
    # sampled ran seed 0 only: 0.55 vs PercPos 95%'s seed-0 0.60 on every query -> -0.0500, no flip as extreme
    assert rows[0] == ("| t | Sampled Top-k | k=10 | `percpos(0.95)+sampled(10,4)` | 1 | 0.5500 | 0.450 | "
                       "`percpos(0.95)+topk(4)` | 0.6100 ± 0.0141 | 0.500 | -0.0500 (p=0.000)* |")
    # top-1 + sampled: the reference +/- 0.01 on alternate queries at both seeds -> mean difference 0, p = 1
    assert rows[1].endswith("| 2 | 0.6100 ± 0.0141 | 0.500 | `percpos(0.95)+topk(4)` | 0.6100 ± 0.0141 | 0.500 | "
                            "+0.0000 (p=1.000) |")


def test_summary_numbers_by_hand(results):
    rows = {r["strategy"]: r for r in summarise(read_results(results), QIDS[:5])}
    pp = rows["percpos(0.95)+topk(4)"]
    # test nDCG@10 per seed: 0.60 and 0.62 -> mean 0.61, sample sd = 0.01414
    assert pp["test ndcg@10"][0] == pytest.approx(0.61)
    assert pp["test ndcg@10"][1] == pytest.approx(0.0141421356)
    # per-query means over seeds: 0.61 vs naive 0.50 on every query: diff +0.11, every sign flip is smaller -> p small
    assert pp["vs naive test"]["diff"] == pytest.approx(0.11)
    assert pp["vs naive test"]["p"] < 0.001
    # shift: +-0.01 alternating around naive's 0.5: mean diff 0, p = 1
    sh = rows["shift(10)+topk(4)"]
    assert sh["vs naive test"]["diff"] == pytest.approx(0.0, abs=1e-12)
    assert sh["vs naive test"]["p"] == pytest.approx(1.0)
    assert "vs naive test" not in rows["topk(4)"]


def test_report_files_are_byte_stable_and_best_is_chosen_on_dev(results, tmp_path):
    files = write_report(results, tmp_path / "r1")
    write_report(results, tmp_path / "r2")
    for f in files:
        assert (tmp_path / "r1" / f).read_bytes() == (tmp_path / "r2" / f).read_bytes(), f
    best = (tmp_path / "r1" / "best.md").read_text()
    # PercPos 90% has the higher test score (0.70) but 95% has the higher dev score (0.55 vs 0.52): dev decides.
    assert "| t | TopK-PercPos | 95% |" in best
    assert {"fig1_sweeps.png", "fig4_scores.png", "table.md", "table.csv"} <= set(files)
    cost = (tmp_path / "r1" / "cost.md").read_text()
    assert "| train | 80 |" in cost  # 8 records x 10 s
    assert "Not in the table" not in cost  # every record timed its training


def test_markdown_cells_escape_pipes(tmp_path):
    """An ensemble teacher ``a|b`` (and a per-teacher strategy ``x|y``) stays one cell: GFM needs ``\\|``."""
    from hardneg.markdown import md_row, md_table

    assert md_row(["a|b", "`x|y`", 3, ""]) == "| a\\|b | `x\\|y` | 3 |  |"
    assert md_table(["h1", "h2"], [[1, 2]]) == ["| h1 | h2 |", "|---|---|", "| 1 | 2 |"]
    recs = [_record("topk(4)", 0, [0.5] * 20, dev=0.5), _record("percpos(0.95)+topk(4)", 0, [0.6] * 20, dev=0.55)]
    recs[1]["point"]["teacher"] = "t|u"
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    write_report(path, tmp_path / "out")
    for name in ("table.md", "best.md", "mining.md"):
        rows = [ln for ln in (tmp_path / "out" / name).read_text().splitlines() if ln.startswith("|")]
        widths = {len(ln.replace("\\|", "").split("|")) for ln in rows}
        assert len(widths) == 1, (name, rows)  # every row has the header's number of columns
        assert any("t\\|u" in ln for ln in rows)


def test_cost_counts_points_whose_training_was_not_timed(tmp_path):
    """A point resumed after its train stage finished carries the stage's own seconds (train_earlier), counted as
    training; an older record without them is estimated at the median of the timed ones (10, 20, 60 s -> median
    20 s; 2 untimed -> about 40 s)."""
    from hardneg.report import cost_markdown

    recs = [_record("topk(4)", s, [0.5] * 20, dev=0.5) for s in range(6)]
    for r, t in zip(recs, (10.0, 20.0, 60.0)):
        r["timings"]["train"] = t
    for r in recs[3:]:
        del r["timings"]["train"]
    recs[5]["timings"]["train_earlier"] = 7.0  # resumed, with the train stage's own seconds carried over
    cost = cost_markdown(recs)
    assert "| train | 97 |" in cost
    assert "training time of 2 of 6 points" in cost and "about 40 s more" in cost


def test_teachers_table_by_hand(tmp_path):
    """teachers.md: each teacher (and ensemble) on the reference teacher's filter, tested against it over the
    seeds both ran; written only when two teachers share a filter."""
    recs = []
    for seed in (0, 1):
        recs.append(_record("topk(4)", seed, [0.5] * 20, dev=0.5))
        recs.append(_record("percpos(0.95)+topk(4)", seed, [0.6] * 20, dev=0.55))  # teacher t: the reference
        u = _record("percpos(0.95)+topk(4)", seed, [0.7] * 20, dev=0.56)
        u["point"]["teacher"] = "u"
        recs.append(u)
    ens = _record("percpos(0.95)+topk(4)+ensemble(intra,dedup)", 1, [0.65] * 20, dev=0.57)
    ens["point"]["teacher"] = "t|u"
    recs.append(ens)
    lonely = _record("shift(10)+topk(4)", 0, [0.4] * 20, dev=0.4)  # one teacher only: not in the table
    recs.append(lonely)
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    write_report(path, tmp_path / "out")
    rows = [ln for ln in (tmp_path / "out" / "teachers.md").read_text().splitlines() if ln.startswith("| `")]
    assert len(rows) == 3 and "shift" not in "".join(rows)
    assert rows[0].startswith("| `percpos(0.95)+topk(4)` | t | 2 |") and "(reference)" in rows[0]
    # u: 0.7 vs 0.6 on every query and both seeds -> +0.1000, every flip smaller -> p = 1/10001
    assert "| u | 2 | 0.5600 ± 0.0000 | 0.7000 ± 0.0000 | +0.1000 (p=0.000)* |" in rows[2]
    # the ensemble ran seed 1 only: compared with t's seed 1 (0.6) -> +0.0500
    assert "| t\\|u ensemble(intra,dedup) | 1 | 0.5700 | 0.6500 | +0.0500 (p=0.000)* |" in rows[1]

    single = tmp_path / "single.jsonl"
    single.write_text("".join(json.dumps(r) + "\n" for r in recs[:2]))
    assert "teachers.md" not in write_report(single, tmp_path / "out2")


def test_nfcorpus_compare_regenerates_the_committed_table():
    """scripts/nfcorpus_compare.py reads only committed results: its table must come out byte for byte."""
    from conftest import ROOT, load_script

    mod = load_script("scripts/nfcorpus_compare.py")
    committed = ROOT / "reports" / "nfcorpus" / "compare.md"
    assert mod.compare(committed.parent) == committed.read_text()
    assert "B = strategy, A = `none`" in committed.read_text()  # hard negatives against in-batch only
