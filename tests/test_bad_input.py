"""The bad-input suite: every entry point, each case one line on stderr naming what/where/fix, exit code 2,
no traceback and no output left behind. Cases are listed in CASES (id -> setup)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import corrupt_line, run_cli, write_beir

GOOD_ROW = {"qid": "q1", "query": "cats", "pos": {"docid": "d1", "text": "cats purr", "score": 0.5},
            "neg": [{"docid": "d2", "text": "dogs", "score": 0.4, "rank": 1}]}


def _beir_line(file: str, lineno: int, new: bytes | None):
    def setup(tmp: Path) -> list[str]:
        folder = write_beir(tmp / "data")
        corrupt_line(folder / file, lineno, new)
        return ["mine", "--data", str(folder), "-s", "topk(2)"]
    return setup


def _mine_args(*extra: str):
    def setup(tmp: Path) -> list[str]:
        return ["mine", "--data", str(write_beir(tmp / "data")), *extra]
    return setup


def _pairs(lines: list[str | bytes]):
    def setup(tmp: Path) -> list[str]:
        p = tmp / "pairs.jsonl"
        p.write_bytes(b"\n".join(x if isinstance(x, bytes) else x.encode() for x in lines) + b"\n")
        return ["mine", "--data", str(p), "-s", "topk(1)"]
    return setup


def _mined(rows: list, raw: bytes | None = None):
    def setup(tmp: Path) -> list[str]:
        p = tmp / "mined.jsonl"
        p.write_bytes(raw if raw is not None else "".join(json.dumps(r) + "\n" for r in rows).encode())
        return ["train", "--mined", str(p)]
    return setup


def _config(text: str, *over: str):
    def setup(tmp: Path) -> list[str]:
        p = tmp / "cfg.toml"
        p.write_text(text.replace("DATA", str(write_beir(tmp / "data"))))
        return ["run", str(p), *over]
    return setup


def _big_line(tmp: Path) -> list[str]:
    folder = write_beir(tmp / "data")
    with open(folder / "corpus.jsonl", "ab") as fh:
        fh.write(b'{"_id": "huge", "text": "' + b"x" * (50 * 1024 * 1024) + b'"}\n')
    return ["mine", "--data", str(folder), "-s", "topk(2)"]


def _out_is_file(tmp: Path) -> list[str]:
    (tmp / "out").write_text("i am a file")
    return ["mine", "--data", str(write_beir(tmp / "data")), "-s", "topk(1)"]


CASES = {
    # BEIR folders
    "corpus malformed json": (_beir_line("corpus.jsonl", 2, b'{"_id": "d2", "text": '), "corpus.jsonl:2"),
    "corpus missing _id": (_beir_line("corpus.jsonl", 2, b'{"text": "x"}'), 'missing field "_id"'),
    "corpus text wrong type": (_beir_line("corpus.jsonl", 2, b'{"_id": "d2", "text": 3.5}'), "must be a string"),
    "corpus duplicate id": (_beir_line("corpus.jsonl", 3, b'{"_id": "d1", "text": "x"}'), "duplicate document id"),
    "corpus empty doc": (_beir_line("corpus.jsonl", 3, b'{"_id": "d3", "text": ""}'), "empty title and text"),
    "corpus non-utf8": (_beir_line("corpus.jsonl", 4, b'{"_id": "d4", "text": "\xff\xfe"}'), "not UTF-8"),
    "corpus 50 MB line": (_big_line, "line is longer than"),
    "queries empty text": (_beir_line("queries.jsonl", 1, b'{"_id": "q1", "text": " "}'), 'field "text" is empty'),
    "queries duplicate id": (_beir_line("queries.jsonl", 2, b'{"_id": "q1", "text": "x"}'), "duplicate query id"),
    "queries json array": (_beir_line("queries.jsonl", 2, b'[1, 2]'), "expected a JSON object"),
    "qrels unknown doc": (_beir_line("qrels/train.tsv", 2, b"q1\tzzz\t1"), '"zzz" is not in corpus.jsonl'),
    "qrels unknown query": (_beir_line("qrels/train.tsv", 2, b"qzz\td1\t1"), '"qzz" is not in queries.jsonl'),
    "qrels non-integer grade": (_beir_line("qrels/train.tsv", 2, b"q1\td3\t0.5"), "not an integer grade"),
    "qrels two columns": (_beir_line("qrels/train.tsv", 2, b"q1\td3"), "3 tab-separated columns"),
    "missing split": (_mine_args("-s", "topk(1)", "--split", "dev"), 'split "dev" does not exist'),
    "nonexistent data path": (lambda tmp: ["mine", "--data", str(tmp / "nope"), "-s", "topk(1)"], "not found"),
    "empty corpus": (lambda tmp: (write_beir(tmp / "data"), (tmp / "data" / "corpus.jsonl").write_text(""),
                                  ["mine", "--data", str(tmp / "data"), "-s", "topk(1)"])[-1], "corpus is empty"),
    # strategy strings and CLI options
    "strategy no selector": (_mine_args("-s", "percpos(0.95)"), "must end with a selector"),
    "strategy unknown method": (_mine_args("-s", "best(4)"), 'unknown method "best"'),
    "strategy percpos zero": (_mine_args("-s", "percpos(0)+topk(4)"), "p must be > 0"),
    "strategy nan": (_mine_args("-s", "marginpos(nan)+topk(4)"), "must be finite"),
    "strategy sampled n > k": (_mine_args("-s", "sampled(3,5)"), "must be <= k"),
    "strategy bad ref": (_mine_args("-s", "percpos(0.9,ref=median)+topk(4)"), "ref must be one of"),
    "ensemble with one teacher": (_mine_args("-s", "topk(2)+ensemble(intra,dedup)", "--teacher", "hash"),
                                  "need several teachers"),
    "bad fusion teacher": (_mine_args("-s", "topk(2)", "--teacher", "fusion(hash)"), "bad fusion teacher"),
    "depth zero": (_mine_args("-s", "topk(2)", "--depth", "0"), "depth must be >= 1"),
    "unknown export": (_mine_args("-s", "topk(2)", "--export", "csv"), "unknown export csv"),
    "bad storage dtype": (_mine_args("-s", "topk(2)", "--dtype", "int8"), "dtype must be one of"),
    "output folder is a file": (_out_is_file, "is an existing file"),
    # pairs files
    "pairs missing pos": (_pairs(['{"query": "cats"}']), 'missing field "pos"'),
    "pairs malformed": (_pairs(['{"query": "cats", "pos": ["x"]}', '{"query": ']), "pairs.jsonl:2"),
    "pairs non-utf8": (_pairs([b'{"query": "caf\xe9", "pos": ["x"]}']), "not UTF-8"),
    # mined files given to train
    "mined missing pos": (_mined([{k: v for k, v in GOOD_ROW.items() if k != "pos"}]), 'missing field "pos"'),
    "mined nan score": (_mined([], raw=json.dumps(GOOD_ROW).replace("0.4", "NaN").encode() + b"\n"), "finite number"),
    "mined inf score": (_mined([], raw=json.dumps(GOOD_ROW).replace("0.5", "Infinity").encode() + b"\n"),
                        "finite number"),
    "mined neg not a list": (_mined([{**GOOD_ROW, "neg": "d2"}]), '"neg" must be a list'),
    "mined positive as negative": (_mined([{**GOOD_ROW, "neg": [{**GOOD_ROW["neg"][0], "docid": "d1"}]}]),
                                   "own positive"),
    "mined empty file": (_mined([], raw=b"\n"), "no rows"),
    "train bad temperature": (lambda tmp: _mined([GOOD_ROW])(tmp) + ["--temperature", "0"], "temperature"),
    "train bad loss": (lambda tmp: _mined([GOOD_ROW])(tmp) + ["--loss", "triplet"], "loss"),
    # configs
    "config missing file": (lambda tmp: ["run", str(tmp / "none.toml")], "config file not found"),
    "config bad toml": (_config("[data\npath = 1"), "invalid TOML"),
    "config unknown section": (_config('[data]\npath = "DATA"\n[trian]\nepochs = 1\n'), "unknown section [trian]"),
    "config bad values": (_config('[data]\npath = "DATA"\n[train]\nepochs = 0\nbatch_size = "big"\n'), "batch_size"),
    "config bad override": (_config('[data]\npath = "DATA"\n', "epochs=2"), "bad override"),
    "config non-utf8": (lambda tmp: ((tmp / "c.toml").write_bytes(b"[data]\npath = '\xff'\n"),
                                     ["run", str(tmp / "c.toml")])[-1], "not UTF-8"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input(case, tmp_path, capsys):
    setup, needle = CASES[case]
    args = setup(tmp_path)
    if args[0] in ("mine", "train"):
        args += ["--out", str(tmp_path / "out")]
    if args[0] == "mine":
        args += ["--cache", str(tmp_path / "cache")] + ([] if "--teacher" in args else ["--teacher", "hash"])
    code, out, err = run_cli(args + ["-q"], capsys)
    msg = err.strip()
    assert code == 2, (code, err)
    assert "Traceback" not in err
    assert needle in msg, msg
    assert msg.startswith("error:") and "Fix:" in msg
    assert len(msg.splitlines()) == 1, msg
    out_path = tmp_path / "out"
    if case == "output folder is a file":
        assert out_path.read_text() == "i am a file"
    else:
        assert not out_path.exists()  # nothing half-written


def test_there_are_at_least_30_cases():
    assert len(CASES) >= 30
