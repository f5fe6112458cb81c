"""Thinned labels (hardneg.data.thin), hidden-positive rates (hardneg.mining.trap.hidden_rates), Judged@10, and the
NFCorpus study configs."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_DATA, run_cli, write_beir
from hardneg.data.beir import load_beir
from hardneg.data.inject import inject_false_negatives
from hardneg.data.load import descriptor_of, load_dataset, load_eval_dataset, strip_if_injected
from hardneg.data.splits import carve_dev
from hardneg.data.thin import (MANIFEST, HiddenManifest, eval_manifest, hidden_for, is_thinned, load_hidden,
                               plan_thinning, restore_hidden, thin_dataset, verify_thinned)
from hardneg.encode.encoder import EncoderSpec
from hardneg.errors import HardnegError
from hardneg.evaluate.metrics import compute_metrics
from hardneg.io import OUTPUT_MARKER
from hardneg.mining.neighbours import pool_extras
from hardneg.mining.pipeline import get_pool
from hardneg.mining.select import apply_strategy
from hardneg.mining.strategy import parse_strategy
from hardneg.mining.trap import hidden_rates, hidden_table, known_negative_rates
from hardneg.testing import make_pool
from hardneg.types import Corpus, Dataset, Queries

ROOT = Path(__file__).resolve().parents[1]

# Graded train qrels: qa has 4 positives (grades 2, 1, 2, 1) and one judged non-relevant doc; qb 2 positives;
# qc 1 positive. Test is untouched by thinning.
DOCS = [(f"d{i}", f"T{i}", f"text number {i} words") for i in range(10)]
QUERIES = [("qa", "query a"), ("qb", "query b"), ("qc", "query c"), ("qt", "query t")]
QRELS = {"train": [("qa", "d1", 2), ("qa", "d2", 1), ("qa", "d9", 0), ("qb", "d3", 1), ("qa", "d4", 2),
                   ("qb", "d5", 1), ("qa", "d6", 1), ("qc", "d7", 1)],
         "test": [("qt", "d8", 2), ("qt", "d1", 1)]}


@pytest.fixture
def src(tmp_path: Path) -> Path:
    return write_beir(tmp_path / "src", docs=DOCS, queries=QUERIES, qrels=QRELS, crlf=True)


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


# -- thinning ---------------------------------------------------------------------------------------------------

def test_thin_keeps_the_best_graded_positives_and_copies_the_rest_byte_for_byte(src: Path, tmp_path: Path):
    dst = tmp_path / "k1"
    man = thin_dataset(src, dst, keep=1)
    # qa: grades 2 (d1, d4) beat 1 (d2, d6); the tie between d1 and d4 is broken by the seeded hash
    kept_qa = {"d1", "d4"} - set(man["hidden"]["qa"])
    assert len(kept_qa) == 1 and set(man["hidden"]["qa"]) == {"d1", "d2", "d4", "d6"} - kept_qa
    assert {d: g for d, g in man["hidden"]["qa"].items() if g == 1} == {"d2": 1, "d6": 1}
    assert len(man["hidden"]["qb"]) == 1 and "qc" not in man["hidden"]  # qc has only one positive
    assert man["settings"] == {"split": "train", "keep": 1, "order": "grade", "seed": 0}
    want = {"queries": 3, "queries_thinned": 2, "positives": 7, "positives_kept": 3, "positives_hidden": 4,
            "judged_not_relevant": 1, "hidden_by_grade": {"1": 3, "2": 1}, "qrels_lines_dropped": 4,
            "max_positives_per_query": 4}
    assert {k: man["stats"][k] for k in want} == want
    # every other file byte for byte (test split included); the thinned file: header, order and CRLF kept
    for rel in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv"):
        assert (dst / rel).read_bytes() == (src / rel).read_bytes(), rel
    hidden_pairs = {(q, d) for q, docs in man["hidden"].items() for d in docs}
    want = [ln for ln in _lines(src / "qrels/train.tsv")
            if tuple(ln.decode().rstrip("\r\n").split("\t")[:2]) not in hidden_pairs]
    assert _lines(dst / "qrels/train.tsv") == want
    assert want[0] == b"query-id\tcorpus-id\tscore\r\n" and b"qa\td9\t0\r\n" in want  # zero grade stays
    assert sorted(p.name for p in dst.iterdir()) == sorted([OUTPUT_MARKER, "corpus.jsonl", MANIFEST, "qrels",
                                                            "queries.jsonl"])
    assert json.loads((dst / OUTPUT_MARKER).read_text())["verb"] == "thin"
    assert is_thinned(dst) and not is_thinned(src)
    assert load_hidden(dst).to_dict() == man == json.loads((dst / MANIFEST).read_text())
    assert verify_thinned(dst) == {"queries": 3, "queries_thinned": 2, "hidden": 4, "positives": 7}
    # the thinned split as mining sees it: one positive per query, the hidden ones unlabelled
    ds = load_beir(dst, "train")
    assert [len(ds.positives(q)) for q in ("qa", "qb", "qc")] == [1, 1, 1]
    assert ds.qrels["qa"]["d9"] == 0
    # hardneg browse reads the same file
    from hardneg.browse.inputs import read_hidden

    assert read_hidden(dst / MANIFEST, "train") == man["hidden"]


def test_choice_is_seeded_nested_and_independent_of_file_order(src: Path, tmp_path: Path):
    a = thin_dataset(src, tmp_path / "a", keep=1, order="random", seed=3)
    b = thin_dataset(src, tmp_path / "b", keep=1, order="random", seed=3)
    assert a["hidden"] == b["hidden"] and a["settings"] == b["settings"] == {"split": "train", "keep": 1,
                                                                           "order": "random", "seed": 3}
    seeds = {json.dumps(plan_thinning(load_beir(src, "train").qrels, keep=1, order="random", seed=s), sort_keys=True)
             for s in range(8)}
    assert len(seeds) > 1  # the seed matters
    qrels = load_beir(src, "train").qrels
    for order in ("grade", "random"):
        for seed in range(5):
            k1, k2 = (plan_thinning(qrels, keep=k, order=order, seed=seed) for k in (1, 2))
            for q, docs in k2.items():
                assert set(docs) <= set(k1[q])  # what K=2 hides, K=1 hides too
            if order == "grade":  # never hide a grade 2 while keeping a grade 1
                kept = {d for d, g in qrels["qa"].items() if g > 0 and d not in k2["qa"]}
                assert kept == {"d1", "d4"}
    shuffled = write_beir(tmp_path / "shuffled", docs=DOCS[::-1], queries=QUERIES[::-1],
                          qrels={"train": QRELS["train"][::-1], "test": QRELS["test"]})
    assert thin_dataset(shuffled, tmp_path / "c", keep=1, order="random", seed=3)["hidden"] == a["hidden"]
    k9 = thin_dataset(src, tmp_path / "k9", keep=9)
    assert k9["hidden"] == {} and (tmp_path / "k9" / "qrels/train.tsv").read_bytes() == \
        (src / "qrels/train.tsv").read_bytes()


@pytest.mark.parametrize("kw, msg", [
    ({"keep": 0}, "thin --keep: keep must be an integer >= 1"), ({"keep": True}, "--keep: keep must be"),
    ({"keep": 1.5}, "--keep: keep must be"), ({"keep": 1, "order": "score"}, "--order: order must be one of grade, random"),
    ({"keep": 1, "seed": "0"}, "--seed: seed must be an integer"), ({"keep": 1, "split": ""}, "--split: split must be"),
    ({"keep": 1, "split": "dev"}, 'split "dev" does not exist'),
])
def test_bad_arguments_write_nothing(src: Path, tmp_path: Path, kw: dict, msg: str):
    with pytest.raises(HardnegError, match=msg) as exc:
        thin_dataset(src, tmp_path / "out", **kw)
    assert "\n" not in str(exc.value) and "Fix: " in str(exc.value)
    assert not (tmp_path / "out").exists()


def test_a_split_without_positives_is_refused(tmp_path: Path):
    src = write_beir(tmp_path / "src", docs=DOCS, queries=QUERIES,
                     qrels={"train": [("qa", "d1", 0), ("qb", "d2", 0)], "test": QRELS["test"]})
    with pytest.raises(HardnegError, match="split train has no positive judgement") as exc:
        thin_dataset(src, tmp_path / "out", keep=1)
    assert "qrels/train.tsv" in str(exc.value)
    assert not (tmp_path / "out").exists()


def test_output_folder_rules(src: Path, tmp_path: Path):
    with pytest.raises(HardnegError, match="lies inside the input"):
        thin_dataset(src, src / "inside", keep=1)
    assert not (src / "inside").exists()
    with pytest.raises(HardnegError, match="is the input"):
        thin_dataset(src, src, keep=1)
    with pytest.raises(HardnegError, match="contains the input"):
        thin_dataset(src, tmp_path, keep=1)
    other = tmp_path / "precious"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    with pytest.raises(HardnegError, match="not empty and was not written by hardneg"):
        thin_dataset(src, other, keep=1)
    assert [p.name for p in other.iterdir()] == ["keep.txt"]
    inj = tmp_path / "inj"
    inject_false_negatives(src, inj, rate=0.5)
    with pytest.raises(HardnegError, match="holds the output of `hardneg inject`"):
        thin_dataset(src, inj, keep=1)
    thin_dataset(src, tmp_path / "out", keep=2)
    with pytest.raises(HardnegError, match="--overwrite"):
        thin_dataset(src, tmp_path / "out", keep=1)
    m = thin_dataset(src, tmp_path / "out", keep=1, overwrite=True)
    assert load_hidden(tmp_path / "out").to_dict() == m and m["settings"]["keep"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left behind
    # a thinned or an injected source is refused, naming the reason, and nothing is written
    for source, why in ((tmp_path / "out", "already thinned"), (inj, "injected false negatives")):
        with pytest.raises(HardnegError, match=why) as exc:
            thin_dataset(source, tmp_path / "again", keep=1)
        assert "\n" not in str(exc.value)
        assert not (tmp_path / "again").exists()


def test_load_hidden_errors(src: Path, tmp_path: Path):
    with pytest.raises(HardnegError, match="no hidden-positive manifest"):
        load_hidden(src)
    thin_dataset(src, tmp_path / "out", keep=1)
    p = tmp_path / "out" / MANIFEST
    raw = json.loads(p.read_text())
    p.write_text('{"format": 99}')
    with pytest.raises(HardnegError, match="unsupported manifest format"):
        load_hidden(tmp_path / "out")
    p.write_text(json.dumps({**raw, "hidden": {"qa": {"d1": "high"}}}))
    with pytest.raises(HardnegError, match="mistypes a field"):
        load_hidden(tmp_path / "out")


# -- evaluation sees the source's labels ------------------------------------------------------------------------

def test_eval_dataset_of_a_thinned_folder_equals_the_source(src: Path, tmp_path: Path):
    dst = tmp_path / "k1"
    thin_dataset(src, dst, keep=1)
    for split in ("train", "test"):
        want, got = load_beir(src, split), load_eval_dataset(dst, split)
        assert got.corpus == want.corpus and got.queries == want.queries and got.qrels == want.qrels, split
    assert load_dataset(dst, "train").qrels != load_beir(src, "train").qrels  # mining sees the thinned labels
    # a dev carved out of the thinned train (named "dev", like an official one) gets its hidden positives back too
    src_train = load_beir(src, "train")
    for seed in range(4):
        train, dev = carve_dev(load_dataset(dst, "train"), 0.34, seed=seed)
        assert eval_manifest(dst, train) is not None
        assert strip_if_injected(dst, dev).qrels == {q: src_train.qrels[q] for q in dev.qrels}
        assert strip_if_injected(dst, train).qrels == {q: src_train.qrels[q] for q in train.qrels}
    dev = carve_dev(load_dataset(dst, "train"), 0.34, seed=0)[1]
    assert "qa" in dev.qrels and eval_manifest(dst, dev) is not None  # the carve that holds the thinned qa
    test = load_dataset(dst, "test")
    assert eval_manifest(dst, test) is None and eval_manifest(src, src_train) is None
    assert hidden_for(dst, "train-minus-dev") is not None and hidden_for(dst, "test") is None
    assert hidden_for(src, "train") is None
    with pytest.raises(HardnegError, match="still judged"):
        restore_hidden(src_train, load_hidden(dst))  # the source already has them


def test_cli_evaluate_on_a_thinned_folder_equals_the_source(src: Path, tmp_path: Path, capsys):
    dst = tmp_path / "k1"
    thin_dataset(src, dst, keep=1)
    outs = {}
    for name, data in (("thin", dst), ("src", src)):
        for split in ("test", "train"):
            out = tmp_path / f"e-{name}-{split}"
            code, _, err = run_cli(["evaluate", "--model", "hash", "--data", str(data), "--split", split, "-q",
                                    "--out", str(out), "--cache", str(tmp_path / "c")], capsys)
            assert code == 0, err
            outs[name, split] = out
    for split in ("test", "train"):
        a, b = outs["thin", split], outs["src", split]
        assert (a / "run.trec").read_bytes() == (b / "run.trec").read_bytes()
        assert (a / "per_query.json").read_bytes() == (b / "per_query.json").read_bytes()
        ma, mb = (json.loads((x / "metrics.json").read_text())["metrics"] for x in (a, b))
        assert ma == mb and "judged@10" in ma
    pq = json.loads((outs["src", "test"] / "per_query.json").read_text())
    assert set(pq["qt"]) >= {"judged@10", "ndcg@10"}
    # with 10 documents, the whole corpus is the top 10: qt has 2 judged documents
    assert pq["qt"]["judged@10"] == pytest.approx(0.2)


def test_a_thinned_arguana_keeps_arguanas_evaluation_rule(tmp_path: Path, capsys):
    # ArguAna drops a retrieved document whose id is the query's; a copy in a folder named "k1" must do the same
    docs = DOCS + [("qt", "T", "query t text")]  # a document with the test query's id
    src = write_beir(tmp_path / "arguana", docs=docs, queries=QUERIES, qrels=QRELS)
    dst = tmp_path / "k1"
    thin_dataset(src, dst, keep=1)
    assert descriptor_of(load_dataset(dst, "test")).ignore_identical_ids
    assert not descriptor_of(load_dataset(write_beir(tmp_path / "k2", qrels=QRELS, docs=docs, queries=QUERIES),
                                          "test")).ignore_identical_ids  # a plain folder: by its own name
    runs = []
    for data in (src, dst):
        out = tmp_path / f"e-{data.name}"
        code, _, err = run_cli(["evaluate", "--model", "hash", "--data", str(data), "--split", "test", "-q",
                                "--out", str(out), "--cache", str(tmp_path / "c")], capsys)
        assert code == 0, err
        runs.append((out / "run.trec").read_bytes())
    assert runs[0] == runs[1] and b"qt Q0 qt " not in runs[0]


# -- Judged@10 --------------------------------------------------------------------------------------------------

def test_judged_at_k_by_hand():
    qrels = {"q": {"a": 2, "b": 0, "c": -1, "d": 1}, "q2": {"x": 0}, "q3": {"y": 1}}
    run = {"q": {"a": 0.9, "e": 0.8, "b": 0.7, "f": 0.6, "c": 0.5},  # 5 retrieved, 3 judged (a, b 0, c -1)
           "q2": {"x": 0.5, "z": 0.4},  # only a rel-0 judgement: still measured (ir_measures does too)
           "zz": {"a": 1.0}}  # not a qrels query: ignored; q3 is missing from the run: 0, counted in the mean
    agg, per = compute_metrics(qrels, run, judged_at=(10, 2))
    # fewer than k retrieved: divided by the number retrieved, as ir_measures' judged_provider does
    assert per["q"]["judged@10"] == pytest.approx(3 / 5) and per["q"]["judged@2"] == pytest.approx(1 / 2)
    assert per["q2"]["judged@10"] == pytest.approx(1 / 2) and per["q2"]["judged@2"] == pytest.approx(1 / 2)
    assert per["q3"]["judged@10"] == 0.0
    assert agg["judged@10"] == pytest.approx((0.6 + 0.5 + 0.0) / 3)
    eleven = {f"d{i:02d}": 1.0 - i / 100 for i in range(11)}  # 11 retrieved, d00 and d10 judged: d10 is 11th
    _, per = compute_metrics({"q": {"d00": 1, "d10": 0}}, {"q": eleven}, judged_at=(10,))
    assert per["q"]["judged@10"] == pytest.approx(1 / 10)
    # ties follow trec_eval's order (docid descending): e, b, a -> the top 2 hold one judged doc
    _, per = compute_metrics({"q": {"a": 1, "b": 0}}, {"q": {"a": 0.5, "e": 0.5, "b": 0.5}}, judged_at=(2,))
    assert per["q"]["judged@2"] == 0.5
    agg, _ = compute_metrics(qrels, run)  # not asked for: not computed
    assert "judged@10" not in agg


# -- hidden-positive rates: a hand-made pool --------------------------------------------------------------------

# Corpus rows: p0 positive of qa (kept), h1 (grade 2) and h2 (grade 1) hidden positives of qa, r3/r4 real negatives,
# p5 positive of qb, h6 hidden of qb, p7 positive of qc (a candidate of qb), hx hidden of qa but not in its pool.
HAND_IDS = ("p0", "h1", "h2", "r3", "r4", "p5", "h6", "p7", "hx")
HAND_POOL = [
    ("qa", [(0, 0.80)], [(1, 0.85), (3, 0.70), (2, 0.60), (4, 0.50)]),
    ("qb", [(5, 0.90)], [(3, 0.88), (6, 0.70), (7, 0.30)]),
    ("qc", [(7, 0.70)], [(3, 0.60), (4, 0.50)]),
]


def _hand():
    corpus = Corpus(HAND_IDS, ("",) * len(HAND_IDS), tuple(f"text {i}" for i in HAND_IDS))
    qrels = {"qa": {"p0": 1}, "qb": {"p5": 1}, "qc": {"p7": 1}}
    ds = Dataset("hand", "train", corpus, Queries(("qa", "qb", "qc"), ("a", "b", "c")), qrels)
    man = HiddenManifest(settings={"split": "train", "keep": 1}, source={},
                         hidden={"qa": {"h1": 2, "h2": 1, "hx": 1}, "qb": {"h6": 1}})
    return make_pool(HAND_POOL), ds, man


def _rates(strategy: str) -> dict:
    pool, ds, man = _hand()
    return hidden_rates(apply_strategy(pool, parse_strategy(strategy)), ds, man)


def test_hidden_rates_naive_by_hand():
    r = _rates("topk(2)")
    # qa takes [h1, r3]; qb [r3, h6]; qc [r3, r4]. Hidden: qa 3 (2 in the pool), qb 1 (in the pool).
    assert (r["rows"], r["hidden_rows"], r["hidden"], r["hidden_in_pool"], r["hidden_selected"]) == (3, 2, 4, 3, 2)
    assert r["exposure"] == 0.75 and r["exposure_top_n"] == 0.5
    assert r["hidden_recall"] == pytest.approx(2 / 3) and r["rows_with_hidden"] == 1.0
    assert r["hidden_share"] == 0.5 and r["hidden_share_all"] == pytest.approx(2 / 6)
    # real top-2 without hidden: qa {r3, r4}, qb {r3, p7}, qc {r3, r4}; kept: r3, r3, r3 + r4
    assert r["real_kept"] == pytest.approx(4 / 6) and r["real_kept_hidden_rows"] == 0.5
    assert r["by_grade"] == {"1": {"hidden_in_pool": 2, "hidden_selected": 1, "hidden_recall": 0.5},
                             "2": {"hidden_in_pool": 1, "hidden_selected": 1, "hidden_recall": 1.0}}
    assert hidden_table([r]).splitlines()[2] == ("| `topk(2)` | 2 / 3 | 75.0% | 50.0% | 66.7% | 100.0% | 50.0% "
                                                 "| 33.3% | 66.7% | 2.00 |")


def test_hidden_rates_positive_aware_shift_and_none_by_hand():
    r = _rates("percpos(0.95)+topk(2)")
    # qa: h1 (0.85 >= 0.76) removed -> [r3, h2]; qb: r3 (0.88 >= 0.855) removed -> [h6, p7]; qc: [r3, r4]
    assert r["hidden_selected"] == 2 and r["by_grade"]["2"]["hidden_selected"] == 0
    assert r["by_grade"]["1"]["hidden_recall"] == 1.0
    r = _rates("shift(1)+topk(2)")  # qa [r3, h2]; qb [h6, p7]; qc [r4] (short)
    assert (r["hidden_selected"], r["rows_short"]) == (2, 1)
    r = _rates("none")
    assert r["n"] == 0 and r["hidden_selected"] == 0 and r["hidden_recall"] == 0.0 and r["hidden_share"] is None


def test_hidden_rates_need_the_thinned_dataset():
    pool, ds, man = _hand()
    mined = apply_strategy(pool, parse_strategy("topk(2)"))
    with pytest.raises(HardnegError, match="thinned for split test"):
        hidden_rates(mined, ds, HiddenManifest(settings={"split": "test"}, source={}, hidden=man.hidden))
    with pytest.raises(HardnegError, match="not in the mined corpus"):
        hidden_rates(mined, ds, HiddenManifest(settings={"split": "train"}, source={}, hidden={"qa": {"zz": 1}}))
    labelled = Dataset(ds.name, ds.split, ds.corpus, ds.queries, {**ds.qrels, "qa": {"p0": 1, "h1": 2}})
    with pytest.raises(HardnegError, match="labelled positive of the mined qrels"):
        hidden_rates(mined, labelled, man)
    assert set(known_negative_rates(mined, ds, man)) == {"hidden"}


def test_hidden_rates_end_to_end_with_hash_encoder(tmp_path: Path):
    """Each train query repeats the words of all its positives, so with one kept the others are its best candidates."""
    docs = [("a1", "", "apple banana"), ("a2", "", "cherry grape"), ("a3", "", "lemon mango"),
            ("b1", "", "dog cat"), ("b2", "", "mouse horse"), ("x", "", "red green"), ("y", "", "sun moon"),
            ("z", "", "oak pine")]
    queries = [("qa", "apple banana cherry grape lemon mango"), ("qb", "dog cat mouse horse"), ("qt", "sun moon")]
    qrels = {"train": [("qa", "a1", 1), ("qa", "a2", 1), ("qa", "a3", 1), ("qb", "b1", 1), ("qb", "b2", 1)],
             "test": [("qt", "y", 1)]}
    src = write_beir(tmp_path / "src", docs=docs, queries=queries, qrels=qrels)
    thin_dataset(src, tmp_path / "k1", keep=1, order="random")
    ds, man = load_dataset(tmp_path / "k1", "train"), load_hidden(tmp_path / "k1")
    pool = get_pool(EncoderSpec(model="hash"), ds, 6, None, progress=False)
    naive = hidden_rates(apply_strategy(pool, parse_strategy("topk(2)")), ds, man)
    assert (naive["hidden"], naive["hidden_in_pool"], naive["hidden_selected"]) == (3, 3, 3)
    assert naive["hidden_recall"] == 1.0 and naive["real_kept"] == pytest.approx(1 / 4)
    none = hidden_rates(apply_strategy(pool, parse_strategy("none")), ds, man)
    assert none["hidden_selected"] == 0


def test_ablate_records_hidden_rates_on_thinned_data(tmp_path: Path, capsys):
    """On a thinned copy each record carries the strategy's hidden rates; test metrics equal the source's base."""
    from hardneg.testing import make_tiny_student, tiny_run_config, write_tiny_beir

    data = write_tiny_beir(tmp_path / "data")
    thinned = tmp_path / "k1"
    man = thin_dataset(data, thinned, keep=1)
    assert man["stats"]["positives_hidden"] > 0
    student = make_tiny_student(tmp_path / "student")
    cfg = tmp_path / "ablate.toml"
    cfg.write_text(tiny_run_config(thinned, student, tmp_path / "out", tmp_path / "cache", dev="false", max_steps=1,
                                   mine="", evaluate='splits = ["test"]',
                                   extra='[grid]\nstrategies = ["topk(2)", "percpos(0.95)+topk(2)", '
                                         '"posnbr(0.9)+topk(2)"]\n'))  # posnbr: replayed with its pool extras
    code, _, err = run_cli(["ablate", str(cfg), "-q"], capsys)
    assert code == 0, err
    recs = {json.loads(x)["point"]["strategy"]: json.loads(x)
            for x in (tmp_path / "out" / "results.jsonl").read_text().splitlines()}
    ds = load_dataset(thinned, "train")
    pool = get_pool(EncoderSpec(model="hash"), ds, 10, tmp_path / "cache", progress=False)
    assert set(recs) == {"topk(2)", "percpos(0.95)+topk(2)", "posnbr(0.9)+topk(2)"}
    for strategy, rec in recs.items():
        st = parse_strategy(strategy)
        extras = pool_extras(pool, ds, tmp_path / "cache", need=set(st.needs())) if st.needs() else None
        want = hidden_rates(apply_strategy(pool, st, extras=extras), ds, load_hidden(thinned))
        assert rec["mining"]["hidden"] == json.loads(json.dumps(want))
        assert "traps" not in rec["mining"]
        assert "judged@10" in rec["metrics"]["test"]["finetuned"]
    assert recs["topk(2)"]["mining"]["hidden"]["hidden_in_pool"] > 0  # not vacuous
    code, _, err = run_cli(["report", str(tmp_path / "out" / "results.jsonl"), "--out", str(tmp_path / "rep"), "-q"],
                           capsys)
    assert code == 0, err
    assert "test judged@10" in (tmp_path / "rep" / "table.md").read_text()
    assert "test_judged10_mean" in (tmp_path / "rep" / "table.csv").read_text()
    assert "hidden recall" in (tmp_path / "rep" / "mining.md").read_text()


# -- report: the new columns appear only when a record has them ---------------------------------------------------

def test_report_columns_only_with_the_new_fields(tmp_path: Path):
    from hardneg.report import mining_markdown, summarise, table_csv, table_markdown

    def rec(strategy: str, judged: float | None, hidden: dict | None) -> dict:
        fin = {"ndcg@10": 0.5, "recall@100": 0.9} | ({"judged@10": judged} if judged is not None else {})
        mining = {"rows": 3, "rows_short": 0, "rows_empty": 0} | ({"hidden": hidden} if hidden else {})
        return {"key": strategy, "point": {"teacher": "t", "student": "s", "strategy": strategy, "seed": 0},
                "metrics": {"test": {"base": {"ndcg@10": 0.4, "recall@100": 0.8}, "finetuned": fin}},
                "per_query": {"test": {"base": {"q": {"ndcg@10": 0.4}}, "finetuned": {"q": {"ndcg@10": 0.5}}}},
                "mining": mining}

    old = [rec("topk(4)", None, None), rec("none", None, None)]
    rows = summarise(old, [])
    assert "judged" not in table_markdown(rows, {}, 0) + table_csv(rows)
    assert "hidden" not in mining_markdown(old)
    new = [rec("topk(4)", 0.75, {"hidden_recall": 0.5, "hidden_share_all": 0.25}), rec("none", None, None)]
    rows = summarise(new, [])
    md = table_markdown(rows, {"s": {"test ndcg@10": 0.4, "test recall@100": 0.8, "test judged@10": 0.7}}, 0)
    header = [c.strip() for c in md.splitlines()[0].strip("|").split("|")]
    assert header[header.index("test recall@100") + 1] == "test judged@10"
    cells = {ln.split("|")[4].strip(): [c.strip() for c in ln.strip("|").split("|")] for ln in md.splitlines()[2:5]}
    at = header.index("test judged@10")
    assert cells["`topk(4)`"][at] == "0.7500" and cells["`none`"][at] == "–"
    assert "| – | base s (no fine-tuning) |" in md and "| 0.7000 |" in md
    mm = mining_markdown(new)
    assert "| 50.0% | 25.0% |" in mm and "| – | – |" in mm


# -- the NFCorpus study ------------------------------------------------------------------------------------------

def test_nfcorpus_configs_load():
    from hardneg.experiments.ablate import load_ablation

    thin, grid = load_ablation(ROOT / "configs" / "ablate-nfcorpus-thin.toml")
    assert thin.data.path == "~/hardneg-runs/data/nfcorpus-k1" and thin.data.dev == "dev"
    assert grid.strategies[:5] == ("none", "topk(4)", "percpos(0.95)+topk(4)", "marginpos(0.05)+topk(4)",
                                   "shift(10)+topk(4)")  # the five, then neighbour, auto, relabel, SimANS
    assert set(grid.strategies[5:]) == {"posnbr(0.85)+topk(4)", "percpos(auto,coverage=0.9)+topk(4)",
                                        "relabel(posnbr(0.85))+topk(4)", "simans(100,4,10.0,-0.1)"}
    assert grid.seeds == (0, 1, 2) and grid.teachers == ("minilm",) and grid.students == ("minilm",)
    ref, rgrid = load_ablation(ROOT / "configs" / "ablate-nfcorpus-ref.toml")
    assert ref.data.path == "../shared/data/nfcorpus"
    assert rgrid.strategies == ("topk(4)", "percpos(0.95,ref=row)+topk(4)")
    assert ref.run.out != thin.run.out
    # the same step budget: the thinned study's one epoch of 2,590 rows is ceil(2590 / 32) = 81 steps
    assert ref.train.max_steps == 81 and thin.train.max_steps is None and thin.train.batch_size == 32
    a, b = thin.to_dict(), ref.to_dict()
    for d in (a, b):
        d.pop("data"), d.pop("run"), d["train"].pop("max_steps")
    assert a == b  # the same recipe apart from the data, the output folder and the step cap


@pytest.mark.skipif(not (SHARED_DATA / "nfcorpus" / "qrels" / "train.tsv").is_file(), reason="no NFCorpus copy")
def test_thin_nfcorpus_to_one_positive(tmp_path: Path):
    src = SHARED_DATA / "nfcorpus"
    man = thin_dataset(src, tmp_path / "nfcorpus-k1", keep=1)
    s = man["stats"]
    assert (s["queries"], s["queries_thinned"], s["positives"], s["positives_kept"]) == (2590, 2402, 110575, 2590)
    assert s["positives_hidden"] == 110575 - 2590 and s["hidden_by_grade"] == {"1": 107985}
    for rel in ("corpus.jsonl", "queries.jsonl", "qrels/dev.tsv", "qrels/test.tsv"):
        assert (tmp_path / "nfcorpus-k1" / rel).read_bytes() == (src / rel).read_bytes(), rel
    lines = _lines(tmp_path / "nfcorpus-k1" / "qrels/train.tsv")
    assert len(lines) == 1 + 2590 and all(ln.endswith(b"\r\n") for ln in lines)
    at = {ln: i for i, ln in enumerate(_lines(src / "qrels/train.tsv"))}  # every source line is unique
    assert np.all(np.diff([at[ln] for ln in lines]) > 0)  # a subsequence of the source's lines, header first
    assert verify_thinned(tmp_path / "nfcorpus-k1")["positives"] == 110575


def test_report_judged_cell_needs_every_seed():
    from hardneg.report import summarise

    def rec(seed: int, judged: float | None) -> dict:
        fin = {"ndcg@10": 0.5, "recall@100": 0.9} | ({"judged@10": judged} if judged is not None else {})
        return {"key": str(seed), "point": {"teacher": "t", "student": "s", "strategy": "topk(4)", "seed": seed},
                "metrics": {"test": {"base": {"ndcg@10": 0.4, "recall@100": 0.8}, "finetuned": fin}},
                "per_query": {}, "mining": {}}

    assert "test judged@10" not in summarise([rec(0, 0.5), rec(1, None)], [])[0]
    assert summarise([rec(0, 0.5), rec(1, 0.7)], [])[0]["test judged@10"][0] == pytest.approx(0.6)
