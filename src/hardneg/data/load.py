"""Resolve a ``--data`` argument (a BEIR folder or a BEIR dataset name) and load a split."""
from __future__ import annotations

from pathlib import Path

from hardneg.data.beir import load_beir
from hardneg.errors import HardnegError
from hardneg.types import Dataset


def load_dataset(data: str | Path, split: str, *, cache_dir: Path | None = None) -> Dataset:
    """Load ``split`` of a BEIR folder; a bare BEIR name (e.g. ``scifact``) is fetched into the cache first."""
    p = Path(data)
    if p.exists():
        return load_beir(p, split)
    from hardneg.data.download import BEIR_NAMES, fetch_beir

    if str(data) in BEIR_NAMES:
        return load_beir(fetch_beir(str(data), cache_dir=cache_dir), split, name=str(data))
    raise HardnegError("data folder not found", where=p,
                       fix="pass a BEIR folder (corpus.jsonl, queries.jsonl, qrels/) or a BEIR dataset name "
                           "such as scifact")
