"""Resolve a ``--data`` argument (a BEIR folder or a BEIR dataset name) and load a split."""
from __future__ import annotations

from pathlib import Path

from hardneg.data.beir import load_beir
from hardneg.data.descriptors import Descriptor, descriptor_for
from hardneg.errors import HardnegError
from hardneg.types import DataSource, Dataset


def load_dataset(data: str | Path, split: str, *, cache_dir: Path | None = None,
                 corpus: str | Path | None = None) -> Dataset:
    """Load ``split`` of: a BEIR folder; a BEIR name (e.g. ``scifact``, fetched into the cache once); a JSONL of
    training pairs (``*.jsonl``); or ``hf:NAME[:SPLIT]`` (a Hugging Face pairs dataset). ``corpus``: a BEIR
    ``corpus.jsonl`` whose ids the pairs' ``pos`` refer to."""
    from hardneg.data.pairs import load_pairs_hf, load_pairs_jsonl

    if str(data).startswith("hf:"):
        return load_pairs_hf(str(data), corpus)
    p = Path(data).expanduser()
    if p.is_file():
        if p.suffix not in (".jsonl", ".json"):
            raise HardnegError("a data file must be a JSONL of pairs", where=p,
                               fix='pass a BEIR folder, or a .jsonl with {"query": ..., "pos": [...]} per line')
        return load_pairs_jsonl(p, corpus)
    if p.exists():
        return load_beir(p, split, source=DataSource("beir", str(data), str(p)))
    from hardneg.data.download import BEIR_NAMES, fetch_beir

    if str(data) in BEIR_NAMES:
        folder = fetch_beir(str(data), cache_dir=cache_dir)
        return load_beir(folder, split, name=str(data), source=DataSource("beir-name", str(data), str(folder)))
    raise HardnegError("data folder not found", where=p,
                       fix="pass a BEIR folder (corpus.jsonl, queries.jsonl, qrels/) or a BEIR dataset name "
                           "such as scifact")


def load_eval_dataset(data: str | Path, split: str, *, cache_dir: Path | None = None) -> Dataset:
    """Like ``load_dataset``, but a folder written by ``hardneg inject`` loses its injected documents and one
    written by ``hardneg thin`` gets its hidden positives back into the thinned split's qrels: evaluation then
    runs on exactly the source's corpus and qrels, so known false negatives cannot change a metric."""
    ds = load_dataset(data, split, cache_dir=cache_dir)
    return strip_if_injected(data, ds)


def strip_if_injected(data: str | Path, ds: Dataset) -> Dataset:
    """``ds`` as the source dataset has it, for evaluation: without the injected documents when ``data`` is a
    folder written by ``hardneg inject``; with the hidden positives restored to the qrels when it is one written by
    ``hardneg thin`` and ``ds`` is the thinned split or a part of it (a dev carved from it, for instance)."""
    from hardneg.data.inject import is_injected, load_manifest, strip_injected
    from hardneg.data.thin import eval_manifest, restore_hidden

    p = Path(data).expanduser()
    if p.is_dir() and is_injected(p):
        import logging

        logging.getLogger("hardneg").info("%s holds injected documents: evaluating on the source corpus", p)
        return strip_injected(ds, load_manifest(p))
    hidden = eval_manifest(p, ds)
    if hidden is not None:
        import logging

        logging.getLogger("hardneg").info("%s has hidden positives: evaluating with the source's qrels", p)
        return restore_hidden(ds, hidden)
    return ds


def descriptor_of(ds: Dataset) -> Descriptor:
    """The BEIR facts of ``ds`` (``ignore_identical_ids``, instruction): by its name, except that a folder written by
    ``hardneg inject`` or ``hardneg thin`` takes its source dataset's (the copy's folder name, e.g. ``k1``, need
    not say it is ArguAna, whose evaluation drops a document with the query's id)."""
    from hardneg.data import inject, thin

    src = ds.source
    if src is not None and src.manifest and src.path:
        read = inject.load_manifest if src.manifest == inject.MANIFEST else thin.load_hidden
        origin = read(Path(src.path) / src.manifest).source.get("dataset")
        if isinstance(origin, str):
            return descriptor_for(origin)
    return descriptor_for(ds.name)
