"""The output rule, verb by verb: hardneg never deletes or overwrites a file it did not write.

Each verb is pointed (1) at a non-empty folder of someone else's files and (2) at its own input (the dataset
folder, or a folder holding the input file). Both must fail with the one-line error, exit 2, and every byte that
was there before must still be there, with nothing added."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from conftest import run_cli, write_beir
from hardneg.errors import HardnegError
from hardneg.io import OUTPUT_MARKER, atomic_path, check_output, claim_output, write_text
from hardneg.testing import tiny_run_config

ROW = {"qid": "q1", "query": "cats", "pos": {"docid": "d1", "text": "cats purr", "score": 0.5},
       "neg": [{"docid": "d2", "text": "dogs", "score": 0.4, "rank": 1}]}


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file (bytes) and folder (None) under ``folder``, by relative path."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


def _mine(data, out, tmp):
    return ["mine", "--data", str(data), "--out", str(out), "-s", "topk(1)", "--teacher", "hash",
            "--cache", str(tmp / "cache")]


def _evaluate(data, out, tmp):
    return ["evaluate", "--model", "hash", "--data", str(data), "--split", "test", "--out", str(out),
            "--cache", str(tmp / "cache")]


def _diagnose(data, out, tmp):
    return ["diagnose", "--data", str(data), "--out", str(out), "-s", "topk(1)", "--teacher", "hash",
            "--cache", str(tmp / "cache")]


def _inject(data, out, tmp):
    return ["inject", "--data", str(data), "--out", str(out), "--rate", "0.5"]


def _train(data, out, tmp):
    mined = data / "mined.jsonl"  # an input file inside the dataset folder: --out=data contains it
    mined.write_text(json.dumps(ROW) + "\n")
    return ["train", "--mined", str(mined), "--out", str(out), "--max-steps", "1"]


def _config(kind: str):
    def build(data, out, tmp):
        cfg = tmp / f"{kind}.toml"
        extra = '[grid]\nstrategies = ["topk(1)"]\n' if kind == "ablate" else ""
        cfg.write_text(tiny_run_config(data, "minilm", out, tmp / "cache", extra=extra))
        return [kind, str(cfg)]
    return build


def _report(data, out, tmp):
    results = data / "results.jsonl"
    results.write_text("{}\n")
    return ["report", str(results), "--out", str(out)]


def _fn_report(data, out, tmp):
    results = data / "results.jsonl"
    results.write_text("{}\n")
    return ["fn-report", "--rate", f"0={results}", "--rate", f"0.3={results}", "--out", str(out)]


def _recipe(data, out, tmp):
    cfg = tmp / "recipe.toml"
    cfg.write_text(f'[recipe]\nout = "{out}"\ncache = "{tmp / "cache"}"\n[model]\nbase = "{data}"\n'
                   f'[mine]\nteacher = {{ model = "hash" }}\nstrategy = "topk(1)"\n'
                   f'[[stage1.data]]\nbeir = "{data}"\n[evaluate]\ndatasets = ["{data}"]\n')
    return ["recipe", str(cfg)]


VERBS = {"mine": _mine, "evaluate": _evaluate, "diagnose": _diagnose, "inject": _inject, "train": _train,
         "run": _config("run"), "ablate": _config("ablate"), "report": _report, "fn-report": _fn_report,
         "recipe": _recipe}
# Verbs whose input is a file inside the dataset folder rather than the folder itself (report: an output folder
# may hold its results file, so only the foreign-folder case applies).
SELF_INPUT_REFUSED = set(VERBS) - {"report", "fn-report"}


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_foreign_non_empty_folder_is_refused_and_untouched(verb, tmp_path, capsys):
    data = write_beir(tmp_path / "data")
    foreign = tmp_path / "mine-not-yours"
    (foreign / "sub").mkdir(parents=True)
    (foreign / "notes.txt").write_text("precious")
    (foreign / "sub" / "metrics.json").write_text("{}")  # even a name hardneg writes must stay
    (foreign / ".hidden").write_bytes(b"\x00\x01")
    args = VERBS[verb](data, foreign, tmp_path)
    before, data_before = snapshot(foreign), snapshot(data)
    code, _, err = run_cli(args + ["-q"], capsys)
    assert code == 2, err
    line = err.strip()
    assert line.startswith("error:") and "Fix:" in line and len(line.splitlines()) == 1, err
    assert "not written by hardneg" in " ".join(line.split())
    assert snapshot(foreign) == before and snapshot(data) == data_before


@pytest.mark.parametrize("verb", sorted(SELF_INPUT_REFUSED))
def test_output_equal_to_the_input_is_refused_and_untouched(verb, tmp_path, capsys):
    data = write_beir(tmp_path / "data")
    args = VERBS[verb](data, data, tmp_path)
    before = snapshot(data)
    code, _, err = run_cli(args + ["-q"], capsys)
    assert code == 2, err
    assert "the output folder is the input" in " ".join(err.split()) or "contains the input" in " ".join(err.split())
    assert snapshot(data) == before


def test_output_inside_or_containing_an_input(tmp_path):
    data = write_beir(tmp_path / "data")
    with pytest.raises(HardnegError, match="lies inside the input"):
        check_output(data / "out", "mine", inputs=[data])
    with pytest.raises(HardnegError, match="contains the input"):
        check_output(tmp_path, "mine", inputs=[data])
    with pytest.raises(HardnegError, match="is the input"):
        check_output(data, "mine", inputs=[str(data)])
    # a results file the report is written beside is allowed inside the output folder, but not as the output;
    # a folder holding only such read-only inputs counts as empty (the studies copy results, then report there)
    check_output(tmp_path / "rep", "report", beside=[tmp_path / "rep" / "results.jsonl"])
    (tmp_path / "rep").mkdir()
    (tmp_path / "rep" / "results.jsonl").write_text("{}")
    check_output(tmp_path / "rep", "report", beside=[tmp_path / "rep" / "results.jsonl"])
    (tmp_path / "rep" / "notes.txt").write_text("mine")
    with pytest.raises(HardnegError, match="not written by hardneg"):
        check_output(tmp_path / "rep", "report", beside=[tmp_path / "rep" / "results.jsonl"])
    assert check_output(tmp_path / "new", "mine", inputs=["minilm", None]) == tmp_path / "new"  # not paths


def test_rerun_into_own_output_replaces_only_hardneg_files(tmp_path, capsys):
    data = write_beir(tmp_path / "data")
    out = tmp_path / "ev"
    args = _evaluate(data, out, tmp_path) + ["-q"]
    assert run_cli(args, capsys)[0] == 0
    assert json.loads((out / OUTPUT_MARKER).read_text())["verb"] == "evaluate"
    first = (out / "metrics.json").read_bytes()
    (out / "my-notes.md").write_text("mine")
    (out / "metrics.json").write_text("stale")
    assert run_cli(args, capsys)[0] == 0
    assert (out / "my-notes.md").read_text() == "mine"  # the user's file stays
    assert (out / "metrics.json").read_bytes() == first  # hardneg's own file is rewritten
    # another verb may not take over the folder
    code, _, err = run_cli(_mine(data, out, tmp_path) + ["-q"], capsys)
    assert code == 2 and "holds the output of `hardneg evaluate`" in " ".join(err.split())


def test_failed_run_leaves_no_folder_behind(tmp_path, capsys):
    out = tmp_path / "a" / "b" / "out"
    code, _, err = run_cli(["mine", "--data", str(tmp_path / "missing"), "--out", str(out), "-s", "topk(1)",
                            "--teacher", "hash", "--cache", str(tmp_path / "c"), "-q"], capsys)
    assert code == 2 and "not found" in err
    assert not (tmp_path / "a").exists()  # the folders the claim created are gone again


def test_claim_keeps_what_a_failed_run_wrote(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with claim_output(out, "ablate") as p:
            write_text(p / "results.jsonl", "{}\n")
            raise RuntimeError("killed mid-run")
    assert (out / "results.jsonl").read_text() == "{}\n"  # a rerun resumes from it


def test_files_and_folders_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_text(tmp_path / "f.txt", "x")
        with atomic_path(tmp_path / "d", is_dir=True) as tmp:
            (tmp / "inner.txt").write_text("y")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755


def test_ctrl_c_prints_one_line_and_exits_130(tmp_path, capsys, monkeypatch):
    import hardneg.data.load as load

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(load, "load_dataset", interrupted)
    code, out, err = run_cli(_mine(write_beir(tmp_path / "data"), tmp_path / "out", tmp_path), capsys)
    assert code == 130
    # the log may show the resolved config first; the interruption itself is one line, no traceback
    assert err.strip().splitlines()[-1].startswith("interrupted: hardneg mine stopped") and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing was written before the interruption


def test_quiet_prints_nothing_on_success(tmp_path, capsys):
    code, out, err = run_cli(_mine(write_beir(tmp_path / "data"), tmp_path / "out", tmp_path) + ["-q"], capsys)
    assert (code, out, err) == (0, "", "")


def test_padded_export_negatives_carry_real_teacher_scores(tmp_path, capsys):
    import numpy as np

    from hardneg.data.beir import load_beir
    from hardneg.encode.encoder import EncoderSpec, load_encoder

    data = write_beir(tmp_path / "data")
    out = tmp_path / "m"
    code, _, err = run_cli(["mine", "--data", str(data), "--out", str(out), "-s", "abs(-1)+topk(2)", "--teacher",
                            "hash", "--export", "flag", "--short", "pad", "--cache", str(tmp_path / "c"), "-q"], capsys)
    assert code == 0, err
    ds = load_beir(data, "train")
    enc = load_encoder(EncoderSpec("hash"))
    q = dict(zip(ds.queries.texts, enc.encode(list(ds.queries.texts), "query")))
    d = dict(zip(ds.corpus.encoding_texts, enc.encode(list(ds.corpus.encoding_texts), "doc")))
    rows = [json.loads(x) for x in (out / "abs--1.0_topk-2" / "flag.jsonl").read_text().splitlines()]
    padded = [(r["query"], t, s) for r in rows for t, s, p in zip(r["neg"], r["neg_scores"], r["neg_pad"]) if p]
    assert padded, "abs(-1) keeps nothing: every negative is padding"
    for query, text, score in padded:  # the teacher's cosine, never null
        assert score == pytest.approx(float(np.dot(q[query], d[text])), abs=1e-6)
