"""Resolve a ``--data`` argument (a BEIR folder or a BEIR dataset name) and load a split."""
from __future__ import annotations

from pathlib import Path

from hardneg.data.beir import load_beir
from hardneg.errors import HardnegError
from hardneg.types import Dataset


def load_dataset(data: str | Path, split: str, *, cache_dir: Path | None = None,
                 corpus: str | Path | None = None) -> Dataset:
    """Load ``split`` of: a BEIR folder; a BEIR name (e.g. ``scifact``, fetched into the cache once); a JSONL of
    training pairs (``*.jsonl``); or ``hf:NAME[:SPLIT]`` (a Hugging Face pairs dataset). ``corpus``: a BEIR
    ``corpus.jsonl`` whose ids the pairs' ``pos`` refer to."""
    from hardneg.data.pairs import load_pairs_hf, load_pairs_jsonl

    if str(data).startswith("hf:"):
        return load_pairs_hf(str(data), corpus)
    p = Path(data)
    if p.is_file():
        if p.suffix not in (".jsonl", ".json"):
            raise HardnegError("a data file must be a JSONL of pairs", where=p,
                               fix='pass a BEIR folder, or a .jsonl with {"query": ..., "pos": [...]} per line')
        return load_pairs_jsonl(p, corpus)
    if p.exists():
        return load_beir(p, split)
    from hardneg.data.download import BEIR_NAMES, fetch_beir

    if str(data) in BEIR_NAMES:
        return load_beir(fetch_beir(str(data), cache_dir=cache_dir), split, name=str(data))
    raise HardnegError("data folder not found", where=p,
                       fix="pass a BEIR folder (corpus.jsonl, queries.jsonl, qrels/) or a BEIR dataset name "
                           "such as scifact")
