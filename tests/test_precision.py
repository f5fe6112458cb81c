"""Compute precision: caps detection, resolution (auto / bf16 / fp32 / int8), fingerprints and cache keys, the
fidelity probe, bf16 training resolution, and the bf16 first pass of the exact search."""
from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

from hardneg.encode import precision as P
from hardneg.encode.cache import cache_key, encode_cached
from hardneg.encode.encoder import EncoderSpec, encoder_precision, load_encoder
from hardneg.errors import HardnegError
from hardneg.search.exact import exact_search

BF16_CPU = P.DeviceCaps(cpu_flags=frozenset({"avx512f", "avx512_bf16", "avx512_vnni"}))
NO_BF16_CPU = P.DeviceCaps(cpu_flags=frozenset({"avx2", "avx512f", "avx512_vnni"}))
AMX_CPU = P.DeviceCaps(cpu_flags=frozenset({"amx_bf16", "amx_tile"}))
GPU_BF16 = P.DeviceCaps(device="cuda", cuda_bf16=True)
GPU_NO_BF16 = P.DeviceCaps(cpu_flags=frozenset({"avx512_bf16"}), device="cuda", cuda_bf16=False)

# Computed before `precision` existed (commit 1067be0): fp32 fingerprints and cache keys must never change, or
# every cached embedding and pool of earlier runs would be recomputed.
HASH64_FP32_FINGERPRINT = "953b12326b5d0b4803d7501ff461a571"
HASH64_FP32_CACHE_KEY = "0027664275b7eb0ff241b10177637f40"  # cache_key(enc, ["a"], ["x"], "doc")
MINILM256_FP32_FINGERPRINT = "cc58724ef962b2da398dc2d60ddaa33b"
MINILM256_FP32_CACHE_KEY = "99d8a921ea50e6f12c49e4923950d6b6"

TEXTS = ["cats purr and sleep all day", "dogs bark and fetch the ball", "Vitamin D deficiency and bone loss",
         "", "BRCA1 mutations raise breast cancer risk"]


@pytest.fixture(autouse=True)
def _fresh_probe_cache():
    P.clear_probe_cache()
    yield
    P.clear_probe_cache()


def force_caps(monkeypatch: pytest.MonkeyPatch, caps: P.DeviceCaps) -> None:
    monkeypatch.setattr(P, "cpu_caps", lambda: caps)


# ---------------------------------------------------------------- caps detection

def test_read_cpu_flags_x86_arm_and_missing(tmp_path: Path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse avx512f avx512_bf16 avx512_vnni\n\n"
                   "processor\t: 1\nflags\t\t: fpu\n")
    assert P.read_cpu_flags(x86) == frozenset({"fpu", "sse", "avx512f", "avx512_bf16", "avx512_vnni"})
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\nCPU implementer\t: 0x41\n")
    assert P.DeviceCaps(cpu_flags=P.read_cpu_flags(arm)).native_bf16
    assert P.read_cpu_flags(tmp_path / "missing") == frozenset()


def test_cpu_caps_reads_this_machine():
    caps = P.cpu_caps()
    assert caps.device in ("cpu", "cuda")
    if caps.device == "cpu":
        assert caps.native_bf16 == any(f in P.read_cpu_flags() for f in ("avx512_bf16", "amx_bf16", "bf16"))
    assert json.dumps(caps.to_dict())  # JSON-ready for records


def test_native_bf16_per_device():
    assert BF16_CPU.native_bf16 and AMX_CPU.native_bf16 and GPU_BF16.native_bf16
    assert not NO_BF16_CPU.native_bf16
    assert not GPU_NO_BF16.native_bf16  # the model runs on the GPU: the CPU's flags do not matter
    assert "avx512_bf16" in BF16_CPU.describe() and "no bf16" in GPU_NO_BF16.describe()


# ---------------------------------------------------------------- resolve_precision (pure)

def test_resolve_fp32_never_asks_the_probe():
    def boom() -> float:
        raise AssertionError("probe called")
    assert P.resolve_precision("fp32", BF16_CPU, boom) == ("fp32", "fp32 requested")
    assert P.resolve_precision("fp32", NO_BF16_CPU, boom)[0] == "fp32"


def test_resolve_auto():
    assert P.resolve_precision("auto", BF16_CPU, lambda: 0.99997)[0] == "bf16"
    assert P.resolve_precision("auto", AMX_CPU, lambda: 0.9995)[0] == "bf16"
    prec, why = P.resolve_precision("auto", NO_BF16_CPU, lambda: 1.0)
    assert prec == "fp32" and "no native bf16" in why
    prec, why = P.resolve_precision("auto", BF16_CPU, lambda: 0.99)
    assert prec == "fp32" and "probe failed" in why and "0.990000" in why
    assert P.resolve_precision("auto", BF16_CPU, lambda: float("nan"))[0] == "fp32"
    assert P.resolve_precision("auto", GPU_BF16)[0] == "bf16"  # no probe: the hardware decides
    assert P.resolve_precision("auto", GPU_NO_BF16)[0] == "fp32"


def test_resolve_explicit_bf16():
    assert P.resolve_precision("bf16", BF16_CPU, lambda: 0.0)[0] == "bf16"  # explicit: no probe veto
    with pytest.raises(HardnegError) as e:
        P.resolve_precision("bf16", NO_BF16_CPU)
    msg = str(e.value)
    assert "native bf16" in msg and "Fix:" in msg and "\n" not in msg


@pytest.mark.parametrize("bad", ["fp8", "FP32", "float16", "", None, 16])
def test_unknown_precision_is_a_one_line_error(bad):
    with pytest.raises(HardnegError) as e:
        EncoderSpec(model="hash:16", precision=bad)
    msg = str(e.value)
    assert "precision must be one of auto, fp32, bf16, int8" in msg and "Fix:" in msg and "\n" not in msg


def test_int8_is_not_available_and_says_what_to_use():
    with pytest.raises(HardnegError) as e:
        EncoderSpec(model="minilm", precision="int8")
    msg = str(e.value)
    assert "not available" in msg and "0.846" in msg and 'precision = "bf16"' in msg and "\n" not in msg
    with pytest.raises(HardnegError):
        EncoderSpec.from_dict({"model": "minilm", "precision": "int8"})


def test_onnx_backend_takes_no_bf16():
    with pytest.raises(HardnegError, match="torch backend"):
        EncoderSpec(model="minilm-int8", precision="bf16")
    assert EncoderSpec(model="minilm-int8", precision="auto").backend == "onnx"


# ---------------------------------------------------------------- spec records and fingerprints (hash encoder)

def test_to_dict_leaves_out_default_fp32():
    assert "precision" not in EncoderSpec(model="hash:16").to_dict()
    d = EncoderSpec(model="hash:16", precision="bf16").to_dict()
    assert d["precision"] == "bf16" and EncoderSpec.from_dict(d) == EncoderSpec(model="hash:16", precision="bf16")
    assert EncoderSpec.from_dict(EncoderSpec(model="hash:16").to_dict()).precision == "fp32"


def test_fp32_fingerprint_and_cache_key_unchanged():
    enc = load_encoder(EncoderSpec(model="hash:64"))
    assert encoder_precision(enc) == "fp32"
    assert enc.fingerprint() == HASH64_FP32_FINGERPRINT
    assert cache_key(enc, ["a"], ["x"], "doc") == HASH64_FP32_CACHE_KEY


def test_encoder_precision_of_an_encoder_that_does_not_say():
    class Wrapper:
        def __init__(self, spec):
            self.spec = spec
    assert encoder_precision(Wrapper(EncoderSpec(model="hash:16"))) == "fp32"
    assert encoder_precision(Wrapper(EncoderSpec(model="hash:16", precision="auto"))) == "unknown"


def test_output_settings_needs_a_resolved_precision():
    spec = EncoderSpec(model="hash:16", precision="auto")
    assert "precision" not in spec.output_settings(None, "fp32")
    assert spec.output_settings(None, "bf16")["precision"] == "bf16"
    with pytest.raises(ValueError):
        spec.output_settings(None, "auto")


def test_bf16_fingerprint_and_cache_key_differ(monkeypatch, tmp_path):
    force_caps(monkeypatch, BF16_CPU)
    fp32 = load_encoder(EncoderSpec(model="hash:64"))
    bf16 = load_encoder(EncoderSpec(model="hash:64", precision="bf16"))
    assert bf16.precision == "bf16" and fp32.precision == "fp32"
    assert bf16.fingerprint() != fp32.fingerprint()
    assert cache_key(bf16, ["a"], ["x"], "doc") != cache_key(fp32, ["a"], ["x"], "doc")
    ids = [f"d{i}" for i in range(len(TEXTS))]
    a = encode_cached(fp32, ids, TEXTS, "doc", tmp_path)
    b = encode_cached(bf16, ids, TEXTS, "doc", tmp_path)
    entries = sorted((tmp_path / "emb").iterdir())
    assert len(entries) == 2  # one entry per precision
    metas = {json.loads((e / "meta.json").read_text())["precision"] for e in entries}
    assert metas == {"fp32", "bf16"}
    assert a.dtype == b.dtype == np.float32 and not np.array_equal(a, b)
    assert P.min_cosine(a, b) > 0.999


def test_same_precision_twice_is_byte_identical_hash(monkeypatch):
    force_caps(monkeypatch, BF16_CPU)
    for prec in ("fp32", "bf16"):
        enc = load_encoder(EncoderSpec(model="hash:64", precision=prec))
        assert enc.encode(TEXTS, "doc").tobytes() == enc.encode(TEXTS, "doc").tobytes()


def test_auto_without_native_bf16_is_fp32_with_the_fp32_key(monkeypatch, caplog):
    force_caps(monkeypatch, NO_BF16_CPU)
    monkeypatch.setattr(P, "probe_min_cosine", lambda *a, **k: pytest.fail("probe must not run without bf16"))
    with caplog.at_level("INFO", logger="hardneg"):
        enc = load_encoder(EncoderSpec(model="hash:64", precision="auto"))
    assert enc.precision == "fp32" and "no native bf16" in enc.precision_reason
    assert enc.fingerprint() == HASH64_FP32_FINGERPRINT  # same embeddings as fp32, same cache entry
    assert any("encoder precision fp32" in r.message for r in caplog.records)


def test_auto_with_native_bf16_takes_bf16_when_the_probe_passes(monkeypatch):
    force_caps(monkeypatch, BF16_CPU)
    enc = load_encoder(EncoderSpec(model="hash:64", precision="auto"))
    assert enc.precision == "bf16" and "probe passed" in enc.precision_reason
    assert enc.fingerprint() == load_encoder(EncoderSpec(model="hash:64", precision="bf16")).fingerprint()


def test_auto_falls_back_to_fp32_when_the_probe_fails(monkeypatch, caplog):
    force_caps(monkeypatch, BF16_CPU)
    monkeypatch.setattr(P, "probe_min_cosine", lambda *a, **k: 0.95)
    with caplog.at_level("INFO", logger="hardneg"):
        enc = load_encoder(EncoderSpec(model="hash:64", precision="auto"))
    assert enc.precision == "fp32" and "probe failed" in enc.precision_reason
    assert enc.fingerprint() == HASH64_FP32_FINGERPRINT
    assert any("probe failed" in r.message for r in caplog.records)


def test_probe_runs_once_per_model_fingerprint(monkeypatch):
    force_caps(monkeypatch, BF16_CPU)
    calls = []
    real = P.probe_min_cosine

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)
    monkeypatch.setattr(P, "probe_min_cosine", counting)
    for _ in range(3):
        load_encoder(EncoderSpec(model="hash:64", precision="auto"))
    assert len(calls) == 1
    load_encoder(EncoderSpec(model="hash:32", precision="auto"))  # another model: its own probe
    load_encoder(EncoderSpec(model="hash:64", precision="auto", doc_prompt="passage: "))  # other settings
    assert len(calls) == 3


def test_explicit_bf16_without_native_bf16_is_an_error(monkeypatch):
    force_caps(monkeypatch, NO_BF16_CPU)
    with pytest.raises(HardnegError) as e:
        load_encoder(EncoderSpec(model="hash:64", precision="bf16"))
    assert "native bf16" in str(e.value) and "\n" not in str(e.value)


def test_probe_min_cosine_compares_both_kinds():
    seen = []

    def enc(texts, kind, prec):
        seen.append((kind, prec))
        v = np.ones((len(texts), 4), dtype=np.float32)
        if kind == "query" and prec == "bf16":
            v[0] = [1, -1, 0, 0]  # orthogonal to the fp32 vector
        return v
    assert P.probe_min_cosine(enc) == pytest.approx(0.0)
    assert set(seen) == {("query", "fp32"), ("query", "bf16"), ("doc", "fp32"), ("doc", "bf16")}
    assert P.probe_min_cosine(enc, kinds=("doc",)) == pytest.approx(1.0)


# ---------------------------------------------------------------- training: bf16 resolution

def test_train_bf16_resolution(monkeypatch):
    from hardneg.train import TrainConfig
    from hardneg.train.trainer import resolve_bf16, use_bf16

    force_caps(monkeypatch, BF16_CPU)
    r = resolve_bf16(TrainConfig(bf16="auto"))
    assert r["bf16"] is True and r["weights_dtype"] == "float32" and "fp32 master weights" in r["reason"]
    assert use_bf16(TrainConfig(bf16=True)) is True
    assert resolve_bf16(TrainConfig(bf16=False))["bf16"] is False  # the way to force fp32
    force_caps(monkeypatch, GPU_BF16)
    assert resolve_bf16(TrainConfig(bf16="auto"))["weights_dtype"] == "bfloat16"  # GPUs: as before
    force_caps(monkeypatch, NO_BF16_CPU)
    r = resolve_bf16(TrainConfig(bf16="auto"))
    assert r["bf16"] is False and "no native bf16" in r["reason"]
    with pytest.raises(HardnegError, match="no native bf16"):
        use_bf16(TrainConfig(bf16=True))
    monkeypatch.setattr(P, "cpu_caps", lambda: pytest.fail("bf16=false must not look at the hardware"))
    assert use_bf16(TrainConfig(bf16=False)) is False


def test_train_bf16_on_cpu_runs_with_autocast_and_records_it(monkeypatch, tmp_path):
    """A short run of a tiny random BERT with bf16 forced on by the caps: fp32 weights, autocast, recorded."""
    from hardneg.testing import make_tiny_student
    from hardneg.train import TrainConfig
    from hardneg.train.trainer import fit

    if torch.cuda.is_available():
        pytest.skip("checks the CPU path")
    force_caps(monkeypatch, BF16_CPU)
    rng = np.random.default_rng(0)
    words = "cells genes protein cancer tumor patients study brain heart blood liver kidney".split()

    def text(n: int, tag: str) -> str:
        return " ".join(rng.choice(words, size=n)) + f" {tag}"
    rows = [{"qid": f"q{i}", "query": text(4, f"q{i}"), "pos": {"docid": f"p{i}", "text": text(10, f"p{i}")},
             "neg": [{"docid": f"n{i}", "text": text(10, f"n{i}")}]} for i in range(8)]
    student = make_tiny_student(tmp_path / "student")
    cfg = TrainConfig(student=str(student), batch_size=4, max_steps=2, learning_rate=1e-3, query_max_length=8,
                      doc_max_length=16, warmup_ratio=0.0, bf16="auto")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = fit(rows, cfg, tmp_path / "out", progress=False)
    finally:
        torch.set_num_threads(old)
    rec = json.loads((tmp_path / "out" / "train_config.json").read_text())
    assert rec["precision"]["bf16"] is True and rec["precision"]["weights_dtype"] == "float32"
    assert rec["config"]["bf16"] == "auto"
    assert all(p.dtype == torch.float32 for p in res.model.parameters())  # fp32 master weights
    assert res.record["result"]["steps"] == 2 and math_finite(res.record["result"]["train_loss"])


def math_finite(x: float) -> bool:
    return bool(np.isfinite(x))


# ---------------------------------------------------------------- search: bf16 first pass

def _clustered(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((8, dim))
    x = centres[rng.integers(0, 8, n)] + 0.7 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("doc_block", [65536, 97])
def test_bf16_first_pass_verified_is_exact(doc_block):
    q, d = _clustered(40, 32, 1), _clustered(1000, 32, 2)
    s0, i0 = exact_search(q, d, 10, doc_block=doc_block)
    st: dict = {}
    s1, i1 = exact_search(q, d, 10, doc_block=doc_block, first_pass="bf16", margin=10, stats=st)
    assert st["first_pass"] == "bf16" and st["candidates"] == 20 and st["slots"] == 400
    assert st["verified_queries"] == st["uncertain_queries"]
    assert np.array_equal(i0, i1)
    np.testing.assert_allclose(s0, s1, rtol=0, atol=1e-6)


def test_bf16_first_pass_counts_uncertain_slots_and_shards():
    q, d = _clustered(30, 32, 3), _clustered(600, 32, 4)
    st: dict = {}
    s0, i0 = exact_search(q, d, 5)
    # margin 0: the cut is the last slot itself, so every query has an uncertain slot
    s1, i1 = exact_search(q, [d[:250], d[250:]], 5, first_pass="bf16", margin=0, verify=False, stats=st)
    assert st["uncertain_queries"] == 30 and st["verified_queries"] == 0 and st["uncertain_slots"] >= 30
    s1a, i1a = exact_search(q, d, 5, first_pass="bf16", margin=0, verify=False)  # shards = one array, bit for bit
    assert np.array_equal(i1, i1a) and np.array_equal(s1, s1a)
    assert np.all(np.abs(s1 - np.einsum("qd,qkd->qk", q, d[i1])) < 1e-5)  # the scores are the rows' real scores
    s2, i2 = exact_search(q, [d[:250], d[250:].astype(np.float16)], 5, first_pass="bf16", margin=0)
    assert np.array_equal(i2, exact_search(q, [d[:250], d[250:].astype(np.float16)], 5)[1])


def test_gather_rows_across_shards():
    from hardneg.search.exact import _gather_rows

    d = _clustered(50, 8, 7)
    rows = np.array([[49, 0, 20], [21, 19, 3]])
    for shards in ([d], [d[:20], d[20:]], [d[:5], d[5:21].astype(np.float16), d[21:]]):
        got = _gather_rows(shards, rows, 8)
        assert got.shape == (2, 3, 8) and got.dtype == np.float32
        np.testing.assert_allclose(got, d[rows], atol=1e-3)


def test_bf16_first_pass_degenerate_cases():
    q, d = _clustered(5, 16, 5), _clustered(12, 16, 6)
    st: dict = {}
    s, i = exact_search(q, d, 10, first_pass="bf16", stats=st)  # depth + margin covers the corpus: fp32 pass
    assert st["first_pass"] == "fp32" and np.array_equal(i, exact_search(q, d, 10)[1])
    with pytest.raises(ValueError):
        exact_search(q, d, 3, first_pass="fp16")
    with pytest.raises(ValueError):
        exact_search(q, d, 3, first_pass="bf16", margin=-1)


# ---------------------------------------------------------------- real MiniLM (slow)

@pytest.fixture(scope="module")
def minilm_fp32():
    return load_encoder(EncoderSpec(model="minilm", max_seq_length=256))


@pytest.mark.slow
def test_minilm_fp32_fingerprint_unchanged(minilm_fp32):
    assert minilm_fp32.precision == "fp32"
    assert minilm_fp32.fingerprint() == MINILM256_FP32_FINGERPRINT
    assert cache_key(minilm_fp32, ["a"], ["x"], "doc") == MINILM256_FP32_CACHE_KEY


@pytest.mark.slow
def test_minilm_bf16_is_deterministic_faithful_and_keyed_apart(minilm_fp32, monkeypatch):
    force_caps(monkeypatch, BF16_CPU)  # autocast runs (emulated) even where the CPU has no bf16
    bf16 = load_encoder(EncoderSpec(model="minilm", max_seq_length=256, precision="bf16"))
    assert bf16.precision == "bf16" and bf16.fingerprint() != minilm_fp32.fingerprint()
    assert cache_key(bf16, ["a"], ["x"], "doc") != MINILM256_FP32_CACHE_KEY
    a1, a2 = minilm_fp32.encode(TEXTS, "doc", progress=False), minilm_fp32.encode(TEXTS, "doc", progress=False)
    b1, b2 = bf16.encode(TEXTS, "doc", progress=False), bf16.encode(TEXTS, "doc", progress=False)
    assert a1.tobytes() == a2.tobytes() and b1.tobytes() == b2.tobytes()
    assert b1.dtype == np.float32 and b1.flags.c_contiguous and b1.shape == a1.shape
    assert not np.array_equal(a1, b1) and P.min_cosine(a1, b1) >= P.MIN_PROBE_COSINE


@pytest.mark.slow
def test_minilm_auto_follows_the_caps(monkeypatch):
    force_caps(monkeypatch, NO_BF16_CPU)
    enc = load_encoder(EncoderSpec(model="minilm", max_seq_length=256, precision="auto"))
    assert enc.precision == "fp32" and enc.fingerprint() == MINILM256_FP32_FINGERPRINT
    force_caps(monkeypatch, BF16_CPU)
    enc = load_encoder(EncoderSpec(model="minilm", max_seq_length=256, precision="auto"))
    assert enc.precision == "bf16" and "probe passed" in enc.precision_reason


def test_a_mining_teacher_asked_for_auto_mines_in_fp32(tmp_path):
    """auto is fp32 for a teacher (bf16 changed 6.3% of mined rows): same spec, fingerprint and cache key as fp32;
    bf16 named explicitly stays bf16; fusion members follow the base."""
    from hardneg.mining.teachers import as_teacher, make_teacher, teacher_fingerprint

    auto = make_teacher("hash:16", precision="auto")
    assert auto.base.precision == "fp32" and auto == make_teacher("hash:16")
    assert teacher_fingerprint(auto, tmp_path) == teacher_fingerprint(make_teacher("hash:16"), tmp_path)
    assert make_teacher("hash:16", precision="bf16").base.precision == "bf16"
    fused = as_teacher(EncoderSpec(model="fusion(hash:8,hash:16)", precision="auto"))
    assert [s.precision for s in fused.members()] == ["fp32", "fp32"]


def test_an_evaluated_encoder_keeps_its_own_auto_in_run_stage_keys(monkeypatch, tmp_path):
    """Only a mining teacher's auto means fp32: a run's evaluated model (an EncoderSpec) is keyed by what its
    encodes resolve to (bf16 here), so an fp32 evaluation can never reuse a bf16 one's stage."""
    from hardneg.experiments.run import Context
    from hardneg.mining.teachers import as_teacher

    force_caps(monkeypatch, BF16_CPU)
    ctx = Context(cache_dir=tmp_path, splits={})
    spec = EncoderSpec(model="hash:64", precision="auto")
    assert ctx.fingerprint(spec) == load_encoder(spec).fingerprint() != HASH64_FP32_FINGERPRINT
    assert ctx.fingerprint(as_teacher(spec)) == HASH64_FP32_FINGERPRINT
