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

import logging
from collections import Counter
from pathlib import Path
from typing import Any

from hardneg.errors import HardnegError
from hardneg.io import write_json, write_jsonl
from hardneg.markdown import md_table
from hardneg.mining.audit_checks import REASONS, SUSPECT_P, audit_rows
from hardneg.mining.fix import refill_rows, write_fixed
from hardneg.mining.formats import FORMATS, MinedInput, read_mined_any

__all__ = ["FORMATS", "REASONS", "SUSPECT_P", "audit_rows", "audit_table", "read_mined_any", "run_audit"]

log = logging.getLogger("hardneg")


def _near_copy_vs_manifest(inp: MinedInput, lines: list[dict], manifest) -> dict:
    """Precision and recall of ``near_copy`` against the injected traps of each row's query."""
    traps = {(q, d) for q, ds in manifest.by_qid.items() for d in ds}
    flagged = {(x["row"], x["slot"]) for x in lines if "near_copy" in x["reasons"]}
    truth = {(ri, j) for ri, r in enumerate(inp.rows) for j, d in enumerate(r.neg) if (r.qid, d.docid) in traps}
    tp = len(flagged & truth)
    return {"traps_in_set": len(truth), "flagged": len(flagged), "true_positives": tp,
            "precision": None if not flagged else tp / len(flagged), "recall": None if not truth else tp / len(truth)}


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
        res["fix"] = write_fixed(inp, info, dataset, Path(fix), refill_rows(inp, info, dataset, pool, tau))
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
