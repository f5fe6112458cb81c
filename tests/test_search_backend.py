"""The search backend is reachable from the CLI and configs, keyed apart from exact, and exact keys are unchanged."""
from __future__ import annotations

import pytest

from conftest import run_cli, write_beir
from hardneg.errors import HardnegError
from hardneg.search.spec import SearchSpec

pytest.importorskip("faiss")


def test_parse_round_trip_and_validation():
    s = SearchSpec.parse("faiss-ivf:nlist=64,nprobe=8")
    assert s == SearchSpec("faiss-ivf", nlist=64, nprobe=8)
    assert s.to_dict() == {"backend": "faiss-ivf", "nlist": 64, "nprobe": 8} == s.identity()
    assert SearchSpec.parse("exact").identity() is None  # exact adds nothing to any key
    assert SearchSpec.parse("ray:ray_address=auto").ray_address == "auto"
    assert SearchSpec.parse("exact:nprobe=4").identity() is None  # another backend's parameter is ignored
    for bad, needle in (("annoy", "must be one of"), ("faiss-ivf:nprobe=0", "from 1 to"),
                        ("faiss-hnsw:x", "bad search option")):
        with pytest.raises(HardnegError, match=needle):
            SearchSpec.parse(bad)


def test_pool_keys_exact_unchanged_and_approximate_apart(tiny_beir):
    from hardneg.data.beir import load_beir
    from hardneg.mining.pipeline import pool_key

    ds = load_beir(tiny_beir, "train")
    exact = pool_key("fp", ds, 5)
    assert pool_key("fp", ds, 5, SearchSpec()) == exact
    assert pool_key("fp", ds, 5, SearchSpec("faiss-flat")) != exact
    assert pool_key("fp", ds, 5, SearchSpec("faiss-ivf", nprobe=2)) != pool_key("fp", ds, 5, SearchSpec("faiss-ivf"))


def test_cli_reaches_the_backend_and_records_it(tmp_path, capsys):
    import json

    import numpy as np

    data = write_beir(tmp_path / "data")
    base = ["--teacher", "hash", "-s", "topk(3)", "--cache", str(tmp_path / "c"), "-q"]
    for name, extra in (("exact", []), ("flat", ["--search", "faiss-flat"])):
        code, _, err = run_cli(["mine", "--data", str(data), "--out", str(tmp_path / name), *base, *extra], capsys)
        assert code == 0, err
    assert "search" not in json.loads((tmp_path / "exact" / "mine_config.json").read_text())  # old bytes
    assert json.loads((tmp_path / "flat" / "mine_config.json").read_text())["search"] == {"backend": "faiss-flat"}
    # faiss-flat is exact: the same scores per row (the hash teacher's many exact-zero ties may swap documents
    # whose scores differ in the last float bit, so scores are compared, not ids)
    rows = {n: [json.loads(x) for x in (tmp_path / n / "topk-3" / "mined.jsonl").read_text().splitlines()]
            for n in ("exact", "flat")}
    for r1, r2 in zip(rows["exact"], rows["flat"]):
        np.testing.assert_allclose([x["score"] for x in r1["neg"]], [x["score"] for x in r2["neg"]], atol=1e-6)
    code, _, err = run_cli(["evaluate", "--model", "hash", "--data", str(data), "--out", str(tmp_path / "ev"),
                            "--cache", str(tmp_path / "c"), "-q", "--search", "faiss-ivf:nlist=1,nprobe=1"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["search"]["backend"] == "faiss-ivf"


def test_run_config_has_a_search_section(tmp_path):
    from hardneg.experiments.config import config_from_dict

    cfg = config_from_dict({"teacher": {"model": "hash"}, "search": {"backend": "faiss-hnsw", "ef_search": 64}})
    assert cfg.search == SearchSpec("faiss-hnsw", ef_search=64)
    with pytest.raises(HardnegError, match="backend="):
        config_from_dict({"search": {"backend": "nope"}})
