"""Ray (optional extra ``ray``: ``pip install "ray[data]"``): encoding and candidate pools past one machine.

- Encoding: ``RayEncoder`` is an ``Encoder`` whose ``encode`` splits the texts into chunks and sends them to
  a ``ray.util.ActorPool`` of workers; each worker loads the real encoder once. Plugged into the embedding
  cache (``encode_ray`` = ``open_cached(RayEncoder(...))``) it writes exactly the cache's shard files and
  meta.json on the driver, and a killed run resumes from the finished shards. Its fingerprint is the real
  encoder's, so single-process and Ray runs share cache entries. ``encoding(EncodeBackend)`` makes every
  ``load_encoder`` in its block a ``RayEncoder``: how the verbs' ``--encode ray`` and ``[encode]`` reach it.
- Search: ``ray_search`` (in ``hardneg.search.ray_backend``: search knows no models or mining) gives every
  task a run of whole corpus shards and merges their exact top-k with the stable rule.
- ``build_pool_ray``: ``build_pool`` with ``ray_search`` in place of ``exact_search``.

Connect with ``init_ray(address)``: an explicit address, else the ``RAY_ADDRESS`` environment variable, else a
local instance (``num_cpus`` CPUs). Every function calls it, so a script may just pass ``address=``.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from hardneg.encode.cache import open_cached
from hardneg.encode.backend import EncodeBackend, encoder_factory
from hardneg.encode.encoder import Encoder, EncoderSpec, Kind, check_texts, local_encoder
from hardneg.errors import HardnegError
from hardneg.mining.candidates import build_pool
from hardneg.search.ray_backend import cpus_available, init_ray, ray_search
from hardneg.types import CandidatePool, Dataset

EncoderFactory = Callable[[EncoderSpec, "Path | None"], Encoder]
log = logging.getLogger("hardneg")


# -- encoding -------------------------------------------------------------------------------------------------

class EncodeWorker:
    """Ray actor body: loads one encoder at start, then encodes chunks."""

    def __init__(self, spec: dict[str, Any], model_cache_dir: str | None, factory: EncoderFactory | None,
                 threads: int) -> None:
        import torch

        torch.set_num_threads(max(1, threads))
        s = EncoderSpec.from_dict(spec)
        cache = Path(model_cache_dir) if model_cache_dir else None
        self.encoder = factory(s, cache) if factory is not None else local_encoder(s, cache)

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
    ``local_encoder``); it must be importable or picklable. Outputs equal single-process encoding for
    deterministic encoders; transformer encoders can differ in the last float bits because the batches differ.

    ``release()`` (or ``close()``) stops the actors and frees their CPUs but keeps the fingerprint: a later
    ``encode`` starts them again (and checks they load the same model).
    """

    def __init__(self, spec: EncoderSpec, *, address: str | None = None, num_workers: int | None = None,
                 cpus_per_worker: float = 1, chunk_size: int | None = None,
                 model_cache_dir: str | Path | None = None, factory: EncoderFactory | None = None) -> None:
        ray = init_ray(address)
        from ray.util import ActorPool

        self.spec = spec
        n = num_workers if num_workers is not None else max(1, int(cpus_available(ray) // cpus_per_worker))
        if n < 1:
            raise HardnegError(f"num_workers must be >= 1, got {num_workers}", fix="use e.g. num_workers=4")
        if chunk_size is not None and chunk_size < 1:
            raise HardnegError(f"chunk_size must be >= 1, got {chunk_size}", fix="use e.g. chunk_size=1024")
        self._ray, self._pool_cls, self._n = ray, ActorPool, n
        self._actor_cls = ray.remote(EncodeWorker).options(num_cpus=cpus_per_worker)
        self._args = (spec.to_dict(), None if model_cache_dir is None else str(model_cache_dir), factory,
                      max(1, int(math.floor(cpus_per_worker))))
        self._fingerprint: str | None = None
        self._actors: list[Any] = []
        self.chunk_size = chunk_size
        self._start()

    def _start(self) -> None:
        """Start the actors (each loads the model) and check that they all loaded the one model."""
        self._actors = [self._actor_cls.remote(*self._args) for _ in range(self._n)]
        try:
            infos = self._ray.get([a.info.remote() for a in self._actors])
        except BaseException:
            self.release()
            raise
        fps = {i["fingerprint"] for i in infos} | ({self._fingerprint} if self._fingerprint else set())
        if len(fps) != 1:
            self.release()
            raise HardnegError("Ray workers loaded different models (their fingerprints differ): "
                               + ", ".join(sorted(f"{i['host']}:{i['fingerprint']}" for i in infos)),
                               fix="give every node the same model files (same path or hub snapshot)")
        self.dim: int = int(infos[0]["dim"])
        self._fingerprint = infos[0]["fingerprint"]
        self.workers: list[dict[str, Any]] = infos
        self._pool = self._pool_cls(self._actors)

    def fingerprint(self) -> str:
        """The workers' encoder fingerprint (all workers must agree)."""
        assert self._fingerprint is not None
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
        if not self._actors:
            self._start()  # released earlier
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

    def release(self) -> None:
        """Stop the actors (their models and CPUs are freed); a later ``encode`` starts them again."""
        for a in self._actors:
            self._ray.kill(a)
        self._actors = []

    def close(self) -> None:
        """Stop the actors (their models are freed)."""
        self.release()

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


@contextlib.contextmanager
def encoding(backend: EncodeBackend | None) -> Iterator[None]:
    """Within the block, every ``load_encoder`` builds its encoder on ``backend`` (None or local: in this process,
    nothing changes). Ray: one ``RayEncoder`` per (spec, model cache), started on first use; starting one releases
    the others' actors (two pools that each want every CPU would wait on each other), mining and evaluation release
    it once their embeddings are computed (``release_workers``: a Ray search may need those CPUs), and the block's
    end stops them all. Embeddings, cache entries and every key are those of local encoding."""
    if backend is None or backend.is_local:
        yield
        return
    made: dict[tuple[EncoderSpec, str | None], RayEncoder] = {}

    def factory(spec: EncoderSpec, cache_dir: Path | None) -> Encoder:
        key = (spec, None if cache_dir is None else str(cache_dir))
        for k, enc in made.items():
            if k != key:
                enc.release()
        if key not in made:
            made[key] = RayEncoder(spec, address=backend.ray_address, num_workers=backend.workers,
                                   cpus_per_worker=backend.cpus_per_worker, chunk_size=backend.chunk_size,
                                   model_cache_dir=cache_dir)
            log.info("encoding %s on %d Ray workers", spec.model, len(made[key].workers))
        return made[key]

    try:
        with encoder_factory(factory):
            yield
    finally:
        for enc in made.values():
            enc.close()


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


__all__ = ["EncodeWorker", "RayEncoder", "build_pool_ray", "encode_ray", "encoding"]
