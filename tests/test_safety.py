"""Safe loading: no pickle, no remote code by default, names used in paths cannot escape the output folder."""
from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given, settings, strategies as st

from hardneg.encode.encoder import EncoderSpec
from hardneg.mining.strategy import parse_strategy
from hardneg.mining.teachers import parse_teacher

SRC = Path(__file__).resolve().parents[1] / "src" / "hardneg"


def test_source_never_unpickles_or_trusts_remote_code_by_default():
    offenders = []
    for p in SRC.rglob("*.py"):
        text = p.read_text()
        for pat in (r"\bpickle\b", r"allow_pickle\s*=\s*True", r"trust_remote_code\s*=\s*True",
                    r"torch\.load\((?![^)]*weights_only\s*=\s*True)"):
            if re.search(pat, text):
                offenders.append(f"{p.name}: {pat}")
    assert offenders == []
    assert EncoderSpec(model="minilm").trust_remote_code is False


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=40))
def test_teacher_slugs_stay_inside_the_output_folder(name):
    try:
        ref = parse_teacher(name)
    except ValueError:
        return
    slug = ref.slug
    assert re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]*", slug), slug
    out = Path("/tmp/out")
    assert (out / slug).resolve().parent == out


def test_strategy_slugs_are_plain_names():
    for s in ["percpos(0.95,ref=row)+top1+sampled(10,4,0.05)", "abs(-0.5)+topk(4)", "shift(10)+topk(4)", "none"]:
        assert re.fullmatch(r"[a-z0-9][a-z0-9._-]*", parse_strategy(s).slug)
