"""Where encoders run (CLI ``--encode ...``, TOML ``[encode]``): a frozen, validated value, and the one hook that
decides which encoder object ``load_encoder`` returns.

``local`` (the default) encodes in this process. ``ray`` encodes on a pool of Ray actors (``hardneg.scale``:
``ray_address``, else ``$RAY_ADDRESS``, else a local Ray; ``workers`` actors of ``cpus_per_worker`` CPUs;
``chunk_size`` texts per task). A Ray encoder's fingerprint is the real encoder's, so both backends give the same
embeddings and share cache entries: the backend is recorded in outputs but is never part of a cache or stage key.

``encoder_factory(fn)`` installs ``fn(spec, cache_dir) -> Encoder`` for the block (a context variable): every
``load_encoder`` inside it (mining pools, evaluation, diagnostics, calibration, audit) goes through ``fn``.
``encode`` never imports ``scale``: the verbs and experiments install ``hardneg.scale.encoding(backend)``.
"""
from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hardneg.backend_text import split_options
from hardneg.errors import ConfigErrors

ENCODE_BACKENDS: tuple[str, ...] = ("local", "ray")
RAY_ONLY: tuple[str, ...] = ("ray_address", "workers", "cpus_per_worker", "chunk_size")

EncoderFactory = Callable[[Any, Path | None], Any]  # (EncoderSpec, model cache dir) -> Encoder
FACTORY: ContextVar[EncoderFactory | None] = ContextVar("hardneg_encoder_factory", default=None)


@dataclass(frozen=True)
class EncodeBackend:
    """backend: local or ray. ray_address: a Ray cluster (``ray://host:10001``, ``host:6379`` or ``auto``)
    [default: $RAY_ADDRESS, else a local Ray]. workers: encoder actors [default: the cluster's CPUs //
    cpus_per_worker]. cpus_per_worker: CPUs each actor reserves (and torch threads) [1]. chunk_size: texts per
    task [default: a call spread over ~4 tasks per worker, at least the batch size]."""

    backend: str = "local"
    ray_address: str | None = None
    workers: int | None = None
    cpus_per_worker: float = 1.0
    chunk_size: int | None = None

    def __post_init__(self) -> None:
        p = []
        if self.backend not in ENCODE_BACKENDS:
            p.append(f"backend={self.backend!r}: must be one of {', '.join(ENCODE_BACKENDS)}")
        if self.ray_address is not None and (not isinstance(self.ray_address, str) or not self.ray_address):
            p.append(f"ray_address={self.ray_address!r}: must be an address such as ray://host:10001 or auto")
        for k in ("workers", "chunk_size"):
            v = getattr(self, k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 1_000_000):
                p.append(f"{k}={v!r}: must be an integer from 1 to 1,000,000")
        c = self.cpus_per_worker
        if isinstance(c, bool) or not isinstance(c, int | float) or not 0 < c <= 1024:
            p.append(f"cpus_per_worker={c!r}: must be a number of CPUs above 0 (e.g. 1, 0.5 or 4)")
        if p:
            raise ConfigErrors(p, where="encode")

    @classmethod
    def parse(cls, text: str) -> EncodeBackend:
        """``BACKEND[:key=value,...]``, e.g. ``local`` or ``ray:ray_address=auto,workers=8``."""
        backend, raw = split_options(text, RAY_ONLY, what="encode", where="--encode")
        kw: dict[str, Any] = {}
        for key, value in raw.items():
            if key == "ray_address":
                kw[key] = value
            else:
                try:
                    kw[key] = float(value) if key == "cpus_per_worker" else int(value)
                except ValueError:
                    kw[key] = value  # reported by the validation
        return cls(backend=backend, **kw)

    def to_dict(self) -> dict[str, Any]:
        """The backend and its set parameters (ray's are ignored by local, so a config can switch backends)."""
        own = ("backend",) + (RAY_ONLY if self.backend == "ray" else ())
        return {k: v for k, v in dataclasses.asdict(self).items()
                if k in own and v is not None and not (k == "cpus_per_worker" and v == 1.0)}

    @property
    def is_local(self) -> bool:
        return self.backend == "local"


@contextlib.contextmanager
def encoder_factory(factory: EncoderFactory | None) -> Iterator[None]:
    """Within the block, ``load_encoder(spec, cache_dir)`` returns ``factory(spec, cache_dir)`` (None: local)."""
    token = FACTORY.set(factory)
    try:
        yield
    finally:
        FACTORY.reset(token)


def release_workers(encoder: Any) -> None:
    """Free the workers an encoder holds between calls (a Ray actor pool's CPUs, e.g. before a Ray search that
    needs them); it keeps its fingerprint and restarts them if asked to encode again. Local encoders hold none."""
    release = getattr(encoder, "release", None)
    if callable(release):
        release()
