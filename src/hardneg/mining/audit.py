"""``hardneg audit``: check a mined training set (hardneg, sentence-transformers or FlagEmbedding format) for false
negatives and broken rows, against the dataset it was mined from.

Inputs (``read_mined_any``):

- hardneg's ``mined.jsonl`` (``{"qid", "query", "pos": {docid, text, score}, "neg": [{docid, text, score, rank}]}``),
  or a folder holding them (a ``hardneg mine --out`` folder: every ``*/mined.jsonl``);
- sentence-transformers mined datasets, saved with ``save_to_disk`` (a folder) or as JSONL: ``triplet`` (anchor,
  positive, negative; consecutive rows of one (anchor, positive) form one row), ``n-tuple`` (anchor, positive,
  negative_1..n), ``labeled-pair`` (anchor, positive, label: 1 = positive, 0 = negative, grouped by anchor) and
  ``labeled-list`` (anchor, positive: [texts], labels: [0/1]);
- FlagEmbedding JSONL (``query``, ``pos``: [texts], ``neg``: [texts], optional ``pos_scores``/``neg_scores``).

Texts of text-only formats are mapped to ids through the dataset: queries by their text, documents by their BEIR
encoding text (``title + " " + text``) or their text alone.

Reasons (one line of ``audit.jsonl`` per flagged negative; ``short_row`` lines have ``docid`` null):

- ``labelled_positive``  the negative is a positive of the query in the qrels (relevance > 0) or the row's own positive
- ``same_text_as_positive``  its normalised text (``hardneg.mining.neighbours.normalise_text``) equals a positive's
- ``duplicate_in_row``   the same document (id, else normalised text) appears earlier among the row's negatives
- ``not_in_corpus``      its id (or text) is not in the dataset's corpus
- ``bad_score``          a format that carries scores has none, or a non-finite one, for it
- ``short_row``          the row has fewer than n negatives (n: ``--n``, default the most any row has)
- ``near_copy``          doc-doc cosine to a positive of the query >= tau (``--tau``, default 0.95; the teacher's
                         cached document embeddings)
- ``suspected_fn``       teacher score >= the ``percpos(0.95)`` threshold of the query (the weakest positive's score
                         minus 5% of its magnitude): the rule positive-aware mining would have removed it with

The teacher (``--teacher``, else the one in a ``mine_config.json`` beside the input) is needed for the last two; without
one they are skipped (``audit.json`` says so). On a dataset written by ``hardneg inject`` the near-copy check is scored
against the manifest (precision and recall over the negatives that are injected copies of the query's positives).
"""
from __future__ import annotations

import json
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hardneg.data.jsonl import iter_jsonl
from hardneg.errors import HardnegError
from hardneg.io import write_json, write_jsonl
from hardneg.markdown import md_table
from hardneg.mining.neighbours import normalise_text
from hardneg.types import Dataset

log = logging.getLogger("hardneg")

REASONS = ("labelled_positive", "same_text_as_positive", "duplicate_in_row", "not_in_corpus", "bad_score",
           "short_row", "near_copy", "suspected_fn")
FORMATS = ("hardneg", "st-triplet", "st-n-tuple", "st-labeled-pair", "st-labeled-list", "flag")
SUSPECT_P = 0.95


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


# -- reading ------------------------------------------------------------------------------------------------------

def _finite(v: Any) -> bool:
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


# -- checks -------------------------------------------------------------------------------------------------------

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
    from hardneg.encode.encoder import EncoderSpec

    if teacher is not None:
        return EncoderSpec(model=teacher) if isinstance(teacher, str) else teacher
    for f in inp.files:
        for cand in (f.parent / "mine_config.json", f.parent.parent / "mine_config.json"):
            if cand.is_file():
                t = json.loads(cand.read_text(encoding="utf-8")).get("teacher")
                if isinstance(t, dict) and "|" not in t.get("model", "|"):
                    return EncoderSpec.from_dict(t)
    return None


def audit_rows(inp: MinedInput, dataset: Dataset, *, n: int | None = None, tau: float = 0.95, teacher=None,
               cache_dir: Path | None = None) -> tuple[list[dict], dict]:
    """Flag every negative of ``inp`` (reasons: module docstring). Returns (flagged lines, per-row details)."""
    if not -1.0 <= tau <= 1.0:
        raise HardnegError(f"tau must be in [-1, 1], got {tau}", where="--tau", fix="use e.g. --tau 0.95")
    total, missing = _map_ids(inp, dataset)
    if total and missing > 0.5 * total:
        raise HardnegError(f"{missing:,} of {total:,} mined documents are not in the corpus of {dataset.name}",
                           where=inp.files[0], fix="pass the --data the set was mined from")
    n = max((len(r.neg) for r in inp.rows), default=0) if n is None else n
    row_of = dataset.corpus.row
    spec = _teacher_spec(teacher, inp)
    embs = _teacher_arrays(spec, dataset, cache_dir) if spec is not None else None
    qrow = dataset.queries.row
    norm_cache: dict[str, str] = {}

    def norm(t: str | None) -> str | None:
        if t is None:
            return None
        if t not in norm_cache:
            norm_cache[t] = normalise_text(t)
        return norm_cache[t]

    lines: list[dict] = []
    flags_per_row: list[list[set[str]]] = []
    for ri, r in enumerate(inp.rows):
        qpos = set(dataset.positives(r.qid)) if r.qid is not None else set()
        pos_ids = qpos | {d.docid for d in r.pos if d.docid is not None}
        pos_texts = {norm(d.text) for d in r.pos if d.text is not None}
        pos_texts |= {norm(dataset.corpus.encoding_texts[row_of[d]]) for d in pos_ids if d in row_of}
        pos_rows = [row_of[d] for d in pos_ids if d in row_of]
        cos = tscore = None
        ref = None
        if embs is not None and pos_rows:
            q_emb, d_emb, dn = embs
            neg_rows = np.array([row_of.get(d.docid, -1) if d.docid else -1 for d in r.neg], dtype=np.int64)
            ok = neg_rows >= 0
            cos = np.full(len(r.neg), np.nan)
            if ok.any():
                cos[ok] = (dn[neg_rows[ok]] @ dn[pos_rows].T).max(axis=1)
            if r.qid in qrow:
                qe = q_emb[qrow[r.qid]]
                tscore = np.full(len(r.neg), np.nan)
                if ok.any():
                    tscore[ok] = d_emb[neg_rows[ok]] @ qe
                ps = d_emb[pos_rows] @ qe
                m = float(ps.min())
                ref = m - abs(m) * (1.0 - SUSPECT_P)
        seen_ids: set[str] = set()
        seen_txt: set[str] = set()
        row_flags: list[set[str]] = []
        for j, d in enumerate(r.neg):
            why: list[str] = []
            if d.docid is not None and d.docid in pos_ids:
                why.append("labelled_positive")
            nt = norm(d.text) if d.text is not None else (
                norm(dataset.corpus.encoding_texts[row_of[d.docid]]) if d.docid in row_of else None)
            if nt is not None and nt in pos_texts:
                why.append("same_text_as_positive")
            if (d.docid is not None and d.docid in seen_ids) or (d.docid is None and nt is not None and nt in seen_txt):
                why.append("duplicate_in_row")
            if d.docid is None or d.docid not in row_of:
                why.append("not_in_corpus")
            if inp.scored and not _finite(d.score):
                why.append("bad_score")
            if cos is not None and np.isfinite(cos[j]) and cos[j] >= tau:
                why.append("near_copy")
            if tscore is not None and ref is not None and np.isfinite(tscore[j]) and tscore[j] >= ref:
                why.append("suspected_fn")
            if d.docid is not None:
                seen_ids.add(d.docid)
            if nt is not None:
                seen_txt.add(nt)
            row_flags.append(set(why))
            if why:
                scores = {"score": _r(d.score) if _finite(d.score) else None}
                if cos is not None:
                    scores["pos_cos"] = _r(cos[j])
                if tscore is not None:
                    scores["teacher"] = _r(tscore[j])
                    scores["threshold"] = _r(ref)
                line = {"qid": r.qid, "docid": d.docid, "reasons": why, "scores": scores, "row": ri, "slot": j}
                if len(inp.files) > 1:
                    line["file"] = r.file
                lines.append(line)
        if len(r.neg) < n:
            line = {"qid": r.qid, "docid": None, "reasons": ["short_row"], "scores": {"negatives": len(r.neg), "n": n},
                    "row": ri, "slot": None}
            if len(inp.files) > 1:
                line["file"] = r.file
            lines.append(line)
        flags_per_row.append(row_flags)
    info = {"n": n, "teacher": None if spec is None else spec.model, "flags": flags_per_row, "embs": embs,
            "spec": spec}
    return lines, info


def _near_copy_vs_manifest(inp: MinedInput, lines: list[dict], manifest) -> dict:
    """Precision and recall of ``near_copy`` against the injected traps of each row's query."""
    traps = {(q, d) for q, ds in manifest.by_qid.items() for d in ds}
    flagged = {(x["row"], x["slot"]) for x in lines if "near_copy" in x["reasons"]}
    truth = {(ri, j) for ri, r in enumerate(inp.rows) for j, d in enumerate(r.neg) if (r.qid, d.docid) in traps}
    tp = len(flagged & truth)
    return {"traps_in_set": len(truth), "flagged": len(flagged), "true_positives": tp,
            "precision": None if not flagged else tp / len(flagged), "recall": None if not truth else tp / len(truth)}


# -- fix ----------------------------------------------------------------------------------------------------------

def _refill(inp: MinedInput, info: dict, dataset: Dataset, pool, tau: float) -> dict[int, list[tuple]]:
    """Per row, replacements (docid, teacher score, raw rank) from the pool, in rank order, that pass every check."""
    if pool is None:
        return {}
    row_of = dataset.corpus.row
    qi = {q: i for i, q in enumerate(pool.qids)}
    embs = info.get("embs")
    out: dict[int, list[tuple]] = {}
    for ri, r in enumerate(inp.rows):
        dropped = sum(1 for f in info["flags"][ri] if f)
        want = max(0, info["n"] - (len(r.neg) - dropped))
        if not want or r.qid not in qi:
            continue
        i = qi[r.qid]
        pos_ids = set(dataset.positives(r.qid)) | {d.docid for d in r.pos if d.docid}
        pos_txt = {normalise_text(dataset.corpus.encoding_texts[row_of[p]]) for p in pos_ids if p in row_of}
        have = {d.docid for d, f in zip(r.neg, info["flags"][ri]) if not f}
        lo, hi = int(pool.pos_ptr[i]), int(pool.pos_ptr[i + 1])
        s = pool.pos_score[lo:hi].astype(np.float64)
        ref = float(s.min()) - abs(float(s.min())) * (1.0 - SUSPECT_P)
        prow = [row_of[p] for p in pos_ids if p in row_of]
        got: list[tuple] = []
        for c, sc, rk in zip(pool.cand_idx[i].tolist(), pool.cand_score[i].tolist(), pool.cand_rank[i].tolist()):
            if len(got) >= want:
                break
            if c < 0:
                break
            d = dataset.corpus.ids[c]
            if d in have or d in pos_ids or sc >= ref:
                continue
            if normalise_text(dataset.corpus.encoding_texts[c]) in pos_txt:
                continue
            if embs is not None and prow and float((embs[2][c] @ embs[2][prow].T).max()) >= tau:
                continue
            got.append((d, round(float(sc), 6), int(rk)))
            have.add(d)
        out[ri] = got
    return out


def _write_fix(inp: MinedInput, info: dict, dataset: Dataset, fix: Path, refill: dict[int, list[tuple]]) -> dict:
    from hardneg.io import ensure_dir

    ensure_dir(fix)
    ids, texts, row_of = dataset.corpus.ids, dataset.corpus.encoding_texts, dataset.corpus.row
    n = info["n"]
    kept_rows: list[Any] = []
    dropped_negs = added = dropped_rows = 0
    for ri, r in enumerate(inp.rows):
        flags = info["flags"][ri]
        keep = [j for j, f in enumerate(flags) if not f]
        extra = refill.get(ri, [])
        dropped_negs += len(flags) - len(keep)
        added += len(extra)
        if inp.format == "hardneg":
            negs = [r.raw["neg"][j] for j in keep]
            negs += [{"docid": d, "text": texts[row_of[d]], "score": sc, "rank": rk, "refilled": True}
                     for d, sc, rk in extra]
            kept_rows.append({**r.raw, "neg": negs})
        elif inp.format == "flag":
            negs = [r.raw["neg"][j] for j in keep] + [texts[row_of[d]] for d, _, _ in extra]
            out = {**r.raw, "neg": negs}
            if "neg_scores" in r.raw:
                out["neg_scores"] = [r.raw["neg_scores"][j] for j in keep] + [sc for _, sc, _ in extra]
            kept_rows.append(out)
        else:
            negs = [r.neg[j].text for j in keep] + [texts[row_of[d]] for d, _, _ in extra]
            if inp.format == "st-n-tuple":
                if len(negs) < n:
                    dropped_rows += 1  # fixed columns: a row that cannot be refilled to n is left out
                    continue
                kept_rows.append({"anchor": r.query, "positive": r.pos[0].text,
                                  **{f"negative_{k + 1}": negs[k] for k in range(n)}})
            elif inp.format == "st-triplet":
                kept_rows += [{"anchor": r.query, "positive": r.pos[0].text, "negative": t} for t in negs]
            elif inp.format == "st-labeled-pair":
                kept_rows += [{"anchor": r.query, "positive": p.text, "label": 1} for p in r.pos]
                kept_rows += [{"anchor": r.query, "positive": t, "label": 0} for t in negs]
            else:
                kept_rows.append({"anchor": r.query, "positive": [p.text for p in r.pos] + negs,
                                  "labels": [1] * len(r.pos) + [0] * len(negs)})
    name = {"hardneg": "mined.jsonl", "flag": "flag.jsonl"}.get(inp.format, "st.jsonl")
    written = write_jsonl(fix / name, kept_rows)
    if inp.extra.get("saved") and kept_rows:
        import datasets

        datasets.Dataset.from_list(kept_rows).save_to_disk(str(fix / "st"))
    return {"file": str(fix / name), "rows": written, "negatives_dropped": dropped_negs, "negatives_refilled": added,
            "rows_dropped": dropped_rows, "refilled_from_pool": bool(refill)}


# -- entry point ----------------------------------------------------------------------------------------------------

def _parse_fail_on(fail_on) -> tuple[str, ...]:
    items = [x.strip() for v in (fail_on or ()) for x in str(v).split(",") if x.strip()]
    bad = [x for x in items if x not in REASONS]
    if bad:
        raise HardnegError(f"unknown audit reason {', '.join(bad)}", where="--fail-on",
                           fix=f"choose from {', '.join(REASONS)}")
    return tuple(items)


def run_audit(mined: str | Path, data: str | Path, out: str | Path, *, split: str = "train", teacher=None,
              cache_dir: Path | None = None, n: int | None = None, tau: float = 0.95, fail_on=(),
              fix: str | Path | None = None, depth: int = 100) -> dict:
    """Audit ``mined`` against ``data``; write ``out/audit.jsonl`` and ``out/audit.json`` (``out`` claimed by the
    caller), and with ``fix`` a cleaned copy. Returns audit.json's content plus ``table`` (Markdown) and ``failed``.
    """
    from hardneg.data.inject import manifest_for
    from hardneg.data.load import load_dataset

    fail = _parse_fail_on(fail_on)
    if n is not None and n < 0:
        raise HardnegError(f"n must be >= 0, got {n}", where="--n", fix="use e.g. --n 4")
    inp = read_mined_any(mined)
    dataset = load_dataset(data, split, cache_dir=cache_dir)
    lines, info = audit_rows(inp, dataset, n=n, tau=tau, teacher=teacher, cache_dir=cache_dir)
    out = Path(out)
    write_jsonl(out / "audit.jsonl", ({k: v for k, v in x.items() if k not in ("row", "slot")} for x in lines))
    counts = Counter(r for x in lines for r in x["reasons"])
    rows_by = {k: len({x["row"] for x in lines if k in x["reasons"]}) for k in REASONS}
    negatives = sum(len(r.neg) for r in inp.rows)
    skipped = [] if info["teacher"] is not None else ["near_copy", "suspected_fn"]
    res: dict[str, Any] = {
        "input": str(mined), "format": inp.format, "files": [str(f) for f in inp.files], "data": str(data),
        "split": split, "rows": len(inp.rows), "negatives": negatives, "n": info["n"], "teacher": info["teacher"],
        "tau": tau, "suspected_fn_rule": f"teacher score >= percpos({SUSPECT_P}) threshold of the query",
        "counts": {k: int(counts.get(k, 0)) for k in REASONS},
        "rows_affected": rows_by,
        "flagged_negatives": sum(1 for x in lines if x["docid"] is not None or "short_row" not in x["reasons"]),
        "rows_with_any": len({x["row"] for x in lines}),
        "skipped": skipped,
        "rows_without_qid": sum(1 for r in inp.rows if r.qid is None),
    }
    manifest = manifest_for(data, split) if Path(str(data)).expanduser().is_dir() else None
    if manifest is not None and info["teacher"] is not None:
        res["near_copy_vs_injected"] = _near_copy_vs_manifest(inp, lines, manifest)
    if fix is not None:
        pool = None
        if info["spec"] is not None:
            try:
                from hardneg.mining.pipeline import get_pool

                pool = get_pool(info["spec"], dataset, depth, cache_dir, progress=False)
            except HardnegError as exc:  # no pool: drop without refilling
                log.warning("audit --fix: no candidate pool to refill from (%s)", exc)
        res["fix"] = _write_fix(inp, info, dataset, Path(fix), _refill(inp, info, dataset, pool, tau))
    res["fail_on"] = list(fail)
    res["failed"] = any(res["counts"][k] for k in fail)
    write_json(out / "audit.json", res)
    res["table"] = audit_table(res)
    return res


def audit_table(res: dict) -> str:
    """Markdown table: per reason, flagged count and rows affected."""
    body = [[k, f"{res['counts'][k]:,}", f"{res['rows_affected'][k]:,}",
             "skipped (no teacher)" if k in res.get("skipped", []) else ""] for k in REASONS]
    lines = md_table(["reason", "flagged", "rows", "note"], body)
    head = (f"audit of {res['input']} ({res['format']}): {res['rows']:,} rows, {res['negatives']:,} negatives, "
            f"n = {res['n']}, teacher {res['teacher'] or 'none'}")
    extra = ""
    if "near_copy_vs_injected" in res:
        v = res["near_copy_vs_injected"]
        pr = "n/a" if v["precision"] is None else f"{100 * v['precision']:.1f}%"
        rc = "n/a" if v["recall"] is None else f"{100 * v['recall']:.1f}%"
        extra = (f"\nnear_copy vs injected traps: precision {pr}, recall {rc} ({v['true_positives']} of "
                 f"{v['traps_in_set']} traps in the set, {v['flagged']} flagged)\n")
    return head + "\n\n" + "\n".join(lines) + "\n" + extra
