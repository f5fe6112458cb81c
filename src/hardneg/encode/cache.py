"""Embedding cache on disk, keyed by content: encoder fingerprint + kind + sha256 of (ids, texts).

Layout: ``<cache_dir>/emb/<key>/shard-00000.npy, shard-00001.npy, ..., meta.json``. Each shard (up to
``shard_size`` rows, stored in the spec's dtype) is written atomically as soon as it is encoded, and
``meta.json`` last, so an entry with a meta.json is complete; a killed run re-encodes only missing shards.
"""
from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hardneg.encode.spec import KINDS, Encoder, Kind, check_texts, encoder_precision
from hardneg.errors import HardnegError
from hardneg.hashing import sha256_pairs
from hardneg.io import ensure_dir, read_npy, sha256_file, stable_hash, write_json, write_npy
from hardneg.types import Dataset

log = logging.getLogger("hardneg")

CACHE_FORMAT = 1
META = "meta.json"


def content_sha256(ids: Sequence[str], texts: Sequence[str]) -> str:
    """sha256 over (id, text) pairs; every field is length-prefixed, so no separator can be forged."""
    return sha256_pairs(ids, texts)  # same bytes as before: existing cache keys stay valid


def cache_key(encoder: Encoder, ids: Sequence[str], texts: Sequence[str], kind: Kind) -> str:
    """The entry name: stable hash of the encoder fingerprint, the kind and the (ids, texts) content."""
    return _key(encoder.fingerprint(), kind, content_sha256(ids, texts))


def _key(fingerprint: str, kind: str, content: str) -> str:
    return stable_hash({"encoder": fingerprint, "kind": kind, "content": content}, n=32)


@dataclass(frozen=True)
class CacheEntry:
    """A complete cache entry: its folder and parsed meta.json."""

    path: Path
    meta: dict[str, Any]

    @property
    def shard_paths(self) -> list[Path]:
        """Shard files in row order."""
        return [self.path / s["file"] for s in self.meta["shards"]]


def dataset_embeddings(encoder: Encoder, dataset: Dataset, cache_dir: Path | None, *,
                       progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A dataset's query embeddings [n_queries, dim] (dataset query order) and document embeddings [n_docs, dim]
    (corpus row order, title + text), through the cache."""
    q = encode_cached(encoder, dataset.queries.ids, dataset.queries.texts, "query", cache_dir, progress=progress)
    d = encode_cached(encoder, dataset.corpus.ids, dataset.corpus.encoding_texts, "doc", cache_dir, progress=progress)
    return q, d


def encode_cached(encoder: Encoder, ids: Sequence[str], texts: Sequence[str], kind: Kind,
                  cache_dir: Path | None, *, shard_size: int = 8192, progress: bool = True) -> np.ndarray:
    """Embeddings float32 [n, dim] for ``texts``, read from / written to the cache (None: no cache)."""
    _check_args(ids, texts, kind, shard_size)
    if cache_dir is None:
        return np.ascontiguousarray(encoder.encode(texts, kind, progress=progress), dtype=np.float32)
    entry = ensure_cached(encoder, ids, texts, kind, cache_dir, shard_size=shard_size, progress=progress)
    parts = [read_npy(p).astype(np.float32, copy=False) for p in entry.shard_paths]
    if not parts:
        return np.zeros((0, encoder.dim), dtype=np.float32)
    return np.ascontiguousarray(np.concatenate(parts, axis=0))  # [n, dim]


def open_cached(encoder: Encoder, ids: Sequence[str], texts: Sequence[str], kind: Kind, cache_dir: Path, *,
                shard_size: int = 8192, progress: bool = True) -> list[np.ndarray]:
    """Read-only memmaps of the shards in row order ([rows_i, dim] each, spec dtype), encoding what is missing."""
    _check_args(ids, texts, kind, shard_size)
    entry = ensure_cached(encoder, ids, texts, kind, cache_dir, shard_size=shard_size, progress=progress)
    return [read_npy(p, mmap=True) for p in entry.shard_paths]


def ensure_cached(encoder: Encoder, ids: Sequence[str], texts: Sequence[str], kind: Kind, cache_dir: Path, *,
                  shard_size: int = 8192, progress: bool = True) -> CacheEntry:
    """Make sure a complete, verified entry exists (hit, partial resume or miss) and return it."""
    _check_args(ids, texts, kind, shard_size)
    content = content_sha256(ids, texts)
    key = _key(encoder.fingerprint(), kind, content)
    path = Path(cache_dir) / "emb" / key
    entry = _verified_entry(path, n=len(ids), dim=encoder.dim)
    if entry is not None:
        log.info("embedding cache hit: %s (%d %s texts)", path, len(ids), kind)
        return entry
    return _build(encoder, texts, kind, path, key, content, shard_size, progress)


def _check_args(ids: Sequence[str], texts: Sequence[str], kind: str, shard_size: int) -> None:
    if len(ids) != len(texts):
        raise HardnegError(f"{len(ids)} ids but {len(texts)} texts", fix="pass one id per text")
    if kind not in KINDS:
        raise HardnegError(f"kind must be 'query' or 'doc', got {kind!r}", fix="pass kind='query' or kind='doc'")
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size <= 0:
        raise HardnegError(f"shard_size must be a positive integer, got {shard_size!r}", fix="use e.g. 8192")
    for i, x in enumerate(ids):
        if not isinstance(x, str):
            raise HardnegError(f"id at row {i} is {type(x).__name__}, not a string", fix="pass string ids")
    check_texts(texts)


def _shard_name(s: int) -> str:
    return f"shard-{s:05d}.npy"


def _verified_entry(path: Path, n: int, dim: int) -> CacheEntry | None:
    """The entry if meta.json exists and every shard matches its sha256; a corrupt entry is deleted."""
    meta_path = path / META
    if not meta_path.is_file():
        return None
    problem = _meta_problem(path, meta_path, n, dim)
    if problem is None:
        return CacheEntry(path, json.loads(meta_path.read_text(encoding="utf-8")))
    log.warning("embedding cache entry %s is corrupt (%s): deleting it and re-encoding", path, problem)
    shutil.rmtree(path, ignore_errors=True)
    return None


def _meta_problem(path: Path, meta_path: Path, n: int, dim: int) -> str | None:
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        shards = meta["shards"]
        if meta["n"] != n or meta["dim"] != dim or sum(s["rows"] for s in shards) != n:
            return "row count or dim differs from meta.json"
        for s in shards:
            f = path / s["file"]
            if not f.is_file():
                return f"{s['file']} is missing"
            if sha256_file(f) != s["sha256"]:
                return f"{s['file']} has the wrong sha256"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"unreadable meta.json: {exc}"
    return None


def _load_shard(f: Path, rows: int, dim: int, dtype: str) -> bool:
    """True if ``f`` is a loadable [rows, dim] array of ``dtype`` (a leftover of a killed run)."""
    if not f.is_file():
        return False
    try:
        arr = read_npy(f, mmap=True)
    except (OSError, ValueError, EOFError):
        return False
    return arr.ndim == 2 and arr.shape == (rows, dim) and arr.dtype == np.dtype(dtype)


def _build(encoder: Encoder, texts: Sequence[str], kind: Kind, path: Path, key: str, content: str,
           shard_size: int, progress: bool) -> CacheEntry:
    n, dim, dtype = len(texts), encoder.dim, encoder.spec.dtype
    ensure_dir(path)
    for tmp in path.glob(".*.tmp"):  # temp files of a run killed mid-write (atomic_path cleans up otherwise)
        tmp.unlink(missing_ok=True)
    shards: list[dict[str, Any]] = []
    reused = 0
    n_shards = (n + shard_size - 1) // shard_size
    for s in range(n_shards):
        lo, hi = s * shard_size, min(n, (s + 1) * shard_size)
        f = path / _shard_name(s)
        if _load_shard(f, hi - lo, dim, dtype):
            reused += 1
        else:
            emb = encoder.encode(texts[lo:hi], kind, progress=progress)  # [hi - lo, dim] float32
            if emb.shape != (hi - lo, dim):
                raise RuntimeError(f"encoder returned shape {emb.shape}, expected {(hi - lo, dim)}")
            write_npy(f, emb.astype(dtype))
        shards.append({"file": f.name, "rows": hi - lo, "sha256": sha256_file(f)})
    if reused:
        log.info("embedding cache partial resume: %s (reused %d of %d shards)", path, reused, n_shards)
    else:
        log.info("embedding cache miss: %s (encoded %d %s texts)", path, n, kind)
    meta = {"format": CACHE_FORMAT, "key": key, "kind": kind, "n": n, "dim": dim, "dtype": dtype,
            "shard_size": shard_size, "shards": shards, "content_sha256": content,
            "fingerprint": encoder.fingerprint(), "encoder": encoder.spec.to_dict(),
            "precision": encoder_precision(encoder)}  # the resolved compute precision (fp32 / bf16)
    write_json(path / META, meta)  # last: its presence marks the entry complete
    return CacheEntry(path, meta)
