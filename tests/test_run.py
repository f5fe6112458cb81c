"""`hardneg run` end to end with the hash teacher and a tiny random student: stages, resume, results."""
from __future__ import annotations

import json

import pytest

from conftest import run_cli
from hardneg.testing import make_tiny_student, tiny_run_config, write_tiny_beir


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    data = write_tiny_beir(root / "data")
    student = make_tiny_student(root / "student")
    cfg = root / "cfg.toml"
    cfg.write_text(tiny_run_config(data, student, root / "out", root / "cache"))
    return root, cfg


def test_run_then_resume_skips_every_stage(setup, capsys, monkeypatch):
    root, cfg = setup
    code, out, err = run_cli(["run", str(cfg), "-q"], capsys)
    assert code == 0, err
    res = json.loads((root / "out" / "results.json").read_text())
    assert set(res["metrics"]) == {"dev", "test"}
    assert set(res["metrics"]["test"]) == {"base", "finetuned"}
    stages = sorted(p.name.split("-")[0] for p in (root / "out" / "stages").iterdir())
    assert stages == ["eval"] * 4 + ["mine", "train"]
    assert out == "" and err == ""  # -q: nothing but errors, on either stream
    first = (root / "out" / "results.json").read_bytes()
    assert "train" in json.loads((root / "out" / "timings.json").read_text())

    import hardneg.experiments.run as runmod

    def boom(*a, **k):
        raise AssertionError("a finished stage ran again")

    monkeypatch.setattr(runmod, "train", boom)
    monkeypatch.setattr(runmod, "evaluate_model", boom)
    monkeypatch.setattr(runmod, "get_pools", boom)
    code, out, err = run_cli(["run", str(cfg)], capsys)
    assert code == 0, err
    assert "ndcg@10" in out and "fine-tuned" in out
    assert (root / "out" / "results.json").read_bytes() == first
    # Nothing ran; the skipped train stage's own recorded seconds are carried over for the cost report.
    timings = json.loads((root / "out" / "timings.json").read_text())
    train_dir = next((root / "out" / "stages").glob("train-*"))
    recorded = json.loads((train_dir / "train_config.json").read_text())["result"]["train_seconds"]
    assert timings == {"train_earlier": round(recorded, 1)}


def test_changing_a_train_setting_retrains_without_remining(setup, capsys, monkeypatch):
    root, cfg = setup
    import hardneg.experiments.run as runmod

    monkeypatch.setattr(runmod, "get_pools", lambda *a, **k: (_ for _ in ()).throw(AssertionError("re-mined")))
    code, _, err = run_cli(["run", str(cfg), "-q", "train.learning_rate=1e-4"], capsys)
    assert code == 0, err
    assert len(list((root / "out" / "stages").glob("train-*"))) == 2


def test_bad_config_lists_every_problem(setup, capsys):
    root, cfg = setup
    code, _, err = run_cli(["run", str(cfg), "-q", "train.epochs=0", "mine.strategy=topk(4)+shift(1)",
                            "evaluate.splits=[\"val\"]", "train.nope=1"], capsys)
    msg = " ".join(err.split())
    assert code == 2
    for needle in ("epochs", "only the last part", "splits", "unknown key 'nope'"):
        assert needle in msg, msg


def test_run_with_a_fusion_teacher_and_with_an_ensemble(setup, capsys):
    root, cfg = setup
    for teacher, strategy in (("fusion(hash,hash:32)", "percpos(0.95)+topk(2)"),
                              ("hash|hash:32", "topk(2)+ensemble(intra,no-dedup)")):
        code, _, err = run_cli(["run", str(cfg), "-q", f"teacher.model={teacher}", f"mine.strategy={strategy}",
                                f"run.out={root / ('out-' + str(len(teacher)))}"], capsys)
        assert code == 0, err
        res = json.loads((root / ("out-" + str(len(teacher))) / "results.json").read_text())
        assert res["config"]["teacher"]["model"] == teacher and "finetuned" in res["metrics"]["test"]
    code, _, err = run_cli(["run", str(cfg), "-q", "teacher.model=hash|hash:32", "mine.strategy=topk(2)",
                            f"run.out={root / 'out-bad'}"], capsys)
    assert code == 2 and "has no ensemble" in err


def test_a_hashed_stage_is_built_once_atomically_and_keyed_by_its_spec(tmp_path):
    """experiments.stages: run, ablate and the LLM recipe share it; the folder name is the historical
    ``<kind>-<stable_hash(spec)>``, so finished stages of earlier versions are found again."""
    from hardneg.experiments.stages import ensure_stage, stage_dir
    from hardneg.io import stable_hash

    spec = {"teacher": "t", "depth": 10}
    assert stage_dir(tmp_path, "mine", spec) == tmp_path / "stages" / f"mine-{stable_hash(spec)}"
    calls: list[str] = []

    def build(folder):
        calls.append(folder.name)
        (folder / "spec.json").write_text("{}")

    timings: dict[str, float] = {}
    first = ensure_stage(tmp_path, "mine", spec, build, timings=timings)
    assert first.ran and first.dir == stage_dir(tmp_path, "mine", spec) and (first.dir / "spec.json").is_file()
    assert calls[0] != first.name and "mine" in timings  # built in a temporary sibling, then renamed
    again = ensure_stage(tmp_path, "mine", spec, build)
    assert not again.ran and again.dir == first.dir and len(calls) == 1

    def boom(folder):
        (folder / "half.json").write_text("{}")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        ensure_stage(tmp_path, "mine", {"other": 1}, boom)
    assert sorted(p.name for p in (tmp_path / "stages").iterdir()) == [first.name]  # nothing half-written

    # marker: a folder that exists without its marker file is not finished (the builder writes it itself)
    folder = stage_dir(tmp_path, "base", spec)
    folder.mkdir(parents=True)
    built = ensure_stage(tmp_path, "base", spec, lambda d: (d / "modules.json").write_text("[]"),
                         marker="modules.json", atomic=False, timings=timings, timing_key="base")
    assert built.ran and (folder / "modules.json").is_file() and "base" in timings
    assert not ensure_stage(tmp_path, "base", spec, boom, marker="modules.json", atomic=False).ran
