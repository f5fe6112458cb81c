"""`hardneg mine` end to end with the deterministic hash teacher: outputs, cache, determinism, bad input."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli

STRATS = ["percpos(0.95)+topk(2)", "topk(2)", "shift(1)+topk(2)", "sampled(4,2)", "percpos(0.95,ref=row)+topk(2)"]


def _mine(capsys, data: Path, out: Path, cache: Path, *extra: str, seed: int = 0):
    args = ["mine", "--data", str(data), "--out", str(out), "--teacher", "hash", "--cache", str(cache), "--depth", "5",
            "--seed", str(seed), "-q"]
    for s in STRATS:
        args += ["-s", s]
    return run_cli(args + list(extra), capsys)


def _files(folder: Path) -> dict[str, bytes]:
    """Every file but config.resolved.json (it records the --out and --cache paths, which differ by design)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "config.resolved.json"}


def test_mine_writes_project_rows(tiny_beir, tmp_path, capsys):
    code, out, err = _mine(capsys, tiny_beir, tmp_path / "out", tmp_path / "cache", "--export", "all")
    assert code == 0, err
    rows = [json.loads(x) for x in (tmp_path / "out" / "topk-2" / "mined.jsonl").read_text().splitlines()]
    # train qrels: q1 -> d3; q2 -> d2, d6; q3 -> d1, d7 (d5 judged 0): one row per positive.
    assert [(r["qid"], r["pos"]["docid"]) for r in rows] == [("q1", "d3"), ("q2", "d2"), ("q2", "d6"),
                                                                ("q3", "d1"), ("q3", "d7")]
    for r in rows:
        positives = {"q1": {"d3"}, "q2": {"d2", "d6"}, "q3": {"d1", "d7"}}[r["qid"]]
        assert len(r["neg"]) == 2 and not positives & {n["docid"] for n in r["neg"]}
        assert [n["score"] for n in r["neg"]] == sorted((n["score"] for n in r["neg"]), reverse=True)
        assert set(r["neg"][0]) == {"docid", "text", "score", "rank"}
    # rows of one query share negatives under ref=min
    assert rows[1]["neg"] == rows[2]["neg"]
    stats = json.loads((tmp_path / "out" / "topk-2" / "stats.json").read_text())
    assert stats["rows"] == 5 and stats["rows_full"] == 5
    for f in ("st.jsonl", "flag.jsonl", "triplets.jsonl", "st/state.json"):
        assert (tmp_path / "out" / "topk-2" / f).is_file()
    st = [json.loads(x) for x in (tmp_path / "out" / "topk-2" / "st.jsonl").read_text().splitlines()]
    assert list(st[0]) == ["anchor", "positive", "negative_1", "negative_2"]
    assert len((tmp_path / "out" / "topk-2" / "triplets.jsonl").read_text().splitlines()) == 10
    import datasets
    assert datasets.load_from_disk(str(tmp_path / "out" / "topk-2" / "st")).num_rows == 5
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert sorted(summary["strategies"]) == sorted(STRATS)


def test_same_seed_is_byte_identical_and_second_run_hits_the_cache(tiny_beir, tmp_path, capsys, monkeypatch):
    assert _mine(capsys, tiny_beir, tmp_path / "a", tmp_path / "cache", "--export", "all")[0] == 0
    from hardneg.encode import fake

    calls = []
    orig = fake.HashEncoder.encode
    monkeypatch.setattr(fake.HashEncoder, "encode", lambda self, *a, **k: calls.append(1) or orig(self, *a, **k))
    assert _mine(capsys, tiny_beir, tmp_path / "b", tmp_path / "cache", "--export", "all")[0] == 0
    assert calls == []  # pool cache hit: nothing encoded
    assert _mine(capsys, tiny_beir, tmp_path / "c", tmp_path / "cache2", "--export", "all")[0] == 0
    assert calls  # a fresh cache encodes
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert a == b == c


def test_other_seed_changes_only_sampled(tiny_beir, tmp_path, capsys):
    big = tmp_path / "big"
    from conftest import DOCS, QUERIES, write_beir
    # more documents so that sampling from 4 survivors has something to choose
    docs = DOCS + [(f"x{i}", "", f"cats dogs birds fish sleep ball {'cat ' * i}") for i in range(12)]
    write_beir(big, docs=docs, queries=QUERIES)
    _mine(capsys, big, tmp_path / "s0", tmp_path / "cache", seed=0)
    _mine(capsys, big, tmp_path / "s1", tmp_path / "cache", seed=1)
    for s in ["percpos-0.95_topk-2", "topk-2", "shift-1_topk-2"]:
        assert (tmp_path / "s0" / s / "mined.jsonl").read_bytes() == (tmp_path / "s1" / s / "mined.jsonl").read_bytes()
    assert (tmp_path / "s0" / "sampled-4-2" / "mined.jsonl").read_bytes() != (
        tmp_path / "s1" / "sampled-4-2" / "mined.jsonl").read_bytes()


@pytest.mark.parametrize("args,needle", [
    (["-s", "percpos(0.95)"], "must end with a selector"),
    (["-s", "topk(2)", "--depth", "0"], "depth must be >= 1"),
    (["-s", "topk(2)", "--export", "parquet"], "unknown export parquet"),
    (["-s", "topk(2)", "--split", "validation"], 'split "validation" does not exist'),
    (["-s", "topk(2)", "-s", "topk(2)"], "listed twice"),
    (["-s", "topk(2)", "--teacher", "hash:0"], "bad hash encoder dimension"),
])
def test_bad_cli_input_exits_2_without_output(tiny_beir, tmp_path, capsys, args, needle):
    out = tmp_path / "out"
    code, _, err = run_cli(["mine", "--data", str(tiny_beir), "--out", str(out), "--teacher", "hash",
                            "--cache", str(tmp_path / "c"), "-q", *args], capsys)
    assert code == 2
    assert needle in " ".join(err.split()), err
    assert "Traceback" not in err
    assert not out.exists()


def test_output_path_that_is_a_file(tiny_beir, tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    code, _, err = run_cli(["mine", "--data", str(tiny_beir), "--out", str(f), "--teacher", "hash", "-s", "topk(1)",
                            "--cache", str(tmp_path / "c"), "-q"], capsys)
    assert code == 2 and "is an existing file" in " ".join(err.split())
    assert f.read_text() == "x"


def test_several_teachers_fusion_and_ensembles(tiny_beir, tmp_path, capsys):
    out = tmp_path / "multi"
    code, _, err = run_cli(["mine", "--data", str(tiny_beir), "--out", str(out), "--teacher", "hash",
                            "--teacher", "hash:32", "--teacher", "fusion(hash,hash:32)", "--depth", "5", "-q",
                            "--cache", str(tmp_path / "c"), "-s", "topk(2)", "-s", "topk(2)+ensemble(intra,no-dedup)",
                            "-s", "topk(2)+ensemble(cross)"], capsys)
    assert code == 0, err
    for t in ("hash", "hash-32", "fusion-hash-hash-32"):
        assert (out / t / "topk-2" / "mined.jsonl").is_file(), sorted(p.name for p in out.iterdir())
    rows = [json.loads(x) for x in (out / "topk-2_ensemble-intra-no-dedup" / "mined.jsonl").read_text().splitlines()]
    single = {t: [json.loads(x) for x in (out / t / "topk-2" / "mined.jsonl").read_text().splitlines()]
              for t in ("hash", "hash-32", "fusion-hash-hash-32")}
    # intra-sample with 3 teachers and n = 2: slot 1 = teacher 1's top-1, slot 2 = teacher 2's top-1
    for r, a, b in zip(rows, single["hash"], single["hash-32"]):
        assert [n["docid"] for n in r["neg"]] == [a["neg"][0]["docid"], b["neg"][0]["docid"]]
        assert [n["teacher"] for n in r["neg"]] == ["hash", "hash:32"]
    cross = [json.loads(x) for x in (out / "topk-2_ensemble-cross" / "mined.jsonl").read_text().splitlines()]
    for r in cross:  # every row's negatives come from one teacher, equal to that teacher's own mining
        assert len({n["teacher"] for n in r["neg"]}) == 1


def test_ensemble_needs_several_teachers(tiny_beir, tmp_path, capsys):
    code, _, err = run_cli(["mine", "--data", str(tiny_beir), "--out", str(tmp_path / "o"), "--teacher", "hash",
                            "-s", "topk(2)+ensemble(cross)", "-q", "--cache", str(tmp_path / "c")], capsys)
    assert code == 2 and "need several teachers" in " ".join(err.split())
