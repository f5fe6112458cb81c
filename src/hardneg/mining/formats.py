"""Mined training sets in the formats ``hardneg audit`` reads, as one shape (``MinedInput`` of ``Row`` of ``Doc``):

- hardneg's ``mined.jsonl`` (``{"qid", "query", "pos": {docid, text, score}, "neg": [{docid, text, score, rank}]}``),
  or a folder holding them (a ``hardneg mine --out`` folder: every ``*/mined.jsonl``);
- sentence-transformers mined datasets, saved with ``save_to_disk`` (a folder) or as JSONL: ``triplet``, ``n-tuple``,
  ``labeled-pair`` and ``labeled-list``;
- FlagEmbedding JSONL (``query``, ``pos``: [texts], ``neg``: [texts], optional ``pos_scores``/``neg_scores``).

Text-only formats carry no ids: ``hardneg.mining.audit`` maps them through the dataset.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hardneg.data.jsonl import iter_jsonl
from hardneg.errors import HardnegError

FORMATS = ("hardneg", "st-triplet", "st-n-tuple", "st-labeled-pair", "st-labeled-list", "flag")


@dataclass
class Doc:
    docid: str | None
    text: str | None
    score: float | None = None
    has_score_field: bool = False


@dataclass
class Row:
    qid: str | None
    query: str
    pos: list[Doc]
    neg: list[Doc]
    raw: Any = None  # the source record(s), for --fix
    file: str = ""


@dataclass
class MinedInput:
    format: str
    rows: list[Row]
    files: list[Path]
    scored: bool  # the format carries negative scores
    extra: dict = field(default_factory=dict)


def finite(v: Any) -> bool:
    """A real, finite number (not a bool)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


ST_TAILS = ("negative", "negative_1", "labels", "label", "score", "scores")  # columns ST appends after the pair


def _st_columns(records: list[dict], cols: list[str]) -> tuple[list[dict], list[str]]:
    """sentence-transformers keeps the input's first two column names (e.g. query, answer): call them anchor and
    positive when the third column is one ST appends, so every format below reads them by one name."""
    if {"anchor", "positive"} <= set(cols) or len(cols) < 3 or cols[2] not in ST_TAILS:
        return records, cols
    a, b = cols[0], cols[1]
    ren = {a: "anchor", b: "positive"}
    return [{ren.get(k, k): v for k, v in r.items()} for r in records], ["anchor", "positive", *cols[2:]]


def _st_format(cols: list[str]) -> str | None:
    c = set(cols)
    if {"anchor", "positive", "negative"} <= c:
        return "st-triplet"
    if {"anchor", "positive", "negative_1"} <= c:
        return "st-n-tuple"
    if {"anchor", "positive", "labels"} <= c:
        return "st-labeled-list"
    if {"anchor", "positive", "label"} <= c:
        return "st-labeled-pair"
    return None


def _st_rows(records: list[dict], fmt: str, file: str) -> list[Row]:
    rows: list[Row] = []
    if fmt == "st-n-tuple":
        for r in records:
            k = sorted((int(c.split("_")[1]), c) for c in r if c.startswith("negative_") and c.split("_")[1].isdigit())
            rows.append(Row(None, r["anchor"], [Doc(None, r["positive"])],
                            [Doc(None, r[c]) for _, c in k if r[c] is not None], raw=r, file=file))
    elif fmt == "st-triplet":
        for r in records:
            if rows and rows[-1].query == r["anchor"] and rows[-1].pos[0].text == r["positive"]:
                rows[-1].neg.append(Doc(None, r["negative"]))
                rows[-1].raw.append(r)
            else:
                rows.append(Row(None, r["anchor"], [Doc(None, r["positive"])], [Doc(None, r["negative"])], raw=[r],
                                file=file))
    elif fmt == "st-labeled-pair":
        for r in records:
            if not rows or rows[-1].query != r["anchor"]:
                rows.append(Row(None, r["anchor"], [], [], raw=[], file=file))
            (rows[-1].pos if int(r["label"]) == 1 else rows[-1].neg).append(Doc(None, r["positive"]))
            rows[-1].raw.append(r)
    else:  # labeled-list
        for r in records:
            texts, labels = list(r["positive"]), list(r["labels"])
            rows.append(Row(None, r["anchor"], [Doc(None, t) for t, lab in zip(texts, labels) if int(lab) == 1],
                            [Doc(None, t) for t, lab in zip(texts, labels) if int(lab) != 1], raw=r, file=file))
    return rows


def _jsonl_records(path: Path) -> list[dict]:
    return [obj for _, obj in iter_jsonl(path)]


def _hardneg_rows(records: list[dict], file: str) -> list[Row]:
    rows = []
    for r in records:
        p = r["pos"]
        negs = [Doc(str(x.get("docid")) if x.get("docid") is not None else None, x.get("text"), x.get("score"),
                    True) for x in r.get("neg", [])]
        rows.append(Row(str(r["qid"]), r.get("query", ""), [Doc(str(p.get("docid")), p.get("text"), p.get("score"),
                                                               True)], negs, raw=r, file=file))
    return rows


def _flag_rows(records: list[dict], file: str) -> tuple[list[Row], bool]:
    scored = any("neg_scores" in r for r in records)
    rows = []
    for r in records:
        ns = r.get("neg_scores")
        negs = [Doc(None, t, (ns[j] if isinstance(ns, list) and j < len(ns) else None), scored)
                for j, t in enumerate(r.get("neg", []))]
        rows.append(Row(None, r["query"], [Doc(None, t) for t in r.get("pos", [])], negs, raw=r, file=file))
    return rows, scored


def read_mined_any(path: str | Path) -> MinedInput:
    """Read a mined set in any supported format (module docstring); an unknown format is a one-line error."""
    p = Path(path).expanduser()
    if not p.exists():
        raise HardnegError("mined input not found", where=p,
                           fix="pass a mined.jsonl, a hardneg mine --out folder, a sentence-transformers dataset or a "
                               "FlagEmbedding JSONL")
    if p.is_dir():
        if (p / "state.json").is_file() or (p / "dataset_info.json").is_file():
            import datasets

            ds = datasets.load_from_disk(str(p))
            if isinstance(ds, datasets.DatasetDict):
                ds = ds[next(iter(ds))]
            records, cols = _st_columns(list(ds), list(ds.column_names))
            fmt = _st_format(cols)
            if fmt is None:
                raise HardnegError(f"unknown mined format: columns {', '.join(ds.column_names)}", where=p,
                                   fix="audit reads triplet, n-tuple, labeled-pair and labeled-list datasets")
            return MinedInput(fmt, _st_rows(records, fmt, p.name), [p], False, {"saved": True})
        files = sorted(p.glob("mined.jsonl")) or sorted(p.glob("*/mined.jsonl")) or sorted(p.glob("*/*/mined.jsonl"))
        if not files:
            raise HardnegError("no mined.jsonl in this folder", where=p,
                               fix="pass a mined.jsonl or a `hardneg mine --out` folder")
        rows = []
        for f in files:
            rows += _hardneg_rows(_jsonl_records(f), str(f.relative_to(p)))
        return MinedInput("hardneg", rows, files, True)
    records = _jsonl_records(p)
    if not records:
        raise HardnegError("the mined file has no rows", where=p, fix="pass a non-empty file")
    first = records[0]
    if "qid" in first and isinstance(first.get("pos"), dict):
        return MinedInput("hardneg", _hardneg_rows(records, p.name), [p], True)
    if "query" in first and isinstance(first.get("pos"), list):
        rows, scored = _flag_rows(records, p.name)
        return MinedInput("flag", rows, [p], scored)
    records, cols = _st_columns(records, list(first))
    fmt = _st_format(cols)
    if fmt is not None:
        return MinedInput(fmt, _st_rows(records, fmt, p.name), [p], False)
    raise HardnegError(f"unknown mined format: first row has keys {', '.join(sorted(first)) or 'none'}", where=p,
                       fix="audit reads hardneg mined.jsonl, sentence-transformers triplet / n-tuple / labeled "
                           "columns, and FlagEmbedding JSONL (query, pos, neg)")
