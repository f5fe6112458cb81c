"""Ray on a local 2-CPU instance: sharded search == exact_search (ties included), Ray encoding == single
process, the Ray pool == build_pool, and a killed Ray encode resumes from the cache's finished shards."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

ray = pytest.importorskip("ray")

from hardneg.encode.cache import ensure_cached, open_cached  # noqa: E402
from hardneg.encode.encoder import EncoderSpec, load_encoder  # noqa: E402
from hardneg.errors import HardnegError  # noqa: E402
from hardneg.mining.candidates import build_pool  # noqa: E402
from hardneg.scale import RayEncoder, build_pool_ray, encode_ray, init_ray, ray_search  # noqa: E402
from hardneg.search import search  # noqa: E402
from hardneg.search.exact import exact_search  # noqa: E402
from hardneg.types import Corpus, Dataset, Queries  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    os.environ.pop("RAY_ADDRESS", None)  # never reach a real cluster from the tests
    init_ray(num_cpus=2, object_store_memory=256 * 1024**2, configure_logging=False, log_to_driver=False)
    yield
    ray.shutdown()


def tie_data(nd: int = 300, nq: int = 17, dim: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Small integer vectors: many exactly equal scores, all exact in float32, duplicates across shards."""
    rng = np.random.default_rng(seed)
    d = rng.integers(-2, 3, size=(nd, dim)).astype(np.float32)
    d[150] = d[3]
    d[299] = d[3]
    q = rng.integers(-2, 3, size=(nq, dim)).astype(np.float32)
    return q, d


def test_sharded_search_equals_exact_with_ties(tmp_path):
    q, d = tie_data()
    shards = [d[:37], d[37:150], d[150:151], d[151:]]
    want_s, want_i = exact_search(q, shards, 25)
    for per_task in (1, 60, 10_000):  # one shard per task ... everything in one task
        s, i = ray_search(q, shards, 25, rows_per_task=per_task)
        np.testing.assert_array_equal(i, want_i)
        np.testing.assert_array_equal(s, want_s)
    # One array cut at doc_block multiples, and .npy paths memmapped by the workers.
    s, i = ray_search(q, d, 25, doc_block=16, rows_per_task=40)
    np.testing.assert_array_equal(i, exact_search(q, d, 25, doc_block=16)[1])
    paths = []
    for j, sh in enumerate(shards):
        paths.append(str(tmp_path / f"shard-{j}.npy"))
        np.save(paths[-1], sh)
    s, i = ray_search(q, paths, 25, rows_per_task=100)
    np.testing.assert_array_equal(i, want_i)
    np.testing.assert_array_equal(s, want_s)
    with pytest.raises(HardnegError, match="dim"):
        ray_search(q[:, :2], shards, 5)
    # depth beyond the corpus, through the dispatcher
    s, i = search(q, shards, 1000, backend="ray")
    assert i.shape == (17, 300)
    np.testing.assert_array_equal(i, exact_search(q, shards, 1000)[1])


def test_sharded_search_random_fp16_memmaps_equal_exact(tmp_path):
    rng = np.random.default_rng(3)
    d = rng.normal(size=(2000, 32)).astype(np.float16)
    q = rng.normal(size=(50, 32)).astype(np.float32)
    shards = []
    for j, lo in enumerate(range(0, 2000, 512)):
        np.save(tmp_path / f"s{j}.npy", d[lo:lo + 512])
        shards.append(np.load(tmp_path / f"s{j}.npy", mmap_mode="r"))
    want_s, want_i = exact_search(q, shards, 40)
    s, i = ray_search(q, shards, 40, rows_per_task=512)
    np.testing.assert_array_equal(i, want_i)
    # Scores reach ~15: one float32 ulp is ~1e-6, and BLAS summation order differs per CPU (seen: 3.8e-6).
    np.testing.assert_allclose(s, want_s, rtol=1e-6, atol=0)


def toy_dataset(n_docs: int = 120) -> tuple[Dataset, list[str]]:
    words = ["cat", "dog", "fish", "bird", "ball", "sea", "food", "sleep", "night", "bark", "fly", "round"]
    rng = np.random.default_rng(5)
    texts = [" ".join(rng.choice(words, size=4)) for _ in range(n_docs)]
    ids = [f"d{i}" for i in range(n_docs)]
    corpus = Corpus(tuple(ids), ("",) * n_docs, tuple(texts))
    queries = Queries(tuple(f"q{i}" for i in range(10)), tuple(" ".join(rng.choice(words, size=2)) for _ in range(10)))
    qrels = {f"q{i}": {f"d{(7 * i) % n_docs}": 1, f"d{(7 * i + 3) % n_docs}": int(i % 2)} for i in range(10)}
    return Dataset("toy", "train", corpus, queries, qrels), list(corpus.encoding_texts)


def test_build_pool_ray_equals_build_pool():
    ds, texts = toy_dataset()
    enc = load_encoder(EncoderSpec(model="hash:16"))
    d_emb = enc.encode(texts, "doc")
    q_emb = enc.encode(list(ds.queries.texts), "query")
    shards = [d_emb[:50], d_emb[50:51], d_emb[51:]]
    want = build_pool("hash", ds, q_emb, shards, depth=20)
    got = build_pool_ray("hash", ds, q_emb, shards, depth=20, rows_per_task=30)
    assert got.qids == want.qids and got.meta == want.meta
    for name in ("cand_idx", "cand_score", "cand_rank", "pos_ptr", "pos_idx", "pos_score"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)


def test_ray_encoding_equals_single_process_and_writes_the_same_cache(tmp_path):
    ds, texts = toy_dataset()
    ids = list(ds.corpus.ids)
    spec = EncoderSpec(model="hash", dtype="float16")
    local = load_encoder(spec)
    with RayEncoder(spec, num_workers=2, chunk_size=7) as enc:
        assert enc.fingerprint() == local.fingerprint()
        assert len({(w["host"], w["pid"]) for w in enc.workers}) == 2
        np.testing.assert_array_equal(enc.encode(texts, "doc", progress=False), local.encode(texts, "doc"))
        b = open_cached(enc, ids, texts, "doc", tmp_path / "ray", shard_size=32, progress=False)
    a = open_cached(local, ids, texts, "doc", tmp_path / "single", shard_size=32, progress=False)
    assert len(a) == len(b) == 4
    for x, y in zip(a, b, strict=True):
        assert x.dtype == y.dtype == np.float16
        np.testing.assert_array_equal(x, y)
    ea = ensure_cached(local, ids, texts, "doc", tmp_path / "single", shard_size=32, progress=False)
    eb = ensure_cached(local, ids, texts, "doc", tmp_path / "ray", shard_size=32, progress=False)  # a hit
    assert ea.path.name == eb.path.name and ea.meta == eb.meta


def test_killed_ray_encode_resumes_from_finished_shards(tmp_path):
    ds, texts = toy_dataset(60)
    ids = list(ds.corpus.ids)
    spec = EncoderSpec(model="hash")

    class Crash(RuntimeError):
        pass

    def failing_factory(s, _cache):  # local: Ray pickles it (and the class) by value to the workers
        from hardneg.encode.encoder import load_encoder as load

        class FailAfter:
            """Wraps the real encoder; raises on its 3rd batch, like a worker killed mid-run."""

            def __init__(self, inner, n):
                self.inner, self.spec, self.dim, self.calls, self.n = inner, inner.spec, inner.dim, 0, n

            def fingerprint(self):
                return self.inner.fingerprint()

            def encode(self, texts, kind, *, progress=True):
                self.calls += 1
                if self.calls > self.n:
                    raise Crash(f"killed after {self.n} batches")
                return self.inner.encode(texts, kind, progress=progress)

        return FailAfter(load(s), 2)

    cache = tmp_path / "cache"
    # 6 shards of 10 rows, 2 chunks of 5 per shard (one per worker): each worker dies on its 3rd chunk.
    with RayEncoder(spec, num_workers=2, chunk_size=5, factory=failing_factory) as bad:
        with pytest.raises(Crash):
            ensure_cached(bad, ids, texts, "doc", cache, shard_size=10, progress=False)
    entry_dir = next((cache / "emb").iterdir())
    assert not (entry_dir / "meta.json").exists()
    done = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in entry_dir.glob("shard-*.npy")}
    assert 0 < len(done) < 6

    # Resume with encode_ray (fresh workers): only the missing shards are encoded and written.
    shards = encode_ray(spec, ids, texts, "doc", cache, shard_size=10, num_workers=2, chunk_size=5,
                        progress=False)
    for name, stamp in done.items():  # finished shards were not rewritten (same inode, same mtime)
        p = entry_dir / name
        assert (p.stat().st_ino, p.stat().st_mtime_ns) == stamp
    assert (entry_dir / "meta.json").is_file() and len(list(entry_dir.glob("shard-*.npy"))) == 6
    np.testing.assert_array_equal(np.concatenate(shards), load_encoder(spec).encode(texts, "doc"))


def test_cli_encode_on_ray_equals_local_and_is_recorded(tiny_beir, tmp_path, capsys, monkeypatch):
    """`--encode ray` on mine (with `--search ray` too: the encoders' actors free their CPUs before the search) and
    evaluate: the same mined files, metrics and embedding-cache keys as local encoding; the backend is recorded."""
    import json

    from conftest import run_cli

    mine = ["mine", "--data", str(tiny_beir), "--teacher", "hash", "--depth", "5", "-q",
            "-s", "topk(2)", "-s", "percpos(0.95)+topk(2)", "-s", "sampled(4,2)"]
    code, _, err = run_cli(mine + ["--out", str(tmp_path / "local"), "--cache", str(tmp_path / "c1")], capsys)
    assert code == 0, err
    from hardneg.encode.fake import HashEncoder

    def not_here(*a, **k):
        raise AssertionError("encoded in the driver process")

    monkeypatch.setattr(HashEncoder, "encode", not_here)  # the workers are other processes: they are not patched
    code, _, err = run_cli(mine + ["--out", str(tmp_path / "ray"), "--cache", str(tmp_path / "c2"),
                                   "--encode", "ray:workers=2,chunk_size=3", "--search", "ray"], capsys)
    assert code == 0, err
    files = sorted(p.relative_to(tmp_path / "local") for p in (tmp_path / "local").rglob("*")
                   if p.name in ("mined.jsonl", "stats.json"))
    assert len(files) == 6
    for f in files:
        assert (tmp_path / "ray" / f).read_bytes() == (tmp_path / "local" / f).read_bytes(), f
    # Encoded on Ray (a fresh cache), under the keys of local encoding: the caches are interchangeable.
    assert sorted(p.name for p in (tmp_path / "c2" / "emb").iterdir()) == \
        sorted(p.name for p in (tmp_path / "c1" / "emb").iterdir())
    summary = json.loads((tmp_path / "ray" / "summary.json").read_text())
    assert summary["encode"] == {"backend": "ray", "workers": 2, "chunk_size": 3}
    assert "encode" not in json.loads((tmp_path / "local" / "summary.json").read_text())
    assert "encode" not in json.loads((tmp_path / "ray" / "mine_config.json").read_text())
    resolved = json.loads((tmp_path / "ray" / "config.resolved.json").read_text())
    assert resolved["mine"]["encode"] == "ray:workers=2,chunk_size=3"

    ev = ["evaluate", "--model", "hash", "--data", str(tiny_beir), "--split", "test", "-q"]
    monkeypatch.undo()
    code, _, err = run_cli(ev + ["--out", str(tmp_path / "ev1"), "--cache", str(tmp_path / "c1")], capsys)
    assert code == 0, err
    monkeypatch.setattr(HashEncoder, "encode", not_here)
    code, _, err = run_cli(ev + ["--out", str(tmp_path / "ev2"), "--cache", str(tmp_path / "c3"),
                                 "--encode", "ray:workers=1"], capsys)
    assert code == 0, err
    m1, m2 = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("ev1", "ev2"))
    assert m2.pop("encode") == {"backend": "ray", "workers": 1} and m1 == m2
    assert (tmp_path / "ev1" / "run.trec").read_bytes() == (tmp_path / "ev2" / "run.trec").read_bytes()


def test_run_with_encode_table_on_ray_keeps_stage_keys_and_results(tmp_path, capsys):
    """`hardneg run` with `[encode] backend = "ray"` (teacher and student encoded by actors): the stage folders
    (keys) and metrics of the local run; config.resolved.json records the backend."""
    import json

    from conftest import run_cli
    from hardneg.testing import make_tiny_student, tiny_run_config, write_tiny_beir

    data = write_tiny_beir(tmp_path / "data")
    student = make_tiny_student(tmp_path / "student")
    results = {}
    for name, extra in (("local", ""), ("ray", '[encode]\nbackend = "ray"\nworkers = 2\n')):
        cfg = tmp_path / f"{name}.toml"
        cfg.write_text(tiny_run_config(data, student, tmp_path / name, tmp_path / f"cache-{name}", dev="false",
                                       max_steps=1, evaluate='splits = ["test"]', extra=extra))
        code, _, err = run_cli(["run", str(cfg), "-q"], capsys)
        assert code == 0, err
        results[name] = json.loads((tmp_path / name / "results.json").read_text())
    local, on_ray = results["local"], results["ray"]
    assert on_ray["stages"] == local["stages"] and on_ray["metrics"] == local["metrics"]
    assert on_ray["config"].pop("encode") == {"backend": "ray", "workers": 2} and "encode" not in local["config"]
    resolved = json.loads((tmp_path / "ray" / "config.resolved.json").read_text())
    assert resolved["encode"] == {"backend": "ray", "workers": 2}
