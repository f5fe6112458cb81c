"""False-negative strategies end to end: hardneg mine with posnbr / dedup / auto / treatments, calibrate, warnings."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from hardneg.data.inject import inject_false_negatives, load_manifest
from hardneg.data.load import load_dataset
from hardneg.encode.encoder import EncoderSpec
from hardneg.errors import HardnegError
from hardneg.io import claim_output
from hardneg.mining.calibrate import run_calibrate, sweep
from hardneg.mining.pipeline import MineConfig, parse_plan, run_mine
from hardneg.testing import make_pool, write_tiny_beir


def _mine(data: Path, out: Path, cache: Path, strategies: list[str], manifest=None) -> dict:
    ds = load_dataset(data, "train")
    cfg = MineConfig(teacher=EncoderSpec(model="hash"), strategies=tuple(parse_plan(s) for s in strategies), depth=20)
    with claim_output(out, "mine"):
        return run_mine(ds, cfg, out, cache, progress=False, manifest=manifest)


def test_mine_with_new_strategies(tmp_path, caplog):
    data = write_tiny_beir(tmp_path / "tiny")
    strategies = ["posnbr(0.5)+topk(2)", "dedup+topk(2)", "percpos(auto,coverage=0.9)+topk(2)",
                  "relabel(percpos(0.9))+topk(2)", "percpos(0.95)+simans(10,2,1.0,0.1)", "percpos(0.3)+topk(4)",
                  "drop-query(percpos(0.9),m=0,k=3,teacher=hash:64)+topk(2)"]
    with caplog.at_level(logging.WARNING, logger="hardneg"):
        summary = _mine(data, tmp_path / "out", tmp_path / "cache", strategies)
    warn = [r.getMessage() for r in caplog.records if "hardneg calibrate" in r.getMessage()]
    st = summary["strategies"]
    auto = st["percpos(auto,coverage=0.9)+topk(2)"]
    assert auto["resolved"].startswith("percpos(0.") and auto["resolved"].endswith(")+topk(2)")
    assert auto["rows_full"] >= 0.9 * auto["rows"]
    # the resolved strategy reproduces the auto run byte for byte
    summary2 = _mine(data, tmp_path / "out2", tmp_path / "cache", [auto["resolved"]])
    slug_auto = parse_plan("percpos(auto,coverage=0.9)+topk(2)").slug
    slug_res = parse_plan(auto["resolved"]).slug
    assert (tmp_path / "out" / slug_auto / "mined.jsonl").read_bytes() == \
        (tmp_path / "out2" / slug_res / "mined.jsonl").read_bytes()
    assert "resolved" not in summary2["strategies"][auto["resolved"]]
    # posnbr removed something on word-bag documents and its array is cached beside the pool
    assert st["posnbr(0.5)+topk(2)"]["removed_by_filter"]["posnbr(0.5)"] > 0
    assert list((tmp_path / "cache" / "fn").glob("*/pos_cos.npy"))
    rows = [json.loads(x) for x in (tmp_path / "out" / parse_plan("relabel(percpos(0.9))+topk(2)").slug /
                                    "mined.jsonl").read_text().splitlines()]
    assert all(r["treatment"] == "relabel(percpos(0.9))" for r in rows)
    extra = [r for r in rows if r["pos"].get("relabeled")]
    # one extra row per relabelled (query, document); a query with two positives flags per row, so <= the count
    assert 0 < len(extra) <= st["relabel(percpos(0.9))+topk(2)"]["treatment"]["relabeled"]
    for r in extra:  # trained on as a positive, never also a negative of its query
        assert all(n["docid"] != r["pos"]["docid"] for x in rows if x["qid"] == r["qid"] for n in x["neg"])
    dq = st["drop-query(percpos(0.9),m=0,k=3,teacher=hash:64)+topk(2)"]
    assert dq["treatment"]["dropped_queries"] > 0 and dq["rows"] < st["dedup+topk(2)"]["rows"]
    # percpos(0.3)+topk(4) starves most rows: one warning line naming hardneg calibrate
    starved = [w for w in warn if w.startswith("percpos(0.3)+topk(4): 23 of 24 rows (95.8%)")]
    assert len(starved) == 1 and "\n" not in starved[0]
    assert "--filter percpos --n 4" in starved[0]
    assert not [w for w in warn if "auto" in w or w.startswith(auto["resolved"])]  # auto: the user chose the coverage


def test_unreachable_auto_coverage_is_one_line(tmp_path):
    data = write_tiny_beir(tmp_path / "tiny")
    with pytest.raises(HardnegError, match="coverage 1 is unreachable"):
        _mine(data, tmp_path / "out", tmp_path / "cache", ["percpos(auto,coverage=1.0)+topk(30)"])


def test_sweep_hand_computed():
    # One positive 0.80: a candidate survives percpos(p) iff p > 1 + (s - 0.8) / 0.8: 0.79 -> 0.9875,
    # 0.77 -> 0.9625, 0.765 -> 0.95625, 0.70 -> 0.875, 0.60 -> 0.75, 0.50 -> 0.625.
    pool = make_pool([("qa", [0.80], [(10, 0.79), (11, 0.77), (12, 0.765), (13, 0.70), (14, 0.60), (15, 0.50)])])
    rows = [r for r in sweep(pool, "percpos", 4, grid=[0.9, 0.96]) if not r["auto"]]
    # 0.9 keeps 3 (hardest 0.70), 0.96 keeps 4 (hardest 0.765)
    assert [(r["kept_per_row"], r["rows_full"], r["rows_empty"]) for r in rows] == [(3.0, 0.0, 0.0), (4.0, 1.0, 0.0)]
    assert rows[0]["hardest_q50"] == pytest.approx(0.70, abs=1e-6)
    assert rows[1]["hardest_q50"] == pytest.approx(0.765, abs=1e-6)


def test_sweep_ref_row_by_hand():
    # Positives 0.80 and 0.60; candidates 0.70, 0.55, 0.50. percpos(0.9) keeps s < 0.9 * ref:
    # ref=min (0.60 for both rows): s < 0.54 -> 0.50 only, 1 per row; ref=row: row 1 s < 0.72 -> 3, row 2 -> 1.
    pool = make_pool([("qa", [0.80, 0.60], [(10, 0.70), (11, 0.55), (12, 0.50)])])
    (by_min,) = [r for r in sweep(pool, "percpos", 4, grid=[0.9]) if not r["auto"]]
    (by_row,) = [r for r in sweep(pool, "percpos", 4, grid=[0.9], ref="row") if not r["auto"]]
    assert by_min["kept_per_row"] == 1.0 and by_row["kept_per_row"] == 2.0
    assert by_row["strategy"] == "percpos(0.9,ref=row)+topk(4)"
    with pytest.raises(HardnegError, match="ref=row applies to percpos and marginpos"):
        sweep(pool, "abs", 4, grid=[0.5], ref="row")


def test_calibrate_on_injected_data(tmp_path):
    src = write_tiny_beir(tmp_path / "tiny")
    inject_false_negatives(src, tmp_path / "inj", rate=0.5)
    out = tmp_path / "cal"
    with claim_output(out, "calibrate"):
        res = run_calibrate(tmp_path / "inj", "hash", "posnbr", out, n=2, depth=20, cache_dir=tmp_path / "cache",
                            progress=False)
    assert {p.name for p in out.iterdir()} >= {"calibrate.md", "calibrate.csv", "calibrate.json", "calibrate.png"}
    grid = [r for r in res["rows"] if not r["auto"]]
    assert all("trap_recall" in r for r in grid)
    # a stricter posnbr never mines more traps
    rec = [r["trap_recall"] or 0.0 for r in grid]
    assert rec == sorted(rec)
    assert load_manifest(tmp_path / "inj").docs


def test_relabel_rows_export_and_pad_stay_aligned(tmp_path):
    data = write_tiny_beir(tmp_path / "tiny")
    ds = load_dataset(data, "train")
    plan = parse_plan("relabel(percpos(0.9))+topk(3)")
    cfg = MineConfig(teacher=EncoderSpec(model="hash"), strategies=(plan,), depth=20,
                     exports=("flag", "st", "triplets"), short_policy="pad")
    with claim_output(tmp_path / "out", "mine"):
        run_mine(ds, cfg, tmp_path / "out", tmp_path / "cache", progress=False)
    folder = tmp_path / "out" / plan.slug
    rows = [json.loads(x) for x in (folder / "mined.jsonl").read_text().splitlines()]
    flag = [json.loads(x) for x in (folder / "flag.jsonl").read_text().splitlines()]
    assert any(r["pos"].get("relabeled") for r in rows)
    assert len(flag) == len(rows) and all(len(f["neg"]) == 3 for f in flag)  # padded to n, one per output row
    assert [f["pos"][0] for f in flag] == [r["pos"]["text"] for r in rows]
