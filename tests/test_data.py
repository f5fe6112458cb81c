"""BEIR loading: good folders load exactly; every bad input is one clear line naming file, line and fix."""
from __future__ import annotations

import json

import pytest

from conftest import SHARED_DATA, corrupt_line, write_beir
from hardneg.data.beir import load_beir
from hardneg.errors import HardnegError


def test_tiny_folder_loads_in_file_order(tiny_beir):
    ds = load_beir(tiny_beir, "train")
    assert ds.corpus.ids[:3] == ("d1", "d2", "d3")
    assert ds.corpus.encoding_texts[0] == "Cats cats purr and sleep all day"
    assert ds.corpus.encoding_texts[4] == "fish swim in the sea"  # empty title: no leading space
    assert ds.queries.ids == ("q1", "q2", "q3")
    assert ds.positives("q3") == ["d1", "d7"]  # d5 is judged 0: not a positive
    assert ds.qrels["q3"]["d5"] == 0


def test_crlf_qrels(tmp_path):
    ds = load_beir(write_beir(tmp_path / "c", crlf=True), "test")
    assert ds.qrels == {"q4": {"d4": 2}, "q5": {"d8": 1, "d2": 1}}


@pytest.mark.skipif(not (SHARED_DATA / "nfcorpus").is_dir(), reason="shared data not present")
def test_real_datasets_counts():
    sf = load_beir(SHARED_DATA / "scifact", "train")
    assert (len(sf.corpus), len(sf.queries), sum(len(v) for v in sf.qrels.values())) == (5183, 809, 919)
    nf = load_beir(SHARED_DATA / "nfcorpus", "test")  # CRLF qrels with grades 1 and 2
    assert len(nf.queries) == 323 and sum(len(v) for v in nf.qrels.values()) == 12334
    assert {r for v in nf.qrels.values() for r in v.values()} == {1, 2}


CASES = [
    # (name, file, line to replace (1-based), new bytes or None, split, expected message parts)
    ("malformed json", "corpus.jsonl", 2, b'{"_id": "d2", "text": "x"', "train", ["corpus.jsonl:2", "malformed JSON"]),
    ("missing _id", "corpus.jsonl", 3, b'{"title": "t", "text": "x"}', "train", ["corpus.jsonl:3", 'missing field "_id"']),
    ("wrong type", "corpus.jsonl", 3, b'{"_id": "d3", "text": ["x"]}', "train", ["corpus.jsonl:3", "must be a string"]),
    ("empty doc", "corpus.jsonl", 4, b'{"_id": "d4", "title": "", "text": "  "}', "train", ["corpus.jsonl:4", "empty title and text"]),
    ("duplicate doc id", "corpus.jsonl", 4, b'{"_id": "d1", "text": "x"}', "train", ["corpus.jsonl:4", 'duplicate document id "d1"']),
    ("not an object", "queries.jsonl", 1, b'["q1", "x"]', "train", ["queries.jsonl:1", "expected a JSON object"]),
    ("empty query", "queries.jsonl", 2, b'{"_id": "q2", "text": ""}', "train", ["queries.jsonl:2", 'field "text" is empty']),
    ("duplicate query id", "queries.jsonl", 2, b'{"_id": "q1", "text": "x"}', "train", ["queries.jsonl:2", "duplicate query id"]),
    ("non-utf8", "queries.jsonl", 3, b'{"_id": "q3", "text": "caf\xe9"}', "train", ["queries.jsonl:3", "not UTF-8"]),
    ("qrels unknown doc", "qrels/train.tsv", 2, b"q1\tnope\t1", "train", ["train.tsv:2", '"nope" is not in corpus.jsonl']),
    ("qrels unknown query", "qrels/train.tsv", 3, b"qx\td2\t1", "train", ["train.tsv:3", '"qx" is not in queries.jsonl']),
    ("qrels bad score", "qrels/train.tsv", 2, b"q1\td3\thigh", "train", ["train.tsv:2", "not a number"]),
    ("qrels columns", "qrels/train.tsv", 2, b"q1 d3 1", "train", ["train.tsv:2", "3 tab-separated columns"]),
    ("qrels duplicate", "qrels/train.tsv", 3, b"q1\td3\t1", "train", ["train.tsv:3", "duplicate judgement"]),
    ("missing split", None, 0, None, "dev", ['split "dev" does not exist', "test, train"]),
]


@pytest.mark.parametrize("name,file,lineno,new,split,needles", CASES, ids=[c[0] for c in CASES])
def test_bad_input_message(tmp_path, name, file, lineno, new, split, needles):
    folder = write_beir(tmp_path / "bad")
    if file:
        corrupt_line(folder / file, lineno, new)
    with pytest.raises(HardnegError) as info:
        load_beir(folder, split)
    msg = info.value.one_line()
    assert "\n" not in msg and "Fix:" in msg
    for n in needles:
        assert n in msg, msg


def test_empty_corpus_and_missing_folder(tmp_path):
    folder = write_beir(tmp_path / "e")
    (folder / "corpus.jsonl").write_text("\n\n")
    with pytest.raises(HardnegError, match="the corpus is empty"):
        load_beir(folder, "train")
    with pytest.raises(HardnegError, match="data folder not found"):
        load_beir(tmp_path / "nope", "train")


def test_overlong_line_is_refused_without_reading_it_all(tmp_path, monkeypatch):
    import hardneg.data.jsonl as jl

    folder = write_beir(tmp_path / "long")
    with open(folder / "corpus.jsonl", "a") as fh:
        fh.write(json.dumps({"_id": "big", "text": "x" * 5000}) + "\n")
    monkeypatch.setattr(jl, "MAX_LINE_BYTES", 1024)
    with pytest.raises(HardnegError, match=r"corpus.jsonl:9: line is longer than"):
        load_beir(folder, "train")


def test_dataset_carries_its_source(tmp_path):
    """A loaded dataset says where it came from (kind, the --data argument, the resolved path, its manifest);
    parts of it keep the parent's source, and the source takes no part in equality (cache keys hash contents)."""
    from dataclasses import replace

    from conftest import write_beir
    from hardneg.data.load import load_dataset
    from hardneg.data.splits import carve_dev
    from hardneg.data.thin import thin_dataset
    from hardneg.types import DataSource

    src = write_beir(tmp_path / "tiny")
    ds = load_dataset(src, "train")
    assert ds.source == DataSource("beir", str(src), str(src), None)
    train, dev = carve_dev(ds, 0.5, 0)
    assert train.source == dev.source == ds.source
    assert replace(ds, source=None) == ds  # not part of equality

    thin_dataset(src, tmp_path / "k1", keep=1)
    assert load_dataset(tmp_path / "k1", "train").source.manifest == "hidden.json"

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"query": "a cat", "pos": ["cats purr"]}\n')
    p = load_dataset(pairs, "train").source
    assert (p.kind, p.path, p.manifest) == ("pairs-jsonl", str(pairs), None)
    assert p.to_dict() == {"kind": "pairs-jsonl", "descriptor": str(pairs), "path": str(pairs), "manifest": None}
