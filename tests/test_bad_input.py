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


def _manifest(raw: bytes):
    """A BEIR folder whose injected.json (read by `mine` to count traps) holds ``raw``."""
    def setup(tmp: Path) -> list[str]:
        folder = write_beir(tmp / "data")
        (folder / "injected.json").write_bytes(raw)
        return ["mine", "--data", str(folder), "-s", "topk(2)"]
    return setup


def _train(*extra: str):
    return lambda tmp: _mined([GOOD_ROW])(tmp) + list(extra)


DEEP = b"[" * 100_000 + b"]" * 100_000  # far beyond the JSON parser's recursion limit
LONG_INT = b"7" * 5000  # more digits than int() converts (4300 by default)


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
    "qrels nan grade": (_beir_line("qrels/train.tsv", 2, b"q1\td3\tnan"), 'score "nan" is not a finite number'),
    "qrels inf grade": (_beir_line("qrels/train.tsv", 2, b"q1\td3\tinf"), 'score "inf" is not a finite number'),
    "qrels -inf grade": (_beir_line("qrels/train.tsv", 3, b"q2\td2\t-Infinity"), "not a finite number"),
    "qrels 1e999 grade": (_beir_line("qrels/train.tsv", 2, b"q1\td3\t1e999"), 'score "1e999" is not a finite'),
    "qrels huge grade": (_beir_line("qrels/train.tsv", 2, b"q1\td3\t1e300"), "outside [-1,000,000, 1,000,000]"),
    "qrels 5000-digit grade": (_beir_line("qrels/train.tsv", 2, b"q1\td3\t" + LONG_INT), "not a finite number"),
    # JSON that json.loads rejects with something other than JSONDecodeError, or accepts but cannot be used
    "corpus nested 100000 deep": (_beir_line("corpus.jsonl", 2, b'{"_id": "d2", "text": "x", "metadata": ' + DEEP
                                             + b"}"), "corpus.jsonl:2: JSON nested too deeply"),
    "queries nested 100000 deep": (_beir_line("queries.jsonl", 1, b'{"_id": "q1", "text": ' + DEEP + b"}"),
                                   "queries.jsonl:1: JSON nested too deeply"),
    "corpus 5000-digit id": (_beir_line("corpus.jsonl", 2, b'{"_id": ' + LONG_INT + b', "text": "x"}'),
                             "corpus.jsonl:2: unreadable JSON number"),
    "queries 5000-digit metadata": (_beir_line("queries.jsonl", 2, b'{"_id": "q2", "text": "x", "metadata": {"n": '
                                               + LONG_INT + b"}}"), "queries.jsonl:2: unreadable JSON number"),
    "corpus lone surrogate": (_beir_line("corpus.jsonl", 2, b'{"_id": "d2", "text": "dogs \\ud800 bark"}'),
                              "corpus.jsonl:2: a string holds the lone surrogate \\ud800"),
    "corpus lone low surrogate in title": (_beir_line("corpus.jsonl", 3, b'{"_id": "d3", "title": "\\uDC00", '
                                                      b'"text": "x"}'), "lone surrogate \\udc00"),
    "corpus lone surrogate in an id": (_beir_line("corpus.jsonl", 4, b'{"_id": "d\\ud83d", "text": "x"}'),
                                       "corpus.jsonl:4: a string holds the lone surrogate"),
    "queries lone surrogate": (_beir_line("queries.jsonl", 3, b'{"_id": "q3", "text": "sleep \\udfff"}'),
                               "queries.jsonl:3: a string holds the lone surrogate \\udfff"),
    "queries reversed surrogate pair": (_beir_line("queries.jsonl", 2, b'{"_id": "q2", "text": "\\ude00\\ud83d"}'),
                                        "lone surrogate"),
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
    "depth 1e9": (_mine_args("-s", "topk(2)", "--depth", "1000000000"), "depth must be <= 100,000"),
    "depth just above the bound": (_mine_args("-s", "topk(2)", "--depth", "100001"), "depth must be <= 100,000"),
    "depth inf": (_mine_args("-s", "topk(2)", "--depth", "inf"), "Invalid value for '--depth'"),
    # encoder sizes and seeds that would exhaust memory or wrap around
    "hash dim 1e10": (_mine_args("-s", "topk(2)", "--teacher", "hash:10000000000"), "takes 1 to 65,536"),
    "hash dim 1e6": (_mine_args("-s", "topk(2)", "--teacher", "hash:1000000"), "takes 1 to 65,536"),
    "encode batch 1e12": (_mine_args("-s", "topk(2)", "--batch-size", "1000000000000"), "batch_size must be"),
    "encode batch 0": (_mine_args("-s", "topk(2)", "--batch-size", "0"), "batch_size must be"),
    "max seq length 1e11": (_mine_args("-s", "topk(2)", "--max-seq-length", "99999999999"), "max_seq_length must"),
    "mine seed -1": (_mine_args("-s", "topk(2)", "--seed", "-1"), "seed must be an integer from 0"),
    "mine seed 2**64": (_mine_args("-s", "topk(2)", "--seed", str(2 ** 64)), "seed must be an integer from 0"),
    "unknown precision": (_mine_args("-s", "topk(2)", "--precision", "fp8"), "precision must be one of"),
    "unknown search backend": (_mine_args("-s", "topk(2)", "--search", "annoy"), "must be one of exact"),
    "missing option": (lambda tmp: ["mine", "--data", str(write_beir(tmp / "data"))], "Missing option"),
    "unknown command": (lambda tmp: ["mien"], "No such command"),
    "strategy topk 1e9": (_mine_args("-s", "topk(1000000000)"), "n must be <= 100,000"),
    "strategy topk 1e9 written as a float": (_mine_args("-s", "topk(1e9)"), "n must be a whole number"),
    "strategy sampled k 1e9": (_mine_args("-s", "sampled(1000000000,4)"), "k must be <= 100,000"),
    "strategy top1 sampled n 1e9": (_mine_args("-s", "top1+sampled(10,1000000000)"), "n must be <= 100,000"),
    "strategy shift 5000 digits": (_mine_args("-s", "shift(" + "9" * 5000 + ")+topk(2)"),
                                   "N must be <= 100,000, got a 5000-digit number"),
    "strategy abs 1e999": (_mine_args("-s", "abs(1e999)+topk(2)"), "threshold must be finite"),
    "strategy temperature inf": (_mine_args("-s", "sampled(4,2,inf)"), "temperature must be finite"),
    "unknown export": (_mine_args("-s", "topk(2)", "--export", "csv"), "unknown export csv"),
    "bad storage dtype": (_mine_args("-s", "topk(2)", "--dtype", "int8"), "dtype must be one of"),
    "output folder is a file": (_out_is_file, "is an existing file"),
    # pairs files
    "pairs missing pos": (_pairs(['{"query": "cats"}']), 'missing field "pos"'),
    "pairs malformed": (_pairs(['{"query": "cats", "pos": ["x"]}', '{"query": ']), "pairs.jsonl:2"),
    "pairs non-utf8": (_pairs([b'{"query": "caf\xe9", "pos": ["x"]}']), "not UTF-8"),
    "pairs lone surrogate": (_pairs(['{"query": "cats", "pos": ["x \\ud800"]}']),
                             "pairs.jsonl:1: a string holds the lone surrogate"),
    "pairs nested": (_pairs([b'{"query": "cats", "pos": ' + DEEP + b"}"]), "pairs.jsonl:1: JSON nested too deeply"),
    # injected.json (read by mine to count the known false negatives)
    "manifest nested": (_manifest(DEEP), "injected.json: JSON nested too deeply"),
    "manifest lone surrogate": (_manifest(b'{"format": 1, "docs": [{"id": "\\ud800"}]}'),
                                "injected.json: a string holds the lone surrogate"),
    "manifest 5000-digit number": (_manifest(b'{"format": ' + LONG_INT + b"}"), "unreadable JSON number"),
    # mined files given to train
    "mined missing pos": (_mined([{k: v for k, v in GOOD_ROW.items() if k != "pos"}]), 'missing field "pos"'),
    "mined nan score": (_mined([], raw=json.dumps(GOOD_ROW).replace("0.4", "NaN").encode() + b"\n"), "finite number"),
    "mined inf score": (_mined([], raw=json.dumps(GOOD_ROW).replace("0.5", "Infinity").encode() + b"\n"),
                        "finite number"),
    "mined neg not a list": (_mined([{**GOOD_ROW, "neg": "d2"}]), '"neg" must be a list'),
    "mined positive as negative": (_mined([{**GOOD_ROW, "neg": [{**GOOD_ROW["neg"][0], "docid": "d1"}]}]),
                                   "own positive"),
    "mined empty file": (_mined([], raw=b"\n"), "no rows"),
    "mined lone surrogate": (_mined([], raw=json.dumps(GOOD_ROW).replace("dogs", "\\udbff").encode() + b"\n"),
                             "mined.jsonl:1: a string holds the lone surrogate \\udbff"),
    "mined nested": (_mined([], raw=json.dumps(GOOD_ROW).encode()[:-1] + b', "extra": ' + DEEP + b"}\n"),
                     "mined.jsonl:1: JSON nested too deeply"),
    "mined 5000-digit score": (_mined([], raw=json.dumps(GOOD_ROW).replace("0.4", "7" * 5000).encode() + b"\n"),
                               "unreadable JSON number"),
    "mined score beyond float range": (_mined([], raw=json.dumps(GOOD_ROW).replace("0.5", "9" * 400).encode()
                                              + b"\n"), "pos score must be a finite number or null, got a huge"),
    "mined score 1e999": (_mined([], raw=json.dumps(GOOD_ROW).replace("0.4", "1e999").encode() + b"\n"),
                          "neg[0] score must be a finite number"),
    "mined score a string": (_mined([{**GOOD_ROW, "pos": {**GOOD_ROW["pos"], "score": "0.5"}}]),
                             "pos score must be a finite number or null, got '0.5'"),
    "mined rank a string": (_mined([{**GOOD_ROW, "neg": [{**GOOD_ROW["neg"][0], "rank": "first"}]}]),
                            "neg[0] rank must be an integer or null"),
    "mined rank a float": (_mined([{**GOOD_ROW, "neg": [{**GOOD_ROW["neg"][0], "rank": 1.5}]}]),
                           "neg[0] rank must be an integer or null"),
    "train bad temperature": (lambda tmp: _mined([GOOD_ROW])(tmp) + ["--temperature", "0"], "temperature"),
    "train bad loss": (lambda tmp: _mined([GOOD_ROW])(tmp) + ["--loss", "triplet"], "loss"),
    "train epochs 1e9": (_train("--epochs", "1e9"), "epochs=1000000000.0: must be a number > 0 and <= 1,000"),
    "train epochs inf": (_train("--epochs", "inf"), "epochs=inf: must be a number > 0 and <= 1,000"),
    "train epochs nan": (_train("--epochs", "nan"), "epochs=nan"),
    "train learning rate nan": (_train("--learning-rate", "nan"), "learning_rate=nan: must be a finite number"),
    "train learning rate inf": (_train("--learning-rate", "inf"), "learning_rate=inf"),
    "train learning rate zero": (_train("--learning-rate", "0"), "learning_rate=0.0"),
    "train learning rate negative": (_train("--learning-rate", "-0.001"), "learning_rate=-0.001"),
    "train max steps 1e12": (_train("--max-steps", "1000000000000"), "max_steps=1000000000000: must be an integer"),
    "train batch size 1e9": (_train("--batch-size", "1000000000"), "batch_size=1000000000"),
    "train mini batch size 1e9": (_train("--mini-batch-size", "1000000000"), "mini_batch_size=1000000000"),
    "train grad accum 1e9": (_train("--grad-accum", "1000000000"), "grad_accum=1000000000"),
    "train n negatives 1e9": (_train("--n-negatives", "1000000000"), "n_negatives=1000000000"),
    "train doc max length 1e9": (_train("--doc-max-length", "1000000000"), "doc_max_length=1000000000"),
    "train seed 2**32": (_train("--seed", str(2 ** 32)), "seed=4294967296"),
    "train warmup ratio nan": (_train("--warmup-ratio", "nan"), "warmup_ratio=nan"),
    # configs
    "config missing file": (lambda tmp: ["run", str(tmp / "none.toml")], "config file not found"),
    "config bad toml": (_config("[data\npath = 1"), "invalid TOML"),
    "config unknown section": (_config('[data]\npath = "DATA"\n[trian]\nepochs = 1\n'), "unknown section [trian]"),
    "config bad values": (_config('[data]\npath = "DATA"\n[train]\nepochs = 0\nbatch_size = "big"\n'), "batch_size"),
    "config bad override": (_config('[data]\npath = "DATA"\n', "epochs=2"), "bad override"),
    "config non-utf8": (lambda tmp: ((tmp / "c.toml").write_bytes(b"[data]\npath = '\xff'\n"),
                                     ["run", str(tmp / "c.toml")])[-1], "not UTF-8"),
    "config 5000-digit integer": (_config('[data]\npath = "DATA"\n[train]\nseed = ' + "7" * 5000 + "\n"),
                                  "invalid TOML (Exceeds the limit"),
    "config nested 100000 deep": (_config('[data]\npath = "DATA"\n[train]\nreport_to = ' + "[" * 100_000 + "\n"),
                                  "invalid TOML (arrays or tables nested too deeply)"),
    "config epochs 1e9": (_config('[data]\npath = "DATA"\n[train]\nepochs = 1e9\n'), "epochs=1000000000.0"),
    "config epochs inf": (_config('[data]\npath = "DATA"\n[train]\nepochs = inf\n'), "epochs=inf"),
    "config epochs 400-digit integer": (_config('[data]\npath = "DATA"\n[train]\nepochs = ' + "9" * 400 + "\n"),
                                        "epochs=a huge integer: must be a number > 0 and <= 1,000"),
    "config learning rate nan": (_config('[data]\npath = "DATA"\n[train]\nlearning_rate = nan\n'),
                                 "learning_rate=nan"),
    "config max steps 1e12": (_config('[data]\npath = "DATA"\n[train]\nmax_steps = 1000000000000\n'),
                              "max_steps=1000000000000"),
    "config mine depth 1e9": (_config('[data]\npath = "DATA"\n[mine]\ndepth = 1000000000\n'),
                              "depth must be <= 100,000"),
    "config mine depth inf": (_config('[data]\npath = "DATA"\n[mine]\ndepth = inf\n'),
                              "depth=inf: depth must be a whole number"),
    "config mine topk 1e9": (_config('[data]\npath = "DATA"\n[mine]\nstrategy = "topk(1000000000)"\n'),
                             "n must be <= 100,000"),
    "config evaluate depth 1e9": (_config('[data]\npath = "DATA"\n[evaluate]\ndepth = 1000000000\n'),
                                  "depth=1000000000: must be an integer >= 1 and <= 100,000"),
    "config evaluate batch size 1e9": (_config('[data]\npath = "DATA"\n[evaluate]\nbatch_size = 1000000000\n'),
                                       "batch_size=1000000000"),
    "config override epochs inf": (_config('[data]\npath = "DATA"\n', "train.epochs=inf"), "epochs=inf"),
    "config override 5000-digit seed": (_config('[data]\npath = "DATA"\n', "train.seed=" + "7" * 5000),
                                        "seed='777"),
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


def _mine(data: Path, out: Path, cache: Path, capsys, *extra: str) -> tuple[int, str, str]:
    return run_cli(["mine", "--data", str(data), "--out", str(out), "--cache", str(cache), "--teacher", "hash",
                    "-s", "topk(3)", "-s", "sampled(4,2)", "-q", *extra], capsys)


def test_byte_order_marks_are_accepted(tmp_path, capsys):
    """A UTF-8 BOM before the qrels header and before the first JSON line (as Windows editors write) is skipped:
    the run succeeds and mines exactly what the same files without the BOM give."""
    plain = write_beir(tmp_path / "plain")
    bom = write_beir(tmp_path / "bom")
    for rel in ("qrels/train.tsv", "corpus.jsonl", "queries.jsonl"):
        (bom / rel).write_bytes(b"\xef\xbb\xbf" + (bom / rel).read_bytes())
    assert (bom / "qrels/train.tsv").read_bytes().startswith(b"\xef\xbb\xbfquery-id\t")
    code, _, err = _mine(plain, tmp_path / "out-plain", tmp_path / "cache", capsys)
    assert code == 0, err
    code, _, err = _mine(bom, tmp_path / "out-bom", tmp_path / "cache", capsys)
    assert code == 0, err
    for strategy in ("topk-3", "sampled-4-2"):
        got = (tmp_path / "out-bom" / strategy / "mined.jsonl").read_bytes()
        assert got == (tmp_path / "out-plain" / strategy / "mined.jsonl").read_bytes()
        assert got.count(b"\n") == 5  # one row per (query, positive > 0) of the train qrels: q1, q2 x2, q3 x2
    # ids are read without the BOM: "d1" (first line of corpus.jsonl) and "q1" are found by the qrels
    assert b'"qid": "q1"' in (tmp_path / "out-bom" / "topk-3" / "mined.jsonl").read_bytes()


def test_byte_order_mark_before_a_toml_config_is_accepted(tmp_path):
    from hardneg.experiments.config import load_config

    p = tmp_path / "c.toml"
    p.write_bytes(b"\xef\xbb\xbf[train]\nepochs = 2\n")
    assert load_config(p).train.epochs == 2.0


def test_depth_beyond_the_corpus_is_clamped_to_it(tmp_path, capsys):
    """--depth 1000 on a 5-document corpus succeeds; the candidate pool holds 5 columns (not 1000 of padding), and
    --depth 5 finds the very same cached pool and mines the same rows."""
    docs = [("d1", "Cats", "cats purr"), ("d2", "Dogs", "dogs bark"), ("d3", "Fish", "fish swim"),
            ("d4", "Birds", "birds fly"), ("d5", "", "cats and dogs")]
    qrels = {"train": [("q1", "d1", 1), ("q2", "d2", 1), ("q2", "d5", 1)]}
    data = write_beir(tmp_path / "data", docs=docs, queries=[("q1", "cats"), ("q2", "dogs")], qrels=qrels)
    code, _, err = _mine(data, tmp_path / "deep", tmp_path / "cache", capsys, "--depth", "1000")
    assert code == 0, err
    pools = sorted((tmp_path / "cache" / "pools").iterdir())
    assert len(pools) == 1
    meta = json.loads((pools[0] / "pool.json").read_text())
    assert meta["meta"]["depth"] == 5 and meta["meta"]["n_docs"] == 5
    import numpy as np

    cand = np.load(pools[0] / "cand_idx.npy")
    assert cand.shape == (2, 5)
    # q1 has 4 non-positive candidates (d2..d5), q2 has 3 (d1, d3, d4): the rest of each row is -1 padding.
    assert sorted(cand[0][cand[0] >= 0].tolist()) == [1, 2, 3, 4]
    assert sorted(cand[1][cand[1] >= 0].tolist()) == [0, 2, 3]
    assert (cand[1] == -1).sum() == 2
    mine_cfg = json.loads((tmp_path / "deep" / "mine_config.json").read_text())
    assert mine_cfg["depth"] == 1000  # the run's settings still say what was asked
    code, _, err = _mine(data, tmp_path / "shallow", tmp_path / "cache", capsys, "--depth", "5")
    assert code == 0, err
    assert len(list((tmp_path / "cache" / "pools").iterdir())) == 1  # the same pool, from the cache
    for strategy in ("topk-3", "sampled-4-2"):
        assert (tmp_path / "deep" / strategy / "mined.jsonl").read_bytes() == \
            (tmp_path / "shallow" / strategy / "mined.jsonl").read_bytes()
