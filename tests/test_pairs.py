"""Pairs input: JSONL texts, JSONL ids into a corpus, a local Hugging Face dataset, and their errors."""
from __future__ import annotations

import json

import pytest

from conftest import run_cli, write_beir
from hardneg.data.load import load_dataset
from hardneg.data.pairs import text_id
from hardneg.errors import HardnegError


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_text_pairs_build_a_corpus_and_merge_repeated_queries(tmp_path):
    p = _jsonl(tmp_path / "pairs.jsonl", [
        {"query": "what do cats eat", "pos": ["cats eat fish"], "neg": ["dogs bark"]},
        {"query": "why do dogs bark", "pos": "dogs bark at strangers"},
        {"query": "what do cats eat", "pos": ["cat food"]},
    ])
    ds = load_dataset(p, "train")
    assert ds.queries.texts == ("what do cats eat", "why do dogs bark")
    assert set(ds.corpus.texts) == {"cats eat fish", "dogs bark", "dogs bark at strangers", "cat food"}
    assert ds.qrels["q0"] == {text_id("cats eat fish"): 1, text_id("cat food"): 1}  # merged, neg not a positive


def test_id_pairs_refer_to_a_corpus(tmp_path):
    beir = write_beir(tmp_path / "b")
    p = _jsonl(tmp_path / "ids.jsonl", [{"qid": "x1", "query": "cats", "pos": ["d1", "d3"]}])
    ds = load_dataset(p, "train", corpus=beir / "corpus.jsonl")
    assert len(ds.corpus) == 8 and ds.qrels == {"x1": {"d1": 1, "d3": 1}}
    bad = _jsonl(tmp_path / "bad.jsonl", [{"query": "cats", "pos": ["nope"]}])
    with pytest.raises(HardnegError, match=r'bad.jsonl:1: document id "nope" is not in the corpus'):
        load_dataset(bad, "train", corpus=beir / "corpus.jsonl")


@pytest.mark.parametrize("row,needle", [({"pos": ["x"]}, 'missing field "query"'),
                                         ({"query": "q"}, 'missing field "pos"'),
                                         ({"query": "q", "pos": [1.5]}, "must be a list of strings"),
                                         ({"query": "q", "pos": []}, 'field "pos" is empty'),
                                         ({"query": "q", "pos": [""]}, "empty entry")])
def test_bad_pairs(tmp_path, row, needle):
    with pytest.raises(HardnegError, match=needle):
        load_dataset(_jsonl(tmp_path / "p.jsonl", [{"query": "ok", "pos": ["a"]}, row]), "train")


def test_hf_dataset_from_disk_and_mining_it(tmp_path, capsys):
    import datasets

    folder = tmp_path / "hfds"
    datasets.Dataset.from_dict({"anchor": ["what do cats eat", "why do dogs bark", "where do birds fly"],
                                "positive": ["cats eat fish", "dogs bark at strangers", "birds fly south"],
                                "negative": ["birds sing", "cats sleep", "fish swim"]}).save_to_disk(str(folder))
    ds = load_dataset(f"hf:{folder}", "train")
    assert len(ds.queries) == 3 and len(ds.corpus) == 6
    code, _, err = run_cli(["mine", "--data", f"hf:{folder}", "--out", str(tmp_path / "o"), "--teacher", "hash",
                            "-s", "topk(2)", "-q", "--cache", str(tmp_path / "c")], capsys)
    assert code == 0, err
    rows = [json.loads(x) for x in (tmp_path / "o" / "topk-2" / "mined.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(len(r["neg"]) == 2 for r in rows)
    code, _, err = run_cli(["mine", "--data", "hf:" + str(tmp_path / "missing"), "--out", str(tmp_path / "o2"),
                            "--teacher", "hash", "-s", "topk(2)", "-q", "--cache", str(tmp_path / "c")], capsys)
    assert code == 2 and "cannot load Hugging Face dataset" in " ".join(err.split())
