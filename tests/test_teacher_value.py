"""The Teacher value: a teacher string parsed once into a value the mining code carries."""
from __future__ import annotations

import pytest

from hardneg.encode.encoder import EncoderSpec
from hardneg.errors import HardnegError
from hardneg.mining.teachers import Teacher, as_teacher, make_teacher, parse_teacher, teacher_fingerprint


@pytest.mark.parametrize("text, kind, models", [
    ("hash", "single", ["hash"]),
    ("fusion( hash:32 , hash:64 )", "fusion", ["hash:32", "hash:64"]),
    ("fusion(hash:32,hash:64,how=mean)", "fusion", ["hash:32", "hash:64"]),
    ("hash | hash:32", "list", ["hash", "hash:32"]),
    ("fusion(hash,hash:32)|hash:64|hash", "list", ["hash", "hash:32", "hash:64"]),
])
def test_parse_once_round_trip_and_single_model_members(text, kind, models):
    t = as_teacher(text)
    assert isinstance(t, Teacher) and t.kind == kind
    assert str(t) == str(parse_teacher(text))  # the canonical string of today
    assert as_teacher(str(t)) == t and as_teacher(t) is t  # round trip; a value is not parsed again
    assert t.base.model == str(t) and t.to_dict() == EncoderSpec(model=str(t)).to_dict()
    members = t.members()
    assert [m.model for m in members] == models
    assert all(isinstance(m, EncoderSpec) and parse_teacher(m.model).kind == "single" for m in members)
    parts = t.parts()
    assert "|".join(str(p) for p in parts) == str(t) and all(p.kind != "list" for p in parts)


def test_encoder_settings_reach_every_member_and_spec_input_keeps_them():
    t = make_teacher(["hash", "fusion(hash:32,hash:64)"], query_prompt="q: ", max_seq_length=64)
    assert str(t) == "hash|fusion(hash:32,hash:64)"
    assert all(m.query_prompt == "q: " and m.max_seq_length == 64 for m in t.members())
    spec = EncoderSpec(model="fusion(hash:32, hash:64)", doc_prompt="d: ")
    u = as_teacher(spec)
    assert str(u) == "fusion(hash:32,hash:64)" and all(m.doc_prompt == "d: " for m in u.members())


def test_fingerprints_equal_whatever_the_input_form():
    for text in ("hash", "fusion(hash:32,hash:64)", "hash|hash:32"):
        fps = {teacher_fingerprint(x, None) for x in (text, EncoderSpec(model=text), as_teacher(text))}
        assert len(fps) == 1
    # a list's fingerprint is made of its parts': a single part is its encoder's
    assert teacher_fingerprint("hash|fusion(hash:32,hash:64)", None) != teacher_fingerprint("hash|hash:32", None)


@pytest.mark.parametrize("bad", [42, None, ["hash"], b"hash"])
def test_wrong_type_is_one_line_hardneg_error(bad):
    with pytest.raises(HardnegError, match="a teacher must be a string, an EncoderSpec or a Teacher") as e:
        as_teacher(bad)
    assert "\n" not in str(e.value) and "Fix:" in str(e.value)


def test_inconsistent_or_untyped_values_are_refused():
    t = as_teacher("fusion(hash:32,hash:64)")
    with pytest.raises(HardnegError, match="a Teacher needs"):
        Teacher(t.ref, EncoderSpec(model="hash"))
    with pytest.raises(HardnegError, match="teachers must be strings"):
        make_teacher(42)
    with pytest.raises(HardnegError, match="teachers must be strings"):
        make_teacher(["hash", 3])
