"""Training pairs as JSONL (``{"query": ..., "pos": [...]}``) or a Hugging Face dataset -> a Dataset to mine.

- ``pos`` holds document texts, or, when a corpus is given (``--corpus corpus.jsonl``), document ids of it.
- Without a corpus, the candidate corpus is every distinct positive (and ``neg``, if present) text of the file,
  as FlagEmbedding's miner does; document ids are ``t`` + the first 16 hex digits of the text's sha1.
- ``qid`` is optional; without it, lines with the same query text are one query (their positives are merged).
"""
from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable

from hardneg.data.beir import load_corpus
from hardneg.data.jsonl import field_str, iter_jsonl, require_file
from hardneg.errors import HardnegError
from hardneg.types import Corpus, DataSource, Dataset, Qrels, Queries


def text_id(text: str) -> str:
    return "t" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def _str_list(obj: dict, key: str, where: str | Path, line: int | None, required: bool) -> list[str]:
    v = obj.get(key)
    if v is None:
        if required:
            raise HardnegError(f'missing field "{key}"', where=where, line=line, fix=f'add "{key}": [...] to every line')
        return []
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(x, (str, int)) and not isinstance(x, bool) for x in v):
        raise HardnegError(f'field "{key}" must be a list of strings', where=where, line=line,
                           fix=f'write "{key}": ["...", ...]')
    out = [str(x) for x in v]
    if any(not x.strip() for x in out):
        raise HardnegError(f'field "{key}" has an empty entry', where=where, line=line, fix="remove empty entries")
    if required and not out:
        raise HardnegError(f'field "{key}" is empty', where=where, line=line, fix="give every query a positive")
    return out


def pairs_to_dataset(records: Iterable[tuple[int | None, dict[str, Any]]], *, name: str, where: str | Path,
                     corpus: Corpus | None = None) -> Dataset:
    """Build a train Dataset from (line, {"query", "pos", ["neg"], ["qid"]}) records."""
    qtexts: dict[str, str] = {}
    qrels: Qrels = {}
    by_text: dict[str, str] = {}
    extra_docs: dict[str, str] = {}
    drow = corpus.row if corpus is not None else None
    for line, obj in records:
        query = field_str(obj, "query", Path(str(where)), line or 0)
        pos = _str_list(obj, "pos", where, line, required=True)
        neg = _str_list(obj, "neg", where, line, required=False)
        if "qid" in obj:
            qid = field_str(obj, "qid", Path(str(where)), line or 0)
            if qid in qtexts and qtexts[qid] != query:
                raise HardnegError(f'qid "{qid}" appears with two different query texts', where=where, line=line,
                                   fix="give each query its own qid")
        else:
            qid = by_text.setdefault(query, f"q{len(by_text)}")
        qtexts[qid] = query
        if drow is not None:
            for d in pos + neg:
                if d not in drow:
                    raise HardnegError(f'document id "{d}" is not in the corpus', where=where, line=line,
                                       fix="use ids of the --corpus file, or drop --corpus to give texts")
            docs = pos
        else:
            for t in pos + neg:
                extra_docs.setdefault(text_id(t), t)
            docs = [text_id(t) for t in pos]
        for d in docs:
            qrels.setdefault(qid, {})[d] = 1
    if not qrels:
        raise HardnegError("no training pairs", where=where, fix='write one {"query": ..., "pos": [...]} per line')
    if corpus is None:
        ids = tuple(extra_docs)
        corpus = Corpus(ids, ("",) * len(ids), tuple(extra_docs[i] for i in ids))
    qids = tuple(qrels)
    return Dataset(name=name, split="train", corpus=corpus, queries=Queries(qids, tuple(qtexts[q] for q in qids)),
                   qrels=qrels)


def load_pairs_jsonl(path: str | Path, corpus_path: str | Path | None = None) -> Dataset:
    """Read a JSONL of training pairs (see the module docstring)."""
    path = require_file(path, "pairs file", 'pass a JSONL with one {"query": ..., "pos": [...]} per line')
    corpus = load_corpus(corpus_path) if corpus_path is not None else None
    ds = pairs_to_dataset(iter_jsonl(path), name=path.stem, where=path, corpus=corpus)
    return replace(ds, source=DataSource("pairs-jsonl", str(path), str(path)))


def load_pairs_hf(spec: str, corpus_path: str | Path | None = None) -> Dataset:
    """A Hugging Face dataset of pairs: ``hf:NAME[:SPLIT]`` (hub id or a local ``save_to_disk``/data folder).

    Columns ``query``/``pos`` or sentence-transformers' ``anchor``/``positive`` (optionally ``negative*``).
    """
    import datasets

    body = spec[3:]
    name, _, split = body.partition(":")
    split = split or "train"
    try:
        if Path(name).is_dir() and (Path(name) / "dataset_info.json").is_file():
            ds = datasets.load_from_disk(name)
            ds = ds[split] if isinstance(ds, datasets.DatasetDict) else ds
        else:
            ds = datasets.load_dataset(name, split=split)
    except Exception as exc:  # datasets raises many types (offline, missing split, bad files)
        raise HardnegError(f"cannot load Hugging Face dataset {name!r} split {split!r} ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''})", where=spec,
                           fix="check the name and split; offline, pass a local folder or a JSONL") from None
    cols = set(ds.column_names)
    qcol = "query" if "query" in cols else "anchor" if "anchor" in cols else None
    pcol = "pos" if "pos" in cols else "positive" if "positive" in cols else None
    if qcol is None or pcol is None:
        raise HardnegError(f"dataset columns {sorted(cols)} have no query/anchor and pos/positive column", where=spec,
                           fix="use a pairs dataset, e.g. columns anchor and positive")
    ncols = sorted(c for c in cols if c == "neg" or c.startswith("negative"))

    def records():
        for i, row in enumerate(ds):
            negs: list[str] = []
            for c in ncols:
                v = row[c]
                negs.extend(v if isinstance(v, list) else [v])
            yield i + 1, {"query": row[qcol], "pos": row[pcol], "neg": negs}

    out = pairs_to_dataset(records(), name=Path(name).name, where=spec,
                           corpus=load_corpus(corpus_path) if corpus_path else None)
    return replace(out, source=DataSource("hf", spec, name if Path(name).is_dir() else ""))
