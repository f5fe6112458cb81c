"""Which search backend mining and evaluation use: a frozen, validated value (CLI ``--search ...`` flags, TOML
``[search]``).

``exact`` (the default) is the blocked exact search of ``exact.py``; ``faiss-flat`` is a second exact
implementation; ``faiss-ivf`` / ``faiss-hnsw`` are approximate (check their recall on your data first:
``docs/scale.md``); ``ray`` is exact search sharded over a Ray cluster (``ray_address``; none starts a local
one). ``identity()`` is None for ``exact``, so every cache and stage key of an exact search is what it was
before backends were selectable, and an approximate backend never shares a key with exact.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from hardneg.backend_text import split_options
from hardneg.errors import ConfigErrors

BACKENDS: tuple[str, ...] = ("exact", "faiss-flat", "faiss-ivf", "faiss-hnsw", "ray")
OWN: dict[str, tuple[str, ...]] = {"faiss-ivf": ("nlist", "nprobe"), "faiss-hnsw": ("hnsw_m", "ef_search"),
                                   "ray": ("ray_address",)}
SearchFn = Callable[[np.ndarray, Any, int], tuple[np.ndarray, np.ndarray]]  # (q [nq, dim], docs, k) -> (s, idx)


@dataclass(frozen=True)
class SearchSpec:
    """backend: one of BACKENDS. nlist / nprobe: IVF lists and lists probed [default: ~4 sqrt(n), nlist/8].
    hnsw_m / ef_search: HNSW links and search width [default: 32, max(2k, 64)]. ray_address: a Ray cluster
    (``ray://host:10001`` or ``auto``) [default: a local Ray]."""

    backend: str = "exact"
    nlist: int | None = None
    nprobe: int | None = None
    hnsw_m: int | None = None
    ef_search: int | None = None
    ray_address: str | None = None

    def __post_init__(self) -> None:
        p = []
        if self.backend not in BACKENDS:
            p.append(f"backend={self.backend!r}: must be one of {', '.join(BACKENDS)}")
        for k in ("nlist", "nprobe", "hnsw_m", "ef_search"):
            v = getattr(self, k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 1_000_000):
                p.append(f"{k}={v!r}: must be an integer from 1 to 1,000,000")
        if self.ray_address is not None and (not isinstance(self.ray_address, str) or not self.ray_address):
            p.append(f"ray_address={self.ray_address!r}: must be an address such as ray://host:10001 or auto")
        if p:
            raise ConfigErrors(p, where="search")

    @classmethod
    def parse(cls, text: str) -> SearchSpec:
        """``BACKEND[:key=value,...]``, e.g. ``faiss-ivf:nlist=256,nprobe=32`` or ``ray:ray_address=auto``."""
        keys = tuple(f.name for f in dataclasses.fields(cls) if f.name != "backend")
        backend, raw = split_options(text, keys, what="search", where="--search")
        kw: dict[str, Any] = {k: v if k == "ray_address" else (int(v) if v.isdigit() else v) for k, v in raw.items()}
        return cls(backend=backend, **kw)

    def to_dict(self) -> dict[str, Any]:
        """The backend and its parameters that are set (another backend's parameters are ignored, so a config
        can switch backends without editing them away)."""
        own = ("backend",) + OWN.get(self.backend, ())
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None and k in own}

    def identity(self) -> dict[str, Any] | None:
        """What a cache or stage key must hold: None for exact (keys unchanged), else every set field."""
        return None if self.backend == "exact" else self.to_dict()

    def search_fn(self, *, progress: bool = False) -> SearchFn:
        """``fn(q_emb, d_emb, k) -> (scores float32 [nq, k], idx int64 [nq, k])`` for this backend."""
        from hardneg.search import search

        kw: dict[str, Any] = {k: v for k, v in self.to_dict().items() if k not in ("backend", "ray_address")}
        if self.ray_address is not None:
            kw["address"] = self.ray_address

        def fn(q_emb: np.ndarray, d_emb: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
            return search(q_emb, d_emb, k, backend=self.backend, progress=progress, **kw)

        return fn
