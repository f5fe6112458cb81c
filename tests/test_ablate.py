"""`hardneg ablate` on tiny data: the grid runs once, resumes without redoing points, and reports."""
from __future__ import annotations

import json

from conftest import run_cli
from hardneg.testing import make_tiny_student, tiny_run_config, write_tiny_beir


def _write_config(tmp_path, data, student, *, dev: str, max_steps: int, grid: str, evaluate: str = "",
                  out: str = "out"):
    """A tiny ablation config: hash teacher, tiny student, everything under ``tmp_path``."""
    cfg = tmp_path / "ablate.toml"
    cfg.write_text(tiny_run_config(data, student, tmp_path / out, tmp_path / "cache", dev=dev, max_steps=max_steps,
                                   mine="", evaluate=evaluate, extra=f"[grid]\n{grid}\n"))
    return cfg


def test_ablate_grid_resume_and_report(tmp_path, capsys, monkeypatch):
    data = write_tiny_beir(tmp_path / "data")
    student = make_tiny_student(tmp_path / "student")
    cfg = _write_config(tmp_path, data, student, dev="0.2", max_steps=2,
                        grid='strategies = ["topk(2)", "percpos(0.95)+topk(2)", "none"]\nseeds = [0, 1]')
    code, _, err = run_cli(["ablate", str(cfg), "-q", "--strategy", "topk(2)", "--seed", "1"], capsys)
    assert code == 0, err
    results = tmp_path / "out" / "results.jsonl"
    assert [json.loads(x)["point"]["seed"] for x in results.read_text().splitlines()] == [1]
    grid = json.loads((tmp_path / "out" / "ablation.json").read_text())["grid"]
    assert grid["seeds"] == [0, 1] and len(grid["strategies"]) == 3  # the whole grid, not the slice run
    meta = json.loads((tmp_path / "out" / "ablation.json").read_text())
    assert len(meta["grids"]) == 1 and meta["grids"][0]["grid"] == grid
    code, _, err = run_cli(["ablate", str(cfg), "-q", "--strategy", "topk(3)"], capsys)
    assert code == 2 and "not in the grid" in " ".join(err.split())
    code, _, err = run_cli(["ablate", str(cfg), "-q", "--limit", "0"], capsys)  # runs nothing
    assert code == 0, err
    assert len(results.read_text().splitlines()) == 1
    code, _, err = run_cli(["ablate", str(cfg), "-q", "--limit", "3"], capsys)
    assert code == 0, err
    assert len(results.read_text().splitlines()) == 4
    code, _, err = run_cli(["ablate", str(cfg), "-q"], capsys)
    assert code == 0, err
    lines = [json.loads(x) for x in results.read_text().splitlines()]
    assert len(lines) == 6 and len({x["key"] for x in lines}) == 6
    # one pool build and one base evaluation per split for the whole grid
    assert sum("mine_encode" in x["timings"] for x in lines) == 1
    assert sum("evaluate_base_test" in x["timings"] for x in lines) == 1

    import hardneg.experiments.run as runmod
    monkeypatch.setattr(runmod, "train", lambda *a, **k: (_ for _ in ()).throw(AssertionError("re-trained")))
    code, _, err = run_cli(["ablate", str(cfg), "-q"], capsys)  # everything done: nothing runs
    assert code == 0, err
    assert len(results.read_text().splitlines()) == 6

    code, _, err = run_cli(["report", str(results), "--out", str(tmp_path / "rep"), "-q"], capsys)
    assert code == 0, err
    table = (tmp_path / "rep" / "table.md").read_text()
    assert "`percpos(0.95)+topk(2)`" in table and "In-batch negatives only" in table


def test_ablate_config_errors_are_listed_together(tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[grid]\nstrategies = ["topk(4)", "percpos(2x)+topk(4)"]\nseeds = ["a"]\nfoo = 1\n'
                   '[train]\nepochs = -1\n')
    code, _, err = run_cli(["ablate", str(cfg), "-q"], capsys)
    msg = " ".join(err.split())
    assert code == 2
    for needle in ("percpos", "seeds", "unknown key 'foo'", "epochs"):
        assert needle in msg, msg


def test_a_failing_point_is_recorded_and_skipped(tmp_path, capsys):
    """An unreachable auto coverage fails its point only: the other points are recorded, failed.jsonl names the
    failed one, the command exits 2 with one line; a rerun retries just that point, and dropping it clears it."""
    data = write_tiny_beir(tmp_path / "data")
    student = make_tiny_student(tmp_path / "student")
    bad = "percpos(auto,coverage=1.0)+topk(1000)"  # no row of a tiny corpus can keep 1,000 negatives
    cfg = _write_config(tmp_path, data, student, dev="false", max_steps=1, evaluate='splits = ["test"]',
                        grid=f'strategies = ["{bad}", "topk(2)"]')
    code, _, err = run_cli(["ablate", str(cfg), "-q"], capsys)
    msg = " ".join(err.split())
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "1 of 2 grid points failed" in msg and "seed 0" in msg and "Fix:" in msg, msg
    out = tmp_path / "out"
    assert [json.loads(x)["point"]["strategy"] for x in (out / "results.jsonl").read_text().splitlines()] \
        == ["topk(2)"]
    failed = [json.loads(x) for x in (out / "failed.jsonl").read_text().splitlines()]
    assert [f["point"]["strategy"] for f in failed] == [bad]
    assert "coverage" in failed[0]["error"]
    code, _, err = run_cli(["ablate", str(cfg), "-q"], capsys)  # retries only the failed point
    assert code == 2 and "1 of 1 grid points failed" in " ".join(err.split()), err
    assert len((out / "results.jsonl").read_text().splitlines()) == 1
    cfg = _write_config(tmp_path, data, student, dev="false", max_steps=1, evaluate='splits = ["test"]',
                        grid='strategies = ["topk(2)"]')
    code, _, err = run_cli(["ablate", str(cfg), "-q"], capsys)  # nothing left to run
    assert code == 0, err
    assert (out / "failed.jsonl").is_file()  # the dropped point was not tried: its record stays


def test_ablate_records_trap_rates_on_injected_data(tmp_path, capsys):
    """On a `hardneg inject` copy each record carries the strategy's trap rates, equal to `hardneg mine`'s."""
    data = write_tiny_beir(tmp_path / "data")
    inj = tmp_path / "inj"
    code, _, err = run_cli(["inject", "--data", str(data), "--out", str(inj), "--rate", "1.0", "-q"], capsys)
    assert code == 0, err
    student = make_tiny_student(tmp_path / "student")
    cfg = _write_config(tmp_path, inj, student, dev="false", max_steps=1, evaluate='splits = ["test"]',
                        grid='strategies = ["topk(2)", "percpos(0.95)+topk(2)"]')
    code, _, err = run_cli(["ablate", str(cfg), "-q"], capsys)
    assert code == 0, err
    recs = {json.loads(x)["point"]["strategy"]: json.loads(x)
            for x in (tmp_path / "out" / "results.jsonl").read_text().splitlines()}
    code, _, err = run_cli(["mine", "--data", str(inj), "--split", "train", "--teacher", "hash", "--depth", "10",
                            "-s", "topk(2)", "-s", "percpos(0.95)+topk(2)", "--out", str(tmp_path / "mined"),
                            "--cache", str(tmp_path / "cache"), "-q"], capsys)
    assert code == 0, err
    for strategy, slug in (("topk(2)", "topk-2"), ("percpos(0.95)+topk(2)", "percpos-0.95_topk-2")):
        want = json.loads((tmp_path / "mined" / slug / "stats.json").read_text())["traps"]
        assert recs[strategy]["mining"]["traps"] == want
        assert want["traps_in_pool"] > 0  # the hash teacher retrieves some copies: the comparison is not vacuous
    # with a dev carved out of train ("train-minus-dev") the traps of the remaining train queries are measured
    cfg = _write_config(tmp_path, inj, student, dev="0.3", max_steps=1, evaluate='splits = ["test"]',
                        grid='strategies = ["topk(2)", "percpos(0.95)+topk(2)"]', out="out2")
    code, _, err = run_cli(["ablate", str(cfg), "-q", "--strategy", "topk(2)"], capsys)
    assert code == 0, err
    rec = json.loads((tmp_path / "out2" / "results.jsonl").read_text())
    assert 0 < rec["mining"]["traps"]["traps"] < recs["topk(2)"]["mining"]["traps"]["traps"]


def test_committed_study_configs_sharing_a_results_folder_share_one_recipe():
    """The teacher, ensemble and sampling studies append to the main SciFact results: one table is fair only if
    every config writing there trains and evaluates the same way (only the grid's own axes may differ)."""
    from collections import defaultdict
    from pathlib import Path

    from hardneg.experiments.ablate import load_ablation

    root = Path(__file__).resolve().parents[1]
    by_out: dict[str, list[tuple[str, dict]]] = defaultdict(list)
    for path in sorted((root / "configs").glob("*.toml")):
        if "[grid]" not in path.read_text(encoding="utf-8"):
            continue  # a single-run config (hardneg run / recipe)
        base, _ = load_ablation(path)
        recipe = base.to_dict()
        for section, key in (("teacher", "model"), ("mine", "strategy"), ("mine", "seed"), ("train", "student"),
                             ("train", "seed")):  # set per grid point
            recipe[section].pop(key)
        by_out[base.run.out].append((path.name, recipe))
    shared = {out: cfgs for out, cfgs in by_out.items() if len(cfgs) > 1}
    assert any(len(cfgs) >= 4 for cfgs in shared.values())  # the main grid + teachers, ensembles, sampling
    for out, cfgs in shared.items():
        first_name, first = cfgs[0]
        for name, recipe in cfgs[1:]:
            assert recipe == first, f"{name} and {first_name} both write {out} with different recipes"


def test_committed_results_keep_their_point_keys():
    """A new config section or option at its default must not change the key of a finished point (the studies
    resume from the committed results: a changed key would rerun hours of grid)."""
    from pathlib import Path

    from hardneg.experiments.ablate import load_ablation, point_key

    root = Path(__file__).resolve().parents[1]
    for cfg, res in (("ablate-scifact.toml", "scifact"), ("fn-scifact-r30.toml", "false-negatives/r30"),
                     ("ablate-nfcorpus-thin.toml", "nfcorpus/thin")):
        base, _ = load_ablation(root / "configs" / cfg)
        recs = [json.loads(x) for x in (root / "reports" / res / "results.jsonl").read_text().splitlines()]
        assert [r["key"] for r in recs] == [point_key(base, r["point"]) for r in recs]
