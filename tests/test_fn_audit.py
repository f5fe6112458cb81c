"""hardneg audit: named reasons on a hand-made mined set (every expected flag worked out in the comments)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import DOCS, QRELS, QUERIES, write_beir
from hardneg.errors import HardnegError
from hardneg.io import claim_output
from hardneg.mining.audit import read_mined_any, run_audit

# d9 is d3 ("Cat food" / "cats eat fish and cat food") with other case and punctuation: same normalised text.
D9 = ("d9", "CAT FOOD", "Cats eat fish, and cat food!")
TEXT = {d: (f"{t} {x}" if t else x) for d, t, x in DOCS + [D9]}


def _neg(d, score=0.5):
    return {"docid": d, "text": TEXT.get(d, "unknown text"), "score": score, "rank": 1}


# QRELS train: q1 -> d3; q2 -> d2, d6; q3 -> d1, d7 (d5 has relevance 0).
ROWS = [
    # q1: d6 fine; d6 again (duplicate_in_row); d9 (same_text_as_positive, and near_copy: the hash teacher's bag of
    # words of d9 equals d3's, cosine 1.0); d404 (not_in_corpus); d4 without a score (bad_score).
    {"qid": "q1", "query": "what do cats eat", "pos": {"docid": "d3", "text": TEXT["d3"], "score": 0.9},
     "neg": [_neg("d6"), _neg("d6"), _neg("d9"), _neg("d404"), _neg("d4", None)]},
    # q2 (row of positive d2): d6 is q2's other positive (labelled_positive, and it shares words with d2: not a
    # near copy); d4 fine.
    {"qid": "q2", "query": "why do dogs bark", "pos": {"docid": "d2", "text": TEXT["d2"], "score": 0.9},
     "neg": [_neg("d6"), _neg("d4")]},
    # q3: one negative: short of n = 2 (short_row); d5 has relevance 0 in the qrels, so it is a fine negative.
    {"qid": "q3", "query": "which animals sleep all day", "pos": {"docid": "d1", "text": TEXT["d1"], "score": 0.9},
     "neg": [_neg("d5")]},
]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_beir(tmp_path / "beir", docs=DOCS + [D9], queries=QUERIES, qrels=QRELS)


def _write(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _audit(mined, data, out, **kw):
    with claim_output(out, "audit", inputs=[mined, data]):
        return run_audit(mined, data, out, **kw)


def test_hardneg_format_reasons(tmp_path, data):
    mined = _write(tmp_path / "mined.jsonl", ROWS)
    res = _audit(mined, data, tmp_path / "audit", teacher="hash", cache_dir=tmp_path / "cache", n=2,
                 fail_on=["near_copy"])
    c = res["counts"]
    # same_text_as_positive twice: q1's d9, and q2's d6 (a qrels positive has its own text, of course)
    assert (c["duplicate_in_row"], c["same_text_as_positive"], c["not_in_corpus"], c["bad_score"],
            c["labelled_positive"], c["short_row"]) == (1, 2, 1, 1, 1, 1)
    # near_copy twice: d9 (cosine 1.0 to d3) and q2's d6 (cosine 1.0 to itself, a positive of q2)
    assert c["near_copy"] == 2 and res["failed"] is True
    lines = [json.loads(x) for x in (tmp_path / "audit" / "audit.jsonl").read_text().splitlines()]
    by = {(x["qid"], x["docid"]): x["reasons"] for x in lines}
    assert "same_text_as_positive" in by[("q1", "d9")] and "near_copy" in by[("q1", "d9")]
    assert by[("q2", "d6")][0] == "labelled_positive"
    assert by[("q3", None)] == ["short_row"]
    assert json.loads((tmp_path / "audit" / "audit.json").read_text())["rows_affected"]["short_row"] == 1
    assert "| near_copy |" in res["table"]


def test_fix_drops_flagged_and_keeps_the_rest(tmp_path, data):
    mined = _write(tmp_path / "mined.jsonl", ROWS)
    res = _audit(mined, data, tmp_path / "audit", n=2, fix=tmp_path / "fixed")  # no teacher: nothing to refill from
    assert res["skipped"] == ["near_copy", "suspected_fn"]
    rows = [json.loads(x) for x in (tmp_path / "fixed" / "mined.jsonl").read_text().splitlines()]
    # q1 keeps the first d6 only (d6 dup, d9 same text, d404, unscored d4 dropped); q2 keeps d4
    assert [[n["docid"] for n in r["neg"]] for r in rows] == [["d6"], ["d4"], ["d5"]]


def test_flag_and_st_formats_map_texts_to_ids(tmp_path, data):
    flag = _write(tmp_path / "flag.jsonl", [
        {"query": "what do cats eat", "pos": [TEXT["d3"]], "neg": [TEXT["d6"], TEXT["d9"]], "neg_scores": [0.5, 0.4]},
        {"query": "why do dogs bark", "pos": [TEXT["d2"]], "neg": [TEXT["d6"]], "neg_scores": [0.1]}])
    res = _audit(flag, data, tmp_path / "a1", n=2)
    # d9 and q2's d6: same_text_as_positive; q2's d6: labelled_positive (mapped through the corpus text);
    # q2: short_row
    assert res["format"] == "flag"
    assert (res["counts"]["same_text_as_positive"], res["counts"]["labelled_positive"], res["counts"]["short_row"]) \
        == (2, 1, 1)
    st = _write(tmp_path / "st.jsonl", [{"anchor": "what do cats eat", "positive": TEXT["d3"],
                                         "negative_1": TEXT["d6"], "negative_2": TEXT["d3"]}])
    res = _audit(st, data, tmp_path / "a2")
    assert res["format"] == "st-n-tuple" and res["counts"]["labelled_positive"] == 1  # negative_2 is the positive
    assert read_mined_any(st).rows[0].qid is None  # mapped only when audited against the dataset


def test_bad_inputs_are_one_line_errors(tmp_path, data):
    bad = _write(tmp_path / "bad.jsonl", [{"foo": 1}])
    with pytest.raises(HardnegError, match="unknown mined format"):
        read_mined_any(bad)
    mined = _write(tmp_path / "m.jsonl", ROWS)
    with pytest.raises(HardnegError, match="unknown audit reason frob"):
        _audit(mined, data, tmp_path / "a3", fail_on=["near_copy,frob"])
    alien = _write(tmp_path / "alien.jsonl", [{"qid": "q1", "query": "x", "pos": {"docid": "zz", "text": "x"},
                                               "neg": [{"docid": "yy", "text": "y", "score": 0.1}]}])
    with pytest.raises(HardnegError, match="2 of 2 mined documents are not in the corpus"):
        _audit(alien, data, tmp_path / "a4")


def test_fix_refills_from_the_pool_and_the_fixed_copy_audits_clean(tmp_path, data):
    mined = _write(tmp_path / "mined.jsonl", ROWS)
    cache = tmp_path / "cache"
    res = _audit(mined, data, tmp_path / "audit", teacher="hash", cache_dir=cache, n=2, fix=tmp_path / "fixed",
                 depth=8)
    assert res["fix"]["refilled_from_pool"] and res["fix"]["negatives_refilled"] > 0
    rows = [json.loads(x) for x in (tmp_path / "fixed" / "mined.jsonl").read_text().splitlines()]
    assert all(len(r["neg"]) == 2 for r in rows)  # every row back to n = 2 (8 documents leave enough)
    assert all(isinstance(n["score"], float) for r in rows for n in r["neg"] if n.get("refilled"))
    again = _audit(tmp_path / "fixed" / "mined.jsonl", data, tmp_path / "audit2", teacher="hash", cache_dir=cache, n=2)
    assert sum(again["counts"].values()) == 0, again["counts"]


def test_folder_of_mined_files_and_saved_st_dataset(tmp_path, data):
    import datasets

    root = tmp_path / "mine"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        _write(root / name / "mined.jsonl", ROWS)
    res = _audit(root, data, tmp_path / "audit", n=2)
    assert res["format"] == "hardneg" and len(res["files"]) == 2
    assert res["counts"]["duplicate_in_row"] == 2  # once per file
    lines = [json.loads(x) for x in (tmp_path / "audit" / "audit.jsonl").read_text().splitlines()]
    assert {x["file"] for x in lines} == {"a/mined.jsonl", "b/mined.jsonl"}
    # a sentence-transformers triplet dataset saved with save_to_disk: consecutive rows of one pair form one row
    trip = [{"anchor": "what do cats eat", "positive": TEXT["d3"], "negative": t} for t in (TEXT["d6"], TEXT["d9"])]
    datasets.Dataset.from_list(trip).save_to_disk(str(tmp_path / "st"))
    res = _audit(tmp_path / "st", data, tmp_path / "audit2", fix=tmp_path / "fixed")
    assert res["format"] == "st-triplet" and res["rows"] == 1 and res["counts"]["same_text_as_positive"] == 1
    fixed = [json.loads(x) for x in (tmp_path / "fixed" / "st.jsonl").read_text().splitlines()]
    assert fixed == trip[:1] and (tmp_path / "fixed" / "st").is_dir()
