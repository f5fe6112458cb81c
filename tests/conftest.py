"""Shared fixtures: a tiny BEIR folder and helpers to run the CLI in-process."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

DOCS = [
    ("d1", "Cats", "cats purr and sleep all day"),
    ("d2", "Dogs", "dogs bark and fetch the ball"),
    ("d3", "Cat food", "cats eat fish and cat food"),
    ("d4", "Birds", "birds sing and fly south"),
    ("d5", "", "fish swim in the sea"),
    ("d6", "Dog food", "dogs eat meat and dog food"),
    ("d7", "Sleep", "people sleep at night"),
    ("d8", "Balls", "a ball is round and bounces"),
]
QUERIES = [("q1", "what do cats eat"), ("q2", "why do dogs bark"), ("q3", "which animals sleep all day"),
           ("q4", "where do birds fly"), ("q5", "what is a ball")]
QRELS = {"train": [("q1", "d3", 1), ("q2", "d2", 1), ("q2", "d6", 1), ("q3", "d1", 1), ("q3", "d7", 1),
                   ("q3", "d5", 0)],
         "test": [("q4", "d4", 2), ("q5", "d8", 1), ("q5", "d2", 1)]}


def write_beir(folder: Path, docs=DOCS, queries=QUERIES, qrels=QRELS, crlf: bool = False) -> Path:
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as fh:
        for did, title, text in docs:
            fh.write(json.dumps({"_id": did, "title": title, "text": text, "metadata": {}}) + "\n")
    with open(folder / "queries.jsonl", "w", encoding="utf-8") as fh:
        for qid, text in queries:
            fh.write(json.dumps({"_id": qid, "text": text, "metadata": {}}) + "\n")
    nl = "\r\n" if crlf else "\n"
    for split, rows in qrels.items():
        with open(folder / "qrels" / f"{split}.tsv", "w", encoding="utf-8", newline="") as fh:
            fh.write("query-id\tcorpus-id\tscore" + nl)
            for q, d, s in rows:
                fh.write(f"{q}\t{d}\t{s}{nl}")
    return folder


def corrupt_line(path: Path, lineno: int, new: bytes | None) -> None:
    """Replace line ``lineno`` (1-based) of ``path`` with ``new`` bytes, or delete it when ``new`` is None."""
    lines = path.read_bytes().split(b"\n")
    if new is None:
        del lines[lineno - 1]
    else:
        lines[lineno - 1] = new
    path.write_bytes(b"\n".join(lines))


@pytest.fixture
def tiny_beir(tmp_path: Path) -> Path:
    return write_beir(tmp_path / "tiny")


def load_script(rel: str):
    """A repo script that is not a package module (``benchmarks/*.py``, ``scripts/*.py``), imported by path."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(Path(rel).stem, ROOT / rel)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """Run ``hardneg ARGS`` in-process; returns (exit code, stdout, stderr)."""
    from hardneg import cli

    old = sys.argv
    sys.argv = ["hardneg", *args]
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = old
    cap = capsys.readouterr()
    return code, cap.out, cap.err
