"""Content hashes are unambiguous: different (ids, texts) never share a fingerprint, whatever characters they hold.

The corpus / queries fingerprints key the candidate-pool cache and the run stages, so a collision would silently
reuse another dataset's pool. They used to be a sha256 of ids and texts joined with "\\x1f", which collides.
"""
from __future__ import annotations

import hashlib

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hardneg.encode.cache import content_sha256
from hardneg.hashing import sha256_fields, sha256_pairs
from hardneg.mining.pipeline import pool_key
from hardneg.types import Corpus, Dataset, Queries

# Every C0 control character, DEL, and the characters a separator-based format would use.
ALPHABET = [chr(c) for c in range(0x20)] + ["\x7f", "|", "\t", "\n", '"', "'", "\\", " ", ",", "a", "b", "é",
                                            "\u2028", "\ufeff"]
FIELD = st.text(alphabet=st.sampled_from(ALPHABET), max_size=5)
SEPARATORS = ["\x00", "\x1e", "\x1f", "|", "\t", "\n", ",", '"']  # what a joined format would split on


def _old_join(ids: tuple[str, ...], texts: tuple[str, ...]) -> str:
    """What the old fingerprint hashed: ids and texts interleaved, joined with \\x1f."""
    return "\x1f".join(x for pair in zip(ids, texts) for x in pair)


def _lp(b: bytes) -> bytes:
    return len(b).to_bytes(8, "little") + b


# Two corpora that collided under the old rule: "a\x1fb" + "\x1f" + "c" == "a" + "\x1f" + "b\x1fc".
A_IDS, A_TEXTS = ("a\x1fb",), ("c",)
B_IDS, B_TEXTS = ("a",), ("b\x1fc",)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(FIELD, FIELD), max_size=4), st.lists(st.tuples(FIELD, FIELD), max_size=4))
def test_distinct_queries_have_distinct_fingerprints(a, b):
    assume(a != b)
    qa = Queries(tuple(i for i, _ in a), tuple(t for _, t in a))
    qb = Queries(tuple(i for i, _ in b), tuple(t for _, t in b))
    assert qa.fingerprint != qb.fingerprint


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(FIELD, FIELD, FIELD), max_size=4), st.lists(st.tuples(FIELD, FIELD, FIELD), max_size=4))
def test_distinct_corpora_have_distinct_fingerprints(a, b):
    ca = Corpus(*(tuple(col) for col in zip(*a))) if a else Corpus((), (), ())
    cb = Corpus(*(tuple(col) for col in zip(*b))) if b else Corpus((), (), ())
    # The corpus fingerprint is over what gets encoded (title + " " + text, stripped), so compare that.
    assume((ca.ids, ca.encoding_texts) != (cb.ids, cb.encoding_texts))
    assert ca.fingerprint != cb.fingerprint


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_regrouping_fields_across_a_separator_changes_the_fingerprint(data):
    """Adversarial: join the fields with some separator, cut the joined text at other occurrences of it, and the
    new field sequence (equal under any separator-join hash with that separator) must hash differently."""
    sep = data.draw(st.sampled_from(SEPARATORS), label="separator")
    field = st.text(alphabet=st.sampled_from([sep, sep, "a", "|", "\x00"]), max_size=4)
    fields = data.draw(st.lists(field, min_size=2, max_size=6).filter(lambda f: len(f) % 2 == 0), label="fields")
    joined = sep.join(fields)
    cuts = [i for i, c in enumerate(joined) if c == sep]
    k = data.draw(st.integers(1, len(cuts)).filter(lambda n: n % 2 == 1), label="cuts")  # an even field count
    chosen = sorted(data.draw(st.lists(st.sampled_from(cuts), min_size=k, max_size=k, unique=True), label="at"))
    other = [joined[i + 1:j] for i, j in zip([-1, *chosen], [*chosen, len(joined)])]
    assume(other != fields)
    assert sep.join(other) == joined  # the two sequences are indistinguishable once joined
    qa = Queries(tuple(fields[0::2]), tuple(fields[1::2]))
    qb = Queries(tuple(other[0::2]), tuple(other[1::2]))
    assert qa.fingerprint != qb.fingerprint


def test_equal_content_has_equal_fingerprints():
    assert Queries(("q\x1f", "q2"), ("x", "y\n")).fingerprint == Queries(("q\x1f", "q2"), ("x", "y\n")).fingerprint
    assert Corpus(("d",), ("T",), ("x",)).fingerprint == Corpus(("d",), ("",), ("T x",)).fingerprint  # same text


def test_old_separator_join_collided_and_the_new_fingerprints_do_not():
    old_a, old_b = _old_join(A_IDS, A_TEXTS), _old_join(B_IDS, B_TEXTS)
    assert old_a == old_b == "a\x1fb\x1fc"  # the old rule hashed the same string for both
    assert hashlib.sha256(old_a.encode()).hexdigest() == hashlib.sha256(old_b.encode()).hexdigest()
    assert Queries(A_IDS, A_TEXTS).fingerprint != Queries(B_IDS, B_TEXTS).fingerprint
    assert Corpus(A_IDS, ("",), A_TEXTS).fingerprint != Corpus(B_IDS, ("",), B_TEXTS).fingerprint


def test_fingerprint_is_the_length_prefixed_pair_stream():
    # Hand-built stream: pair count, then each field as 8-byte little-endian length + UTF-8 bytes.
    stream = (2).to_bytes(8, "little") + _lp(b"q1") + _lp("caf\u00e9".encode()) + _lp(b"q\x1f2") + _lp(b"")
    assert Queries(("q1", "q\x1f2"), ("caf\u00e9", "")).fingerprint == hashlib.sha256(stream).hexdigest()
    assert sha256_fields(["ab", "", "\x00"]) == hashlib.sha256(_lp(b"ab") + _lp(b"") + _lp(b"\x00")).hexdigest()


def test_embedding_cache_content_key_is_unchanged():
    # Computed with the implementation before the shared helper existed: existing cache entries stay valid.
    assert content_sha256(["d1", "d2"], ["cats purr", "dogs\x1fbark"]) == \
        "52b65f8322f8ca79f9bac413b94a5a1b89b4f0c9c48aba6700a4e30c27b94e4f"
    assert content_sha256([], []) == "af5570f5a1810b7af78caf4bc70a660f0df51e42baf91d4de5b2328de0e83dfc"
    assert sha256_pairs(["d1"], ["x"]) == content_sha256(["d1"], ["x"])


def _dataset(corpus: Corpus) -> Dataset:
    return Dataset("toy", "train", corpus, Queries(("q1",), ("a query",)), {"q1": {"a": 1}})


def test_pool_cache_key_differs_for_the_old_colliding_corpora():
    ds_a = _dataset(Corpus(A_IDS, ("",), A_TEXTS))
    ds_b = _dataset(Corpus(B_IDS, ("",), B_TEXTS))
    assert pool_key("teacher", ds_a, 10) != pool_key("teacher", ds_b, 10)
    # ... while the same data gives the same key (the inequality is not noise).
    assert pool_key("teacher", ds_a, 10) == pool_key("teacher", _dataset(Corpus(A_IDS, ("",), A_TEXTS)), 10)


def test_decoder_weights_digest_length_prefixes_every_field():
    torch = __import__("pytest").importorskip("torch")
    from hardneg.llm.decoder import weights_digest

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("w|x", torch.tensor([1.0, -2.0], dtype=torch.float32))
            self.register_buffer("b", torch.tensor([3], dtype=torch.int8))

    raw_w = b"\x00\x00\x80\x3f" + b"\x00\x00\x00\xc0"  # 1.0 and -2.0 as little-endian float32
    stream = (_lp(b"b") + _lp(b"torch.int8") + _lp(b"(1,)") + _lp(b"\x03")
              + _lp(b"w|x") + _lp(b"torch.float32") + _lp(b"(2,)") + _lp(raw_w))
    assert weights_digest(Tiny()) == hashlib.sha256(stream).hexdigest()


def test_injection_manifests_with_the_old_fingerprint_still_verify(tmp_path):
    """Manifests written before the change hold the \\x1f-joined fingerprint; evaluation must still accept them
    (and still reject a corpus that differs)."""
    import json

    import pytest

    from conftest import write_beir
    from hardneg.data.inject import MANIFEST, inject_false_negatives, load_manifest, strip_injected
    from hardneg.data.load import load_dataset
    from hardneg.errors import HardnegError

    src = write_beir(tmp_path / "src")
    dst = tmp_path / "inj"
    inject_false_negatives(src, dst, split="train", rate=1.0)
    source = load_dataset(src, "train").corpus
    old = hashlib.sha256(_old_join(source.ids, source.encoding_texts).encode()).hexdigest()
    assert old != source.fingerprint
    raw = json.loads((dst / MANIFEST).read_text())
    for value, ok in ((old, True), (source.fingerprint, True), ("0" * 64, False)):
        raw["source"]["corpus_fingerprint"] = value
        (dst / MANIFEST).write_text(json.dumps(raw))
        ds = load_dataset(dst, "train")
        if ok:
            assert strip_injected(ds, load_manifest(dst)).corpus == source
        else:
            with pytest.raises(HardnegError, match="differs from the source corpus"):
                strip_injected(ds, load_manifest(dst))
