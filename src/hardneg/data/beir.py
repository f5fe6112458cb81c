"""BEIR folders: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``, validated strictly."""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

from hardneg.data.jsonl import BOM, field_str, iter_jsonl, require_file
from hardneg.errors import HardnegError
from hardneg.types import MANIFESTS, Corpus, DataSource, Dataset, Qrels, Queries


def load_corpus(path: str | Path) -> Corpus:
    """Read a BEIR ``corpus.jsonl``: ``{"_id", "title"?, "text"}`` per line; ids unique, text non-empty."""
    path = require_file(path, "corpus file", "point --data at a BEIR folder that holds corpus.jsonl")
    ids: list[str] = []
    titles: list[str] = []
    texts: list[str] = []
    seen: dict[str, int] = {}
    for lineno, obj in iter_jsonl(path):
        did = field_str(obj, "_id", path, lineno)
        title = field_str(obj, "title", path, lineno, required=False, allow_empty=True)
        text = field_str(obj, "text", path, lineno, required="title" not in obj, allow_empty=True)
        if not (title.strip() or text.strip()):
            raise HardnegError(f'document "{did}" has an empty title and text', where=path, line=lineno,
                               fix="remove the document or give it text")
        if did in seen:
            raise HardnegError(f'duplicate document id "{did}" (first on line {seen[did]})', where=path,
                               line=lineno, fix="make every _id unique")
        seen[did] = lineno
        ids.append(did)
        titles.append(title)
        texts.append(text)
    if not ids:
        raise HardnegError("the corpus is empty", where=path, fix="add documents, one JSON object per line")
    return Corpus(tuple(ids), tuple(titles), tuple(texts))


def load_queries(path: str | Path) -> Queries:
    """Read a BEIR ``queries.jsonl``: ``{"_id", "text"}`` per line (metadata is ignored: it can leak labels)."""
    path = require_file(path, "queries file", "point --data at a BEIR folder that holds queries.jsonl")
    ids: list[str] = []
    texts: list[str] = []
    seen: dict[str, int] = {}
    for lineno, obj in iter_jsonl(path):
        qid = field_str(obj, "_id", path, lineno)
        text = field_str(obj, "text", path, lineno)
        if qid in seen:
            raise HardnegError(f'duplicate query id "{qid}" (first on line {seen[qid]})', where=path,
                               line=lineno, fix="make every _id unique")
        seen[qid] = lineno
        ids.append(qid)
        texts.append(text)
    if not ids:
        raise HardnegError("the queries file is empty", where=path, fix="add queries, one JSON object per line")
    return Queries(tuple(ids), tuple(texts))


def available_splits(folder: str | Path) -> list[str]:
    qdir = Path(folder) / "qrels"
    return sorted(p.stem for p in qdir.glob("*.tsv")) if qdir.is_dir() else []


MAX_GRADE = 1_000_000  # relevance grades are small integers; anything larger is a broken column


def parse_grade(text: str, where: str | Path, line: int) -> int:
    """A qrels relevance grade: an integer (``2`` or ``2.0``), finite, with magnitude <= MAX_GRADE."""
    fix = "use an integer relevance grade (0, 1, 2, ...)"
    shown = text if len(text) <= 40 else text[:37] + "..."
    try:
        value = float(text)
    except ValueError:
        raise HardnegError(f'score "{shown}" is not a number', where=where, line=line, fix=fix) from None
    # float() accepts "nan", "inf" and "1e999" (= inf): int() of those would raise, so check first.
    if not math.isfinite(value):
        raise HardnegError(f'score "{shown}" is not a finite number', where=where, line=line, fix=fix)
    if value != int(value):
        raise HardnegError(f'score "{shown}" is not an integer grade', where=where, line=line, fix=fix)
    if abs(value) > MAX_GRADE:
        raise HardnegError(f'score "{shown}" is outside [-{MAX_GRADE:,}, {MAX_GRADE:,}]', where=where, line=line,
                           fix=fix)
    return int(value)


def load_qrels(path: str | Path, *, split: str | None = None) -> tuple[Qrels, dict[tuple[str, str], int]]:
    """Read a qrels TSV (optional header ``query-id corpus-id score``; CRLF tolerated).

    Returns the qrels and, for error reporting, the line of each (qid, docid) pair.
    """
    p = Path(path)
    if not p.is_file():
        folder = p.parent.parent
        have = available_splits(folder)
        raise HardnegError(f'split "{split or p.stem}" does not exist (no {p.name} in {p.parent})', where=folder,
                           fix=f"use --split with one of: {', '.join(have) or 'none found (add qrels/<split>.tsv)'}")
    qrels: Qrels = {}
    where: dict[tuple[str, str], int] = {}
    with open(p, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if lineno == 1:
                raw = raw.removeprefix(BOM)  # else the header would not be recognised
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                raise HardnegError("bytes that are not UTF-8", where=p, line=lineno,
                                   fix="re-encode the file as UTF-8") from None
            if not line.strip():
                continue
            cols = line.split("\t")
            if lineno == 1 and cols[0].strip().lower() in ("query-id", "query_id", "qid"):
                continue  # header
            if len(cols) != 3:
                raise HardnegError(f"expected 3 tab-separated columns (query-id, corpus-id, score), got {len(cols)}",
                                   where=p, line=lineno, fix="separate the columns with single tabs")
            qid, did, score_s = (c.strip() for c in cols)
            if not qid or not did:
                raise HardnegError("empty query-id or corpus-id", where=p, line=lineno, fix="fill in both ids")
            score = parse_grade(score_s, p, lineno)
            if (qid, did) in where:
                raise HardnegError(f'duplicate judgement for ({qid}, {did}) (first on line {where[(qid, did)]})',
                                   where=p, line=lineno, fix="keep one row per (query-id, corpus-id)")
            where[(qid, did)] = lineno
            qrels.setdefault(qid, {})[did] = score
    if not qrels:
        raise HardnegError("the qrels file has no judgements", where=p, fix="add rows query-id<TAB>corpus-id<TAB>score")
    return qrels, where


def load_beir(folder: str | Path, split: str, *, name: str | None = None,
              source: DataSource | None = None) -> Dataset:
    """Load one split of a BEIR folder; every qrels id must exist in the corpus and the queries. ``source``:
    where it came from (default: this folder, with its manifest if it holds one)."""
    folder = Path(folder)
    if not folder.exists():
        raise HardnegError("data folder not found", where=folder,
                           fix="pass a BEIR folder (corpus.jsonl, queries.jsonl, qrels/)")
    if not folder.is_dir():
        raise HardnegError("data path is not a folder", where=folder,
                           fix="pass a BEIR folder (corpus.jsonl, queries.jsonl, qrels/)")
    qrels_path = folder / "qrels" / f"{split}.tsv"
    qrels, where = load_qrels(qrels_path, split=split)
    corpus = load_corpus(folder / "corpus.jsonl")
    queries = load_queries(folder / "queries.jsonl")
    drow, qrow = corpus.row, queries.row
    for (qid, did), lineno in where.items():
        if qid not in qrow:
            raise HardnegError(f'query id "{qid}" is not in queries.jsonl', where=qrels_path, line=lineno,
                               fix="add the query to queries.jsonl or remove the qrels row")
        if did not in drow:
            raise HardnegError(f'document id "{did}" is not in corpus.jsonl', where=qrels_path, line=lineno,
                               fix="add the document to corpus.jsonl or remove the qrels row")
    split_ids = [q for q in queries.ids if q in qrels]  # queries.jsonl order: stable
    if source is None:
        source = DataSource("beir", str(folder), str(folder))
    manifest = next((m for m in MANIFESTS if (folder / m).is_file()), None)
    return Dataset(name=name or folder.name, split=split, corpus=corpus, queries=queries.subset(split_ids),
                   qrels={q: qrels[q] for q in split_ids}, source=replace(source, manifest=manifest))
