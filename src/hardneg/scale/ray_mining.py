"""Ray (optional extra ``ray``: ``pip install "ray[data]"``): encoding and exact search past one machine.

- Encoding: ``RayEncoder`` is an ``Encoder`` whose ``encode`` splits the texts into chunks and sends them to
  a ``ray.util.ActorPool`` of workers; each worker loads the real encoder once. Plugged into the embedding
  cache (``encode_ray`` = ``open_cached(RayEncoder(...))``) it writes exactly the cache's shard files and
  meta.json on the driver, and a killed run resumes from the finished shards. Its fingerprint is the real
  encoder's, so single-process and Ray runs share cache entries.
- Search: ``ray_search`` gives every task a run of whole corpus shards, runs ``exact_search`` on it (same
  blocks as the single-process search, so the same float bits), and merges the per-task top-k on the driver
  with the stable rule (score desc, row asc): the result is ``exact_search`` on the whole corpus.
- ``build_pool_ray``: ``build_pool`` with ``ray_search`` in place of ``exact_search``.

Connect with ``init_ray(address)``: an explicit address, else the ``RAY_ADDRESS`` environment variable, else a
local instance (``num_cpus`` CPUs). Every function calls it, so a script may just pass ``address=``.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from hardneg.encode.cache import open_cached
from hardneg.encode.encoder import Encoder, EncoderSpec, Kind, check_texts, load_encoder
from hardneg.errors import HardnegError
from hardneg.mining.candidates import build_pool
from hardneg.search import merge_topk
from hardneg.search.exact import exact_search
from hardneg.types import CandidatePool, Dataset

RAY_ADDRESS_ENV = "RAY_ADDRESS"
EncoderFactory = Callable[[EncoderSpec, "Path | None"], Encoder]
ShardLike = np.ndarray | str | os.PathLike


def import_ray() -> Any:
    """The ``ray`` module, or a HardnegError telling how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise HardnegError("the Ray backend needs the ray package, which is not installed",
                           fix='run `pip install "ray[data]"` (or `pip install "hardneg[ray]"`)') from exc
    return ray


def init_ray(address: str | None = None, *, num_cpus: int | None = None, **kw: Any) -> Any:
    """Connect to the cluster at ``address`` (else env ``RAY_ADDRESS``), else start a local Ray instance.

    Does nothing if Ray is already initialised in this process. Returns the ``ray`` module.
    """
    ray = import_ray()
    if ray.is_initialized():
        return ray
    address = address or os.environ.get(RAY_ADDRESS_ENV) or None
    try:
        if address:
            ray.init(address=address, **kw)
        else:
            kw.setdefault("include_dashboard", False)
            ray.init(num_cpus=num_cpus, **kw)
    except ConnectionError as exc:
        raise HardnegError(f"cannot connect to the Ray cluster at {address!r} ({exc})",
                           fix="start it with `ray start --head` and pass its address (host:6379), "
                               "or unset RAY_ADDRESS to run locally") from exc
    return ray


def _cpus_available(ray: Any) -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


# -- encoding -------------------------------------------------------------------------------------------------

class EncodeWorker:
    """Ray actor body: loads one encoder at start, then encodes chunks."""

    def __init__(self, spec: dict[str, Any], model_cache_dir: str | None, factory: EncoderFactory | None,
                 threads: int) -> None:
        import torch

        torch.set_num_threads(max(1, threads))
        s = EncoderSpec.from_dict(spec)
        cache = Path(model_cache_dir) if model_cache_dir else None
        self.encoder = factory(s, cache) if factory is not None else load_encoder(s, cache)

    def info(self) -> dict[str, Any]:
        return {"dim": int(self.encoder.dim), "fingerprint": self.encoder.fingerprint(),
                "host": os.uname().nodename, "pid": os.getpid()}

    def encode(self, texts: list[str], kind: Kind) -> np.ndarray:
        # float32 [n, dim], as the Encoder protocol says (the cache casts to the storage dtype on the driver).
        return np.ascontiguousarray(self.encoder.encode(texts, kind, progress=False), dtype=np.float32)


class RayEncoder:
    """An ``Encoder`` that encodes on a pool of Ray actors (one model load per actor).

    ``num_workers`` actors (default: the cluster's CPUs // ``cpus_per_worker``) of ``cpus_per_worker`` CPUs
    each; ``chunk_size`` texts per task (default: spread one call over about 4 tasks per worker, at least
    ``spec.batch_size``). ``factory(spec, model_cache_dir)`` builds the worker encoder (default
    ``load_encoder``); it must be importable or picklable. Outputs equal single-process encoding for
    deterministic encoders; transformer encoders can differ in the last float bits because the batches differ.
    """

    def __init__(self, spec: EncoderSpec, *, address: str | None = None, num_workers: int | None = None,
                 cpus_per_worker: float = 1, chunk_size: int | None = None,
                 model_cache_dir: str | Path | None = None, factory: EncoderFactory | None = None) -> None:
        ray = init_ray(address)
        from ray.util import ActorPool

        self.spec = spec
        n = num_workers if num_workers is not None else max(1, int(_cpus_available(ray) // cpus_per_worker))
        if n < 1:
            raise HardnegError(f"num_workers must be >= 1, got {num_workers}", fix="use e.g. num_workers=4")
        if chunk_size is not None and chunk_size < 1:
            raise HardnegError(f"chunk_size must be >= 1, got {chunk_size}", fix="use e.g. chunk_size=1024")
        actor_cls = ray.remote(EncodeWorker).options(num_cpus=cpus_per_worker)
        threads = max(1, int(math.floor(cpus_per_worker)))
        self._actors = [actor_cls.remote(spec.to_dict(), None if model_cache_dir is None else str(model_cache_dir),
                                         factory, threads) for _ in range(n)]
        infos = ray.get([a.info.remote() for a in self._actors])
        fps = {i["fingerprint"] for i in infos}
        if len(fps) != 1:
            raise HardnegError("Ray workers loaded different models (their fingerprints differ): "
                               + ", ".join(sorted(f"{i['host']}:{i['fingerprint']}" for i in infos)),
                               fix="give every node the same model files (same path or hub snapshot)")
        self.dim: int = int(infos[0]["dim"])
        self._fingerprint: str = infos[0]["fingerprint"]
        self.workers: list[dict[str, Any]] = infos
        self.chunk_size = chunk_size
        self._pool = ActorPool(self._actors)
        self._ray = ray

    def fingerprint(self) -> str:
        """The workers' encoder fingerprint (all workers must agree)."""
        return self._fingerprint

    def _chunks(self, n: int) -> list[tuple[int, int]]:
        size = self.chunk_size or max(self.spec.batch_size, math.ceil(n / (4 * len(self._actors))))
        return [(lo, min(n, lo + size)) for lo in range(0, n, size)]

    def encode(self, texts: Sequence[str], kind: Kind, *, progress: bool = True) -> np.ndarray:
        """float32 [n, dim] in input order, encoded chunk by chunk on the actor pool."""
        check_texts(texts)
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        chunks = self._chunks(len(texts))
        out = np.empty((len(texts), self.dim), dtype=np.float32)  # [n, dim]
        results = self._pool.map(lambda a, c: a.encode.remote(texts[c[0]:c[1]], kind), chunks)
        try:
            for (lo, hi), emb in tqdm(zip(chunks, results, strict=True), total=len(chunks),
                                      desc=f"encode {kind}", unit="chunk", disable=not progress):
                if emb.shape != (hi - lo, self.dim):
                    raise RuntimeError(f"Ray worker returned shape {emb.shape}, expected {(hi - lo, self.dim)}")
                out[lo:hi] = emb
        except BaseException:
            self._drain()  # a failed chunk must not leave stale results for the next call
            raise
        return out

    def _drain(self) -> None:
        while self._pool.has_next():
            try:
                self._pool.get_next_unordered()
            except Exception:  # noqa: BLE001 - the first error is already being raised
                pass

    def close(self) -> None:
        """Stop the actors (their models are freed)."""
        for a in self._actors:
            self._ray.kill(a)
        self._actors = []

    def __enter__(self) -> RayEncoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def encode_ray(spec: EncoderSpec, ids: Sequence[str], texts: Sequence[str], kind: Kind,
               cache_dir: str | Path | None, *, shard_size: int = 8192, address: str | None = None,
               num_workers: int | None = None, cpus_per_worker: float = 1, chunk_size: int | None = None,
               model_cache_dir: str | Path | None = None, progress: bool = True) -> list[np.ndarray] | np.ndarray:
    """Encode on Ray workers. With ``cache_dir``: the cache's shard memmaps (same files, key and resume as
    ``open_cached``); without: one float32 array [n, dim]."""
    enc = RayEncoder(spec, address=address, num_workers=num_workers, cpus_per_worker=cpus_per_worker,
                     chunk_size=chunk_size, model_cache_dir=model_cache_dir)
    try:
        if cache_dir is None:
            return enc.encode(texts, kind, progress=progress)
        return open_cached(enc, ids, texts, kind, Path(cache_dir), shard_size=shard_size, progress=progress)
    finally:
        enc.close()


# -- sharded exact search -------------------------------------------------------------------------------------

def _search_task(q: np.ndarray, k: int, offset: int, query_block: int, doc_block: int, threads: int,
                 *shards: Any) -> tuple[np.ndarray, np.ndarray]:
    """One task: exact top-k of ``q`` over a run of shards (arrays, or .npy paths memmapped here).

    Shards are top-level arguments so Ray resolves their object refs (zero-copy from the node's store).
    """
    import torch

    torch.set_num_threads(max(1, threads))
    arrays = [np.load(s, mmap_mode="r", allow_pickle=False) if isinstance(s, str) else s for s in shards]
    s, i = exact_search(q, arrays, k, query_block=query_block, doc_block=doc_block)
    return s, i + offset


def _shard_rows(shards: list[Any]) -> list[int]:
    rows = []
    for s in shards:
        if isinstance(s, str | os.PathLike):
            arr = np.load(s, mmap_mode="r", allow_pickle=False)
            rows.append(int(arr.shape[0]))
        else:
            rows.append(int(s.shape[0]))
    return rows


def _shard_dim(s: Any) -> int:
    arr = np.load(s, mmap_mode="r", allow_pickle=False) if isinstance(s, str | os.PathLike) else s
    return int(arr.shape[1])


def _groups(shards: list[Any], rows: list[int], doc_block: int, rows_per_task: int) -> list[tuple[int, list[Any]]]:
    """Runs of whole shards of at least ``rows_per_task`` rows: (first corpus row, shards).

    Cuts fall where ``exact_search`` over the whole corpus starts a new doc block, so every task multiplies
    the same blocks (identical float rounding): one array is cut at multiples of ``doc_block``; a shard list
    at shard boundaries that are also multiples of ``doc_block`` when there are any (blocks that span shards),
    else at any shard boundary (blocks that restart at each shard).
    """
    if len(shards) == 1 and isinstance(shards[0], np.ndarray):
        step = max(doc_block, -(-rows_per_task // doc_block) * doc_block)
        return [(lo, [shards[0][lo:lo + step]]) for lo in range(0, rows[0], step)]
    bounds = np.cumsum(rows)[:-1]  # shard boundaries inside the corpus
    aligned = bool(np.any(bounds % doc_block == 0))
    groups: list[tuple[int, list[Any]]] = []
    start, cur, cur_rows, cur_start = 0, [], 0, 0
    for s, n in zip(shards, rows, strict=True):
        if cur and cur_rows >= rows_per_task and (not aligned or start % doc_block == 0):
            groups.append((cur_start, cur))
            cur, cur_rows, cur_start = [], 0, start
        cur.append(str(s) if isinstance(s, os.PathLike) else s)
        cur_rows += n
        start += n
    if cur:
        groups.append((cur_start, cur))
    return groups


def ray_search(q_emb: np.ndarray, d_emb: ShardLike | Sequence[ShardLike], depth: int, *,
               address: str | None = None, query_block: int = 4096, doc_block: int = 65536,
               rows_per_task: int | None = None, cpus_per_task: float = 1, max_in_flight: int | None = None,
               progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``depth`` search with Ray tasks over corpus shards; equals ``exact_search`` on the whole corpus.

    ``d_emb``: an array, a list of row shards (arrays or memmaps: sent to the object store as tasks are
    submitted, at most ``max_in_flight`` at a time), or a list of ``.npy`` paths every node can read (shared
    storage: workers memmap them, nothing is shipped). Returns ``scores`` float32 [nq, k], ``idx`` int64
    [nq, k], ``k = min(depth, nd)``, sorted by (score desc, row asc).
    """
    if isinstance(depth, bool) or not isinstance(depth, int | np.integer) or depth < 1:
        raise ValueError("depth must be >= 1")
    ray = init_ray(address)
    q_emb = np.asarray(q_emb)
    shards = [d_emb] if isinstance(d_emb, np.ndarray | str | os.PathLike) else list(d_emb)
    rows = _shard_rows(shards)
    nd, nq = sum(rows), int(q_emb.shape[0])
    if q_emb.ndim != 2:
        raise HardnegError(f"q_emb must be 2-D [nq, dim], got shape {q_emb.shape}", fix="pass one row per query")
    dims = {_shard_dim(s) for s in shards}
    if dims != {int(q_emb.shape[1])}:
        raise HardnegError(f"query dim {q_emb.shape[1]} differs from doc dim(s) {sorted(dims)}",
                           fix="encode queries and docs with the same model")
    if nd == 0:
        raise HardnegError("the corpus is empty", fix="search a corpus with at least one document")
    k = min(int(depth), nd)
    n_cpu = _cpus_available(ray)
    per_task = rows_per_task or max(1, math.ceil(nd / (4 * max(1, int(n_cpu // cpus_per_task)))))
    groups = _groups(shards, rows, doc_block, per_task)
    window = max_in_flight or max(2, 2 * int(n_cpu // cpus_per_task))
    task = ray.remote(_search_task).options(num_cpus=cpus_per_task)
    threads = max(1, int(math.floor(cpus_per_task)))
    q_ref = ray.put(np.ascontiguousarray(q_emb))  # shipped once, shared by every task on a node
    best: tuple[np.ndarray, np.ndarray] | None = None
    pending: list[Any] = []
    bar = tqdm(total=len(groups), desc="ray search", unit="task", disable=not progress)
    todo = iter(groups)
    exhausted = False
    while pending or not exhausted:
        while not exhausted and len(pending) < window:
            g = next(todo, None)
            if g is None:
                exhausted = True
                break
            offset, part = g
            part = [ray.put(np.ascontiguousarray(p)) if isinstance(p, np.ndarray) else p for p in part]
            pending.append(task.remote(q_ref, k, offset, query_block, doc_block, threads, *part))
        if not pending:
            break
        done, pending = ray.wait(pending, num_returns=1)
        res = ray.get(done[0])
        best = res if best is None else merge_topk([best, res], k)  # order-free: the merge is a total order
        bar.update(1)
    bar.close()
    assert best is not None
    if best[0].shape != (nq, k):
        raise RuntimeError(f"merged result has shape {best[0].shape}, expected {(nq, k)}")
    return best


def ray_search_fn(**kw: Any) -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """A function with ``exact_search``'s signature that runs ``ray_search`` with ``kw`` (for search hooks)."""
    def fn(q_emb: np.ndarray, d_emb: Any, depth: int, **more: Any) -> tuple[np.ndarray, np.ndarray]:
        return ray_search(q_emb, d_emb, depth, **{**kw, **more})
    return fn


def build_pool_ray(teacher: str, dataset: Dataset, q_emb: np.ndarray, d_emb: Any, depth: int, *,
                   address: str | None = None, progress: bool = False, meta: dict | None = None,
                   **search_kw: Any) -> CandidatePool:
    """``build_pool`` with the search sharded over Ray: the same CandidatePool as the single-process path.

    Searches ``depth`` + max positives per query, removes positives, scores positives directly (driver).
    """
    local = d_emb
    if isinstance(d_emb, str | os.PathLike) or (not isinstance(d_emb, np.ndarray)
                                                 and any(isinstance(s, str | os.PathLike) for s in d_emb)):
        paths = [d_emb] if isinstance(d_emb, str | os.PathLike) else list(d_emb)
        local = [np.load(p, mmap_mode="r", allow_pickle=False) for p in paths]  # positives are scored here

    def search_fn(q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return ray_search(q, d_emb, k, address=address, progress=progress, **search_kw)

    return build_pool(teacher, dataset, q_emb, local, depth, progress=progress, meta=meta, search_fn=search_fn)


__all__ = ["EncodeWorker", "RayEncoder", "build_pool_ray", "encode_ray", "import_ray", "init_ray", "ray_search",
           "ray_search_fn"]
