"""Controlled false negatives: injection (hardneg.data.inject) and trap rates (hardneg.mining.trap)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from conftest import DOCS, QRELS, QUERIES, write_beir
from hardneg.data.beir import load_beir, load_corpus
from hardneg.data.inject import (MANIFEST, InjectedDoc, Manifest, inject_false_negatives, is_injected,
                                 load_manifest, split_sentences, strip_injected, transform_doc, verify_injected)
from hardneg.encode.encoder import EncoderSpec
from hardneg.errors import HardnegError
from hardneg.io import OUTPUT_MARKER
from hardneg.mining.pipeline import get_pool
from hardneg.mining.select import apply_strategy
from hardneg.mining.strategy import parse_strategy
from hardneg.mining.trap import trap_pool_stats, trap_rates, trap_table
from hardneg.testing import make_pool
from hardneg.types import CandidatePool, Corpus, Dataset, Queries

TRAIN_PAIRS = [(q, d) for q, d, s in QRELS["train"] if s > 0]  # 5 pairs; (q3, d5, 0) is not a positive


def _inject(src: Path, dst: Path, **kw) -> dict:
    kw.setdefault("rate", 1.0)
    return inject_false_negatives(src, dst, **kw)


def _appended(dst: Path, src: Path) -> list[dict]:
    """The corpus lines after the source corpus's bytes."""
    n = len((src / "corpus.jsonl").read_bytes())
    tail = (dst / "corpus.jsonl").read_bytes()[n:].decode("utf-8")
    return [json.loads(line) for line in tail.splitlines() if line.strip()]


# -- transforms ---------------------------------------------------------------------------------------------------

def test_transforms_by_hand():
    assert transform_doc("T", "x y", "exact") == ("T", "x y")
    assert transform_doc("T", "x y", "drop_title") == ("", "x y")
    assert transform_doc("T", "", "drop_title") == ("", "T")  # a title-only document keeps its words
    # ceil(0.5 * 5) = 3 words; ceil(0.5 * 4) = 2; fewer than 2 words: unchanged
    assert transform_doc("T", "one two  three four five", "truncate") == ("T", "one two three")
    assert transform_doc("T", "one two three four", "truncate") == ("T", "one two")
    assert transform_doc("T", "one", "truncate") == ("T", "one")
    assert split_sentences(" A b. C d!  E f? G e.g.x ") == ["A b.", "C d!", "E f?", "G e.g.x"]
    title, text = transform_doc("T", "A b. C d! E f? G h.", "shuffle_sentences", seed=0, key=("q", "d", 0))
    assert title == "T" and text != "A b. C d! E f? G h."
    assert sorted(split_sentences(text)) == sorted(["A b.", "C d!", "E f?", "G h."])
    # a two-sentence text always changes (an identity order is rotated); one sentence cannot
    for seed in range(8):
        assert transform_doc("", "A b. C d.", "shuffle_sentences", seed=seed, key=("k",))[1] == "C d. A b."
    assert transform_doc("T", "Only one sentence here.", "shuffle_sentences") == ("T", "Only one sentence here.")
    with pytest.raises(HardnegError, match="unknown transform"):
        transform_doc("T", "x", "paraphrase")


# -- injection ----------------------------------------------------------------------------------------------------

def test_deterministic_and_seed_dependent(tiny_beir: Path, tmp_path: Path):
    a = _inject(tiny_beir, tmp_path / "a", rate=0.6, seed=0)
    b = _inject(tiny_beir, tmp_path / "b", rate=0.6, seed=0)
    c = _inject(tiny_beir, tmp_path / "c", rate=0.6, seed=1)
    for f in ("corpus.jsonl", MANIFEST):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    assert a == b
    assert (tmp_path / "a" / "corpus.jsonl").read_bytes() != (tmp_path / "c" / "corpus.jsonl").read_bytes()
    assert {d["id"] for d in a["docs"]}.isdisjoint({d["id"] for d in c["docs"]})
    assert len(a["docs"]) == len(c["docs"]) == 3  # round(0.6 * 5) = 3


def test_copied_files_are_byte_identical(tiny_beir: Path, tmp_path: Path):
    write_beir(tiny_beir, crlf=True)  # CRLF qrels must survive byte for byte
    _inject(tiny_beir, tmp_path / "out", rate=1.0, copies=2)
    out = tmp_path / "out"
    for rel in ("queries.jsonl", "qrels/train.tsv", "qrels/test.tsv"):
        assert (out / rel).read_bytes() == (tiny_beir / rel).read_bytes(), rel
    src_corpus = (tiny_beir / "corpus.jsonl").read_bytes()
    assert (out / "corpus.jsonl").read_bytes().startswith(src_corpus)
    assert sorted(p.name for p in out.iterdir()) == [OUTPUT_MARKER, "corpus.jsonl", MANIFEST, "qrels", "queries.jsonl"]
    assert is_injected(out) and not is_injected(tiny_beir)


def test_manifest_matches_corpus(tiny_beir: Path, tmp_path: Path):
    man = _inject(tiny_beir, tmp_path / "out", rate=1.0, copies=2)
    out = tmp_path / "out"
    corpus = load_corpus(out / "corpus.jsonl")
    src_ids = {d for d, _, _ in DOCS}
    train_pos: dict[str, set[str]] = {}
    for q, d in TRAIN_PAIRS:
        train_pos.setdefault(d, set()).add(q)
    ids = [d["id"] for d in man["docs"]]
    assert len(ids) == 10 and len(set(ids)) == 10 and all(i.startswith("inj-") for i in ids)
    assert all(list(corpus.ids).count(i) == 1 for i in ids)
    assert set(corpus.ids) == src_ids | set(ids)
    appended = _appended(out, tiny_beir)
    assert [r["_id"] for r in appended] == ids and all(r["metadata"] == {} for r in appended)
    for d in man["docs"]:
        assert d["source"] in src_ids
        assert set(d["qids"]) == train_pos[d["source"]]  # every train query with that positive, and only those
        assert (d["pair_qid"], d["source"]) in TRAIN_PAIRS
    judged = {d for rows in QRELS.values() for _, d, _ in rows}
    assert judged.isdisjoint(ids)  # injected documents are unlabelled in every split
    # copies of one pair use two different transforms
    per_pair: dict[tuple[str, str], list[str]] = {}
    for d in man["docs"]:
        per_pair.setdefault((d["pair_qid"], d["source"]), []).append(d["transform"])
    assert sorted(per_pair) == sorted(TRAIN_PAIRS) and all(len(set(v)) == 2 for v in per_pair.values())
    # d2 is relevant to q5 in test; the pair (q2, d2) has 2 copies
    assert man["stats"]["source_relevant_in_other_splits"] == {"test": 2}
    assert verify_injected(out) == {"docs": 18, "source_docs": 8, "injected": 10}
    assert load_manifest(out).to_dict() == man


def test_rate_zero_and_one(tiny_beir: Path, tmp_path: Path):
    m0 = _inject(tiny_beir, tmp_path / "r0", rate=0.0)
    assert m0["docs"] == [] and m0["stats"]["injected"] == 0
    assert (tmp_path / "r0" / "corpus.jsonl").read_bytes() == (tiny_beir / "corpus.jsonl").read_bytes()
    m1 = _inject(tiny_beir, tmp_path / "r1", rate=1.0)
    assert sorted((d["pair_qid"], d["source"]) for d in m1["docs"]) == sorted(TRAIN_PAIRS)
    assert m1["stats"]["pairs"] == m1["stats"]["pairs_chosen"] == 5


def test_choice_is_nested_and_independent_of_file_order(tiny_beir: Path, tmp_path: Path):
    low = _inject(tiny_beir, tmp_path / "low", rate=0.4, seed=3)
    high = _inject(tiny_beir, tmp_path / "high", rate=0.8, seed=3)
    assert len(low["docs"]) == 2 and len(high["docs"]) == 4
    assert {d["id"] for d in low["docs"]} <= {d["id"] for d in high["docs"]}
    shuffled = write_beir(tmp_path / "shuffled", docs=DOCS[::-1], queries=QUERIES[::-1],
                          qrels={"train": QRELS["train"][::-1], "test": QRELS["test"]})
    again = _inject(shuffled, tmp_path / "again", rate=0.4, seed=3)

    def key(m: dict) -> set:
        return {(d["id"], d["source"], d["pair_qid"], frozenset(d["qids"]), d["transform"]) for d in m["docs"]}

    assert key(again) == key(low)
    texts = {r["_id"]: (r["title"], r["text"]) for r in _appended(tmp_path / "low", tiny_beir)}
    assert texts == {r["_id"]: (r["title"], r["text"]) for r in _appended(tmp_path / "again", shuffled)}


@pytest.mark.parametrize("kw, msg", [
    ({"rate": -0.1}, "rate must be"), ({"rate": 1.5}, "rate must be"), ({"rate": math.nan}, "rate must be"),
    ({"rate": 0.5, "copies": 0}, "copies must be"), ({"rate": 0.5, "transforms": ("drop_title", "rewrite")},
                                                     "unknown transform 'rewrite'"),
    ({"rate": 0.5, "transforms": ()}, "at least one transform"),
    ({"rate": 0.5, "split": "dev"}, 'split "dev" does not exist'),
])
def test_bad_arguments(tiny_beir: Path, tmp_path: Path, kw: dict, msg: str):
    with pytest.raises(HardnegError, match=msg):
        inject_false_negatives(tiny_beir, tmp_path / "out", **kw)
    assert not (tmp_path / "out").exists()


def test_output_folder_rules(tiny_beir: Path, tmp_path: Path):
    with pytest.raises(HardnegError, match="lies inside the input"):
        _inject(tiny_beir, tiny_beir / "inside")
    with pytest.raises(HardnegError, match="is the input"):
        _inject(tiny_beir, tiny_beir)
    with pytest.raises(HardnegError, match="contains the input"):
        _inject(tiny_beir, tmp_path)
    other = tmp_path / "precious"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    with pytest.raises(HardnegError, match="not empty and was not written by hardneg"):
        _inject(tiny_beir, other)
    assert (other / "keep.txt").read_text() == "x"
    _inject(tiny_beir, tmp_path / "out", rate=0.2)
    with pytest.raises(HardnegError, match="--overwrite"):
        _inject(tiny_beir, tmp_path / "out", rate=1.0)
    m = _inject(tiny_beir, tmp_path / "out", rate=1.0, overwrite=True)
    assert load_manifest(tmp_path / "out").to_dict() == m and len(m["docs"]) == 5
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left behind


def test_load_manifest_errors(tiny_beir: Path, tmp_path: Path):
    with pytest.raises(HardnegError, match="no injection manifest"):
        load_manifest(tiny_beir)
    _inject(tiny_beir, tmp_path / "out")
    (tmp_path / "out" / MANIFEST).write_text('{"format": 99}')
    with pytest.raises(HardnegError, match="unsupported manifest format"):
        load_manifest(tmp_path / "out")


def test_strip_injected_restores_the_source(tiny_beir: Path, tmp_path: Path):
    _inject(tiny_beir, tmp_path / "out", rate=1.0, copies=3)
    man = load_manifest(tmp_path / "out")
    for split in ("train", "test"):
        src = load_beir(tiny_beir, split)
        inj = load_beir(tmp_path / "out", split)
        assert len(inj.corpus) == len(src.corpus) + 15
        stripped = strip_injected(inj, man)
        assert stripped.corpus == src.corpus and stripped.corpus.fingerprint == src.corpus.fingerprint
        assert stripped.queries == src.queries and stripped.qrels == src.qrels
    with pytest.raises(HardnegError, match="not in the corpus"):
        strip_injected(load_beir(tiny_beir, "test"), man)


# -- trap rates: a hand-made pool -----------------------------------------------------------------------------------

# Corpus rows 0..7 are original documents (0 = positive of qa, 1 = of qb, 6 = of qc), 8..10 injected:
# 8 = copy of row 0 (trap of qa), 9 = copy of row 1 (trap of qb), 10 = copy of row 0 that qa's pool misses.
HAND_IDS = ("p0", "p1", "r2", "r3", "r4", "r5", "p6", "r7", "inj-a", "inj-b", "inj-z")
HAND_POOL = [
    ("qa", [(0, 0.80)], [(8, 0.80), (2, 0.70), (3, 0.60), (9, 0.55), (4, 0.50), (5, 0.40)]),
    ("qb", [(1, 0.90)], [(2, 0.86), (9, 0.84), (6, 0.50), (7, 0.30)]),
    ("qc", [(6, 0.70)], [(3, 0.60), (4, 0.50), (5, 0.20)]),
]


def _hand() -> tuple[CandidatePool, Dataset, Manifest]:
    corpus = Corpus(HAND_IDS, ("",) * len(HAND_IDS), tuple(f"text {i}" for i in HAND_IDS))
    qrels = {"qa": {"p0": 1}, "qb": {"p1": 1}, "qc": {"p6": 1}}
    ds = Dataset("hand", "train", corpus, Queries(("qa", "qb", "qc"), ("a", "b", "c")), qrels)
    docs = (InjectedDoc("inj-a", "p0", "qa", ("qa",), "exact", 0, True),
            InjectedDoc("inj-b", "p1", "qb", ("qb",), "truncate", 0, False),
            InjectedDoc("inj-z", "p0", "qa", ("qa",), "drop_title", 0, False))
    return make_pool(HAND_POOL), ds, Manifest(settings={"split": "train"}, source={}, docs=docs)


def _rates(strategy: str) -> dict:
    pool, ds, man = _hand()
    return trap_rates(apply_strategy(pool, parse_strategy(strategy)), ds, man)


def test_trap_rates_naive_by_hand():
    r = _rates("topk(2)")
    # qa takes [8 trap, 2]; qb takes [2, 9 trap]; qc takes [3, 4]. Real top-2: qa {2, 3}, qb {2, 6}, qc {3, 4}.
    assert (r["rows"], r["trap_rows"], r["traps"], r["traps_in_pool"], r["traps_selected"]) == (3, 2, 3, 2, 2)
    assert r["exposure"] == pytest.approx(2 / 3) and r["exposure_top_n"] == pytest.approx(2 / 3)
    assert r["trap_recall"] == 1.0 and r["rows_with_trap"] == 1.0
    assert r["trap_share"] == 0.5 and r["trap_share_all"] == pytest.approx(2 / 6)
    assert r["real_kept"] == pytest.approx(4 / 6) and r["real_kept_trap_rows"] == 0.5
    assert r["negatives_per_row"] == 2.0 and r["rows_short"] == 0
    assert r["by_transform"] == {"drop_title": {"traps_in_pool": 0, "traps_selected": 0, "trap_recall": None},
                                 "exact": {"traps_in_pool": 1, "traps_selected": 1, "trap_recall": 1.0},
                                 "truncate": {"traps_in_pool": 1, "traps_selected": 1, "trap_recall": 1.0}}


@pytest.mark.parametrize("strategy", ["percpos(0.95)+topk(2)", "marginpos(0.05)+topk(2)"])
def test_trap_rates_positive_aware_by_hand(strategy: str):
    r = _rates(strategy)
    # qa: the exact copy (0.80 = positive) is removed -> [2, 3]; qb: 2 (0.86) is removed, trap 9 (0.84) stays
    # -> [9, 6]; qc: [3, 4].
    assert r["traps_selected"] == 1 and r["trap_recall"] == 0.5 and r["rows_with_trap"] == 0.5
    assert r["trap_share"] == 0.25 and r["trap_share_all"] == pytest.approx(1 / 6)
    assert r["real_kept"] == pytest.approx(5 / 6) and r["real_kept_trap_rows"] == 0.75
    assert r["by_transform"]["exact"]["trap_recall"] == 0.0 and r["by_transform"]["truncate"]["trap_recall"] == 1.0


def test_trap_rates_shift_and_none_by_hand():
    r = _rates("shift(1)+topk(2)")  # qa [2, 3], qb [9 trap, 6], qc [4, 5]
    assert r["traps_selected"] == 1 and r["real_kept"] == pytest.approx(4 / 6)
    r = _rates("none")
    assert r["n"] == 0 and r["traps_selected"] == 0 and r["trap_recall"] == 0.0
    assert r["real_kept"] is None and r["trap_share"] is None
    assert "| `none` | 2 / 3 | 66.7% |" in trap_table([r])


def test_trap_pool_stats_and_table():
    pool, ds, man = _hand()
    mined = apply_strategy(pool, parse_strategy("topk(2)"))
    s = trap_pool_stats(mined, ds, man)
    # qa's trap 8 ties its source (margin 0, raw rank 2: the positive wins the tie on row); qb's trap 9 is
    # 0.06 below its source, raw rank 3.
    assert (s["queries_with_traps"], s["traps"], s["traps_in_pool"]) == (2, 3, 2)
    assert s["rank_median"] == 2.5 and s["outscore_source"] == 0.5
    assert s["margin_median"] == pytest.approx(-0.03, abs=1e-6)
    table = trap_table({"topk(2)": trap_rates(mined, ds, man)})
    assert table.splitlines()[2] == ("| `topk(2)` | 2 / 3 | 66.7% | 66.7% | 100.0% | 100.0% | 50.0% | 33.3% "
                                     "| 66.7% | 2.00 |")


def test_trap_rates_need_the_injected_corpus():
    pool, ds, man = _hand()
    mined = apply_strategy(pool, parse_strategy("topk(2)"))
    bad = Manifest(settings={"split": "train"}, source={},
                   docs=man.docs + (InjectedDoc("inj-missing", "p0", "qa", ("qa",), "exact", 0, True),))
    with pytest.raises(HardnegError, match="not in the mined corpus"):
        trap_rates(mined, ds, bad)
    other = Manifest(settings={"split": "test"}, source={}, docs=man.docs)
    with pytest.raises(HardnegError, match="injected for split test"):
        trap_rates(mined, ds, other)


# -- trap rates end to end: injection + the hashed bag-of-words encoder -------------------------------------------

# No two documents share a word, and each train query repeats its positive's words: the positive scores 1.0
# (cosine of identical bags) and an exact copy ties it, so it is each query's first candidate by construction.
E2E_DOCS = [("a", "", "apple banana cherry"), ("b", "", "dog cat mouse"), ("c", "", "red green blue"),
            ("d", "", "sun moon star"), ("e", "", "car bus train"), ("f", "", "oak pine elm")]
E2E_QUERIES = [("qa", "apple banana cherry"), ("qb", "dog cat mouse"), ("qc", "red green blue"),
               ("qt", "sun moon star")]
E2E_QRELS = {"train": [("qa", "a", 1), ("qb", "b", 1), ("qc", "c", 1)], "test": [("qt", "d", 1)]}


def test_trap_rates_with_hash_encoder(tmp_path: Path):
    src = write_beir(tmp_path / "src", docs=E2E_DOCS, queries=E2E_QUERIES, qrels=E2E_QRELS)
    man = _inject(src, tmp_path / "inj", rate=1.0, transforms=("exact",))
    assert [d["exact"] for d in man["docs"]] == [True] * 3
    ds = load_beir(tmp_path / "inj", "train")
    manifest = load_manifest(tmp_path / "inj")
    pool = get_pool(EncoderSpec(model="hash"), ds, 8, None, progress=False)
    first = [ds.corpus.ids[i] for i in pool.cand_idx[:, 0]]
    assert first == [manifest.by_qid[q][0] for q in pool.qids]  # each query's copy is its first candidate
    assert np.allclose(pool.cand_score[:, 0], pool.pos_score)  # ... scoring exactly like the positive
    naive = trap_rates(apply_strategy(pool, parse_strategy("topk(1)")), ds, manifest)
    assert (naive["trap_rows"], naive["traps_selected"], naive["trap_recall"], naive["trap_share"]) == (3, 3, 1.0, 1.0)
    assert naive["real_kept"] == 0.0  # the only slot went to the trap
    for s in ("percpos(0.95)+topk(1)", "marginpos(0.05)+topk(1)", "shift(1)+topk(1)"):
        r = trap_rates(apply_strategy(pool, parse_strategy(s)), ds, manifest)
        assert (r["traps_selected"], r["trap_recall"], r["rows_with_trap"]) == (0, 0.0, 0.0), s
        assert r["real_kept"] == 1.0 and r["exposure"] == 1.0, s
    # evaluation side: the test split with the copies stripped is the source's test split
    test = strip_injected(load_beir(tmp_path / "inj", "test"), manifest)
    assert test.corpus == load_beir(src, "test").corpus


def test_cli_inject_mine_reports_traps_and_evaluate_strips(tmp_path, capsys):
    from conftest import run_cli, write_beir

    src = write_beir(tmp_path / "src")
    dst = tmp_path / "inj"
    code, _, err = run_cli(["inject", "--data", str(src), "--out", str(dst), "--rate", "1", "--transform", "exact",
                            "-q"], capsys)
    assert code == 0, err
    code, out, err = run_cli(["mine", "--data", str(dst), "--out", str(tmp_path / "m"), "--teacher", "hash",
                              "-s", "topk(4)", "-s", "percpos(0.95)+topk(4)", "--depth", "8", "-q",
                              "--cache", str(tmp_path / "c")], capsys)
    assert code == 0, err
    stats = json.loads((tmp_path / "m" / "topk-4" / "stats.json").read_text())
    # an exact copy scores exactly like its source positive, so naive top-k mines every copy in the pool...
    assert stats["traps"]["trap_recall"] == 1.0
    # ...and percpos(0.95) never does (its score is not below 95% of the positive's)
    stats = json.loads((tmp_path / "m" / "percpos-0.95_topk-4" / "stats.json").read_text())
    assert stats["traps"]["trap_recall"] == 0.0
    code, _, err = run_cli(["evaluate", "--model", "hash", "--data", str(dst), "--split", "test", "-q",
                            "--out", str(tmp_path / "e1"), "--cache", str(tmp_path / "c")], capsys)
    assert code == 0, err
    code, _, err = run_cli(["evaluate", "--model", "hash", "--data", str(src), "--split", "test", "-q",
                            "--out", str(tmp_path / "e2"), "--cache", str(tmp_path / "c")], capsys)
    assert (tmp_path / "e1" / "run.trec").read_bytes() == (tmp_path / "e2" / "run.trec").read_bytes()
