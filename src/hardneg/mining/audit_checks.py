"""The checks of ``hardneg audit``: every negative of a mined set (``hardneg.mining.formats``) against the dataset it
was mined from and, when known, its teacher; the reasons are listed in ``hardneg.mining.audit``'s docstring."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable

import numpy as np

from hardneg.errors import HardnegError
from hardneg.mining.formats import Doc, MinedInput, Row, finite
from hardneg.mining.neighbours import normalise_text
from hardneg.types import Dataset

REASONS = ("labelled_positive", "same_text_as_positive", "duplicate_in_row", "not_in_corpus", "bad_score",
           "short_row", "near_copy", "suspected_fn")
SUSPECT_P = 0.95


def suspect_threshold(min_pos_score: float) -> float:
    """The ``percpos(SUSPECT_P)`` threshold of a query whose weakest positive scores ``min_pos_score``: a negative
    scoring at or above it is a suspected false negative."""
    return min_pos_score - abs(min_pos_score) * (1.0 - SUSPECT_P)


def _map_ids(inp: MinedInput, dataset: Dataset) -> tuple[int, int]:
    """Fill docids / qids of text-only formats from the dataset; returns (documents, documents not found)."""
    corpus = dataset.corpus
    by_text: dict[str, str] = {}
    for i, d in enumerate(corpus.ids):
        by_text.setdefault(corpus.texts[i], d)
    for i, d in enumerate(corpus.ids):
        by_text[corpus.encoding_texts[i]] = d  # the encoding text wins (what hardneg exports write)
    q_by_text: dict[str, str] = {}
    for q, t in zip(dataset.queries.ids, dataset.queries.texts):
        q_by_text.setdefault(t, q)
    total = missing = 0
    row = corpus.row
    for r in inp.rows:
        if r.qid is None:
            r.qid = q_by_text.get(r.query)
        for d in r.pos + r.neg:
            if d.docid is None and d.text is not None:
                d.docid = by_text.get(d.text)
            total += 1
            missing += d.docid is None or d.docid not in row
    return total, missing


def _teacher_arrays(spec, dataset: Dataset, cache_dir: Path | None):
    from hardneg.encode.cache import dataset_embeddings
    from hardneg.encode.encoder import load_encoder

    q, d = dataset_embeddings(load_encoder(spec, cache_dir), dataset, cache_dir)
    dn = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    return q, d, dn


def _r(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 6)


def _teacher_spec(teacher, inp: MinedInput):
    """The one encoder of the audit's teacher: ``teacher`` (a string, EncoderSpec or Teacher), else that of the
    set's mine_config.json when it names one encoder (None for fusion and lists: the teacher checks are skipped)."""
    from hardneg.encode.encoder import EncoderSpec
    from hardneg.mining.teachers import as_teacher

    if teacher is not None:
        t = as_teacher(teacher)
        if t.kind != "single":
            raise HardnegError(f"the audit scores with one encoder, got teacher {t}", where="--teacher",
                               fix="pass one alias, folder or hub id (e.g. the first member of the fusion)")
        return t.base
    for f in inp.files:
        for cand in (f.parent / "mine_config.json", f.parent.parent / "mine_config.json"):
            if cand.is_file():
                t = json.loads(cand.read_text(encoding="utf-8")).get("teacher")
                if isinstance(t, dict) and "|" not in t.get("model", "|"):
                    spec = as_teacher(EncoderSpec.from_dict(t))
                    return spec.base if spec.kind == "single" else None
    return None

def _normaliser() -> Callable[[str | None], str | None]:
    """``normalise_text`` remembered per text (a document recurs across rows); None stays None."""
    cache: dict[str, str] = {}

    def norm(t: str | None) -> str | None:
        if t is None:
            return None
        if t not in cache:
            cache[t] = normalise_text(t)
        return cache[t]

    return norm


def _row_positives(r: Row, dataset: Dataset, norm) -> tuple[set[str], set[str | None], list[int]]:
    """The row's positives (qrels and its own): (docids, normalised texts, corpus rows)."""
    row_of = dataset.corpus.row
    qpos = set(dataset.positives(r.qid)) if r.qid is not None else set()
    pos_ids = qpos | {d.docid for d in r.pos if d.docid is not None}
    pos_texts = {norm(d.text) for d in r.pos if d.text is not None}
    pos_texts |= {norm(dataset.corpus.encoding_texts[row_of[d]]) for d in pos_ids if d in row_of}
    return pos_ids, pos_texts, [row_of[d] for d in pos_ids if d in row_of]


def _teacher_scores(r: Row, dataset: Dataset, embs, pos_rows: list[int]):
    """Per negative of the row: (doc-doc cosine to the nearest positive [n] or None, teacher score [n] or None,
    the suspected-false-negative threshold or None); NaN for a negative outside the corpus."""
    if embs is None or not pos_rows:
        return None, None, None
    row_of = dataset.corpus.row
    q_emb, d_emb, dn = embs
    neg_rows = np.array([row_of.get(d.docid, -1) if d.docid else -1 for d in r.neg], dtype=np.int64)
    ok = neg_rows >= 0
    cos = np.full(len(r.neg), np.nan)
    if ok.any():
        cos[ok] = (dn[neg_rows[ok]] @ dn[pos_rows].T).max(axis=1)
    tscore = ref = None
    if r.qid in dataset.queries.row:
        qe = q_emb[dataset.queries.row[r.qid]]
        tscore = np.full(len(r.neg), np.nan)
        if ok.any():
            tscore[ok] = d_emb[neg_rows[ok]] @ qe
        ref = suspect_threshold(float((d_emb[pos_rows] @ qe).min()))
    return cos, tscore, ref


def _line(inp: MinedInput, r: Row, line: dict) -> dict:
    """A flagged line, with the row's file when the input has several."""
    if len(inp.files) > 1:
        line["file"] = r.file
    return line


def _audit_row(ri: int, r: Row, inp: MinedInput, dataset: Dataset, embs, norm, tau: float
               ) -> tuple[list[dict], list[set[str]]]:
    """The flagged lines of one row's negatives and each negative's set of reasons."""
    row_of = dataset.corpus.row
    pos_ids, pos_texts, pos_rows = _row_positives(r, dataset, norm)
    cos, tscore, ref = _teacher_scores(r, dataset, embs, pos_rows)
    seen_ids: set[str] = set()
    seen_txt: set[str] = set()
    lines: list[dict] = []
    row_flags: list[set[str]] = []
    for j, d in enumerate(r.neg):
        nt = norm(d.text) if d.text is not None else (
            norm(dataset.corpus.encoding_texts[row_of[d.docid]]) if d.docid in row_of else None)
        why = [reason for reason, hit in (
            ("labelled_positive", d.docid is not None and d.docid in pos_ids),
            ("same_text_as_positive", nt is not None and nt in pos_texts),
            ("duplicate_in_row", (d.docid is not None and d.docid in seen_ids)
             or (d.docid is None and nt is not None and nt in seen_txt)),
            ("not_in_corpus", d.docid is None or d.docid not in row_of),
            ("bad_score", inp.scored and not finite(d.score)),
            ("near_copy", cos is not None and np.isfinite(cos[j]) and cos[j] >= tau),
            ("suspected_fn", tscore is not None and ref is not None and np.isfinite(tscore[j]) and tscore[j] >= ref),
        ) if hit]
        if d.docid is not None:
            seen_ids.add(d.docid)
        if nt is not None:
            seen_txt.add(nt)
        row_flags.append(set(why))
        if why:
            lines.append(_line(inp, r, {"qid": r.qid, "docid": d.docid, "reasons": why,
                                        "scores": _scores(d, cos, tscore, ref, j), "row": ri, "slot": j}))
    return lines, row_flags


def _scores(d: Doc, cos, tscore, ref: float | None, j: int) -> dict:
    """The scores a flagged line carries: the file's own, and the teacher's when there is one."""
    scores = {"score": _r(d.score) if finite(d.score) else None}
    if cos is not None:
        scores["pos_cos"] = _r(cos[j])
    if tscore is not None:
        scores["teacher"] = _r(tscore[j])
        scores["threshold"] = _r(ref)
    return scores


def audit_rows(inp: MinedInput, dataset: Dataset, *, n: int | None = None, tau: float = 0.95, teacher=None,
               cache_dir: Path | None = None) -> tuple[list[dict], dict]:
    """Flag every negative of ``inp`` (reasons: ``hardneg.mining.audit``'s docstring). Returns (flagged lines,
    per-row details)."""
    if not -1.0 <= tau <= 1.0:
        raise HardnegError(f"tau must be in [-1, 1], got {tau}", where="--tau", fix="use e.g. --tau 0.95")
    total, missing = _map_ids(inp, dataset)
    if total and missing > 0.5 * total:
        raise HardnegError(f"{missing:,} of {total:,} mined documents are not in the corpus of {dataset.name}",
                           where=inp.files[0], fix="pass the --data the set was mined from")
    n = max((len(r.neg) for r in inp.rows), default=0) if n is None else n
    spec = _teacher_spec(teacher, inp)
    embs = _teacher_arrays(spec, dataset, cache_dir) if spec is not None else None
    norm = _normaliser()
    lines: list[dict] = []
    flags_per_row: list[list[set[str]]] = []
    for ri, r in enumerate(inp.rows):
        row_lines, row_flags = _audit_row(ri, r, inp, dataset, embs, norm, tau)
        lines += row_lines
        if len(r.neg) < n:
            lines.append(_line(inp, r, {"qid": r.qid, "docid": None, "reasons": ["short_row"],
                                        "scores": {"negatives": len(r.neg), "n": n}, "row": ri, "slot": None}))
        flags_per_row.append(row_flags)
    info = {"n": n, "teacher": None if spec is None else spec.model, "flags": flags_per_row, "embs": embs,
            "spec": spec}
    return lines, info
