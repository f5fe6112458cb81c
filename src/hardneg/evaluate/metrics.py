"""BEIR-exact retrieval metrics, TREC run files and paired significance tests (pure: no models, no search).

Semantics, checked against BEIR (``beir/retrieval/evaluation.py``, ``custom_metrics.py``) and trec_eval
(``form_res_rels.c``, ``m_ndcg_cut.c``) as bundled in pytrec-eval-terrier:

- nDCG@k and Recall@k come from ``pytrec_eval`` (``ndcg_cut.k``, ``recall.k``), as in BEIR.
- trec_eval ranks a query's docs by score descending and breaks ties by docid *descending* (``strcmp``
  byte order, so "9" ranks above "10"). Dict order never matters to it.
- trec_eval's nDCG gain is the relevance value itself (linear: rel 2 -> gain 2, not 2^2-1 = 3) with
  discount log2(rank + 1). Rel 0 and negative rels give gain 0 and never count as relevant; Recall counts
  rel >= 1 in its denominator.
- MRR@k is BEIR's ``mrr``: reciprocal rank of the first doc with rel > 0 among the top k. BEIR takes the
  top k with a stable sort on score alone, so its ties follow dict insertion order (arbitrary heap order
  in BEIR's own search). Here ties follow trec_eval's rule instead, so MRR and nDCG see one ranking and
  MRR does not depend on how the run dict was built or read back.
- The query set is every qrels query. pytrec_eval silently skips qrels queries missing from the run (and
  queries whose qrels are empty); each such query scores 0 here and counts in the mean. A query with no
  rel > 0 doc scores 0 on every metric (what trec_eval gives) without being sent to pytrec_eval, whose
  C code reads out of bounds when every judgement of a query is negative. Run queries absent from qrels
  are ignored. Means are plain means, not rounded (BEIR rounds to 5 places).
- Judged@k is ir_measures' ``Judged@k``: the number of the top k retrieved docs that have any judgement for the
  query (any grade, 0 and negative included) divided by k, or by the number retrieved when fewer than k came
  back (ir_measures' ``judged_provider``; only a tiny corpus retrieves fewer than 10). It is computed for every
  qrels query (one with only rel <= 0 judgements too; one missing from the run scores 0 and counts in the mean,
  where ir_measures would skip it), on the same trec_eval ranking as MRR (ir_measures breaks score ties by docid
  ascending instead, which can only matter for a doc tied at rank k).
"""
from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytrec_eval

from hardneg.errors import HardnegError
from hardneg.io import atomic_path

Run = dict[str, dict[str, float]]
Qrels = dict[str, dict[str, int]]

_CHUNK_ELEMS = 4_000_000  # resample matrix elements per block: bounds memory for large query sets


# ----------------------------------------------------------------------------------------------- runs
def build_run(qids: Sequence[str], docids: Sequence[str], scores: np.ndarray, idx: np.ndarray, *,
              ignore_identical_ids: bool = False) -> Run:
    """Turn a search result (``scores``/``idx`` [q, k], idx -1 = padding) into ``{qid: {docid: score}}``."""
    scores = np.asarray(scores)
    idx = np.asarray(idx)
    if scores.ndim != 2 or idx.shape != scores.shape:
        raise HardnegError(f"search result shapes differ or are not 2-D: scores {scores.shape}, idx {idx.shape}",
                           fix="pass scores and idx exactly as returned by the search")
    if scores.shape[0] != len(qids):
        raise HardnegError(f"{len(qids)} query ids for {scores.shape[0]} result rows",
                           fix="pass the query ids in the order the queries were searched")
    if idx.size and (idx.min() < -1 or idx.max() >= len(docids)):
        raise HardnegError(f"result rows point outside the corpus of {len(docids)} docs",
                           fix="pass the doc ids of the corpus that was searched")
    if len(set(qids)) != len(qids):
        raise HardnegError("duplicate query ids in the search input", fix="deduplicate the queries before searching")
    valid = idx >= 0
    if np.isnan(scores[valid]).any():
        raise HardnegError("the search returned NaN scores", fix="check the embeddings for NaN (e.g. a broken model)")
    run: Run = {}
    for qid, srow, irow in zip(qids, scores.tolist(), idx.tolist()):  # tolist: exact Python floats, fast
        docs: dict[str, float] = {}
        for s, i in zip(srow, irow):
            if i < 0:
                continue
            d = docids[i]
            if ignore_identical_ids and d == qid:  # BEIR: a doc never counts as its own answer
                continue
            if d in docs:
                raise HardnegError(f"doc id {d!r} appears twice in the results of query {qid!r}",
                                   fix="make corpus doc ids unique")
            docs[d] = float(s)
        run[qid] = docs
    return run


def _rank_key(item: tuple[str, float]) -> tuple[float, str]:
    return item[1], item[0]


def ranked(doc_scores: Mapping[str, float], k: int | None = None) -> list[tuple[str, float]]:
    """Docs in trec_eval order (score desc, then docid desc), optionally only the top ``k``."""
    if k is None or k >= len(doc_scores):
        return sorted(doc_scores.items(), key=_rank_key, reverse=True)
    return heapq.nlargest(k, doc_scores.items(), key=_rank_key)  # keys are unique: same order as sorted


# -------------------------------------------------------------------------------------------- metrics
def _check_ks(name: str, ks: Iterable[int]) -> list[int]:
    given = list(ks)
    if any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in given):
        raise HardnegError(f"{name} must be positive integers, got {given}", fix=f"e.g. {name}=(10,)")
    return sorted(set(given))


def _clean_qrels(qrels: Mapping[str, Mapping[str, Any]]) -> Qrels:
    out: Qrels = {}
    for q, docs in qrels.items():
        row: dict[str, int] = {}
        for d, r in docs.items():
            if isinstance(r, bool) or not isinstance(r, (int, np.integer)):
                if isinstance(r, (float, np.floating)) and float(r).is_integer():
                    r = int(r)
                else:
                    raise HardnegError(f"qrels relevance for ({q!r}, {d!r}) is {r!r}, not an integer",
                                       fix="qrels scores must be integers (BEIR qrels/*.tsv score column)")
            row[str(d)] = int(r)
        out[str(q)] = row
    return out


def compute_metrics(qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]], *,
                    ndcg_at: Iterable[int] = (10,), recall_at: Iterable[int] = (100,),
                    mrr_at: Iterable[int] = (10,), judged_at: Iterable[int] = ()
                    ) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Return (aggregate, per_query) for every qrels query; aggregate also holds ``n_queries``."""
    nd, rc, mr = _check_ks("ndcg_at", ndcg_at), _check_ks("recall_at", recall_at), _check_ks("mrr_at", mrr_at)
    jd = _check_ks("judged_at", judged_at)
    names = ([f"ndcg@{k}" for k in nd] + [f"recall@{k}" for k in rc] + [f"mrr@{k}" for k in mr]
             + [f"judged@{k}" for k in jd])
    qr = _clean_qrels(qrels)
    if not qr:
        raise HardnegError("no queries to evaluate: the qrels are empty", fix="load the qrels of the split")

    # Only queries with a relevant doc go to pytrec_eval; everything else is 0 by definition.
    scorable = sorted(q for q, docs in qr.items() if any(r > 0 for r in docs.values()))
    sub_run: Run = {}
    for q in scorable:
        docs = run.get(q)
        if not docs:
            continue
        row = {str(d): float(s) for d, s in docs.items()}  # pytrec_eval rejects numpy scalars
        if any(math.isnan(s) for s in row.values()):
            raise HardnegError(f"the run has a NaN score for query {q!r}", fix="check the embeddings for NaN")
        sub_run[q] = row

    per_query: dict[str, dict[str, float]] = {q: dict.fromkeys(names, 0.0) for q in sorted(qr)}
    measures = set()
    if nd:
        measures.add("ndcg_cut." + ",".join(map(str, nd)))
    if rc:
        measures.add("recall." + ",".join(map(str, rc)))
    if measures and sub_run:
        evaluator = pytrec_eval.RelevanceEvaluator({q: qr[q] for q in sub_run}, measures)
        for q, vals in evaluator.evaluate(sub_run).items():
            pq = per_query[q]
            for k in nd:
                pq[f"ndcg@{k}"] = float(vals[f"ndcg_cut_{k}"])
            for k in rc:
                pq[f"recall@{k}"] = float(vals[f"recall_{k}"])
    if mr:
        kmax = max(mr)
        for q, docs in sub_run.items():
            relevant = {d for d, r in qr[q].items() if r > 0}
            first = next((i for i, (d, _) in enumerate(ranked(docs, kmax), 1) if d in relevant), None)
            if first is not None:
                for k in mr:
                    per_query[q][f"mrr@{k}"] = 1.0 / first if first <= k else 0.0
    if jd:
        kmax = max(jd)
        for q, judged in qr.items():
            docs = run.get(q)
            if not docs:
                continue
            top = [d in judged for d, _ in ranked({str(d): float(s) for d, s in docs.items()}, kmax)]
            for k in jd:
                per_query[q][f"judged@{k}"] = sum(top[:k]) / min(k, len(top))  # ir_measures: / retrieved if < k

    n = len(per_query)
    aggregate: dict[str, float] = {m: math.fsum(pq[m] for pq in per_query.values()) / n for m in names}
    aggregate["n_queries"] = n
    return aggregate, per_query


# ------------------------------------------------------------------------------------------ TREC runs
def _check_token(kind: str, value: str) -> None:
    if not value or any(c.isspace() for c in value):
        raise HardnegError(f"{kind} {value!r} is empty or contains whitespace, which TREC run files cannot hold",
                           fix=f"use {kind}s without spaces")


def write_trec_run(path: str | Path, run: Mapping[str, Mapping[str, float]], tag: str = "hardneg") -> None:
    """Write ``qid Q0 docid rank score tag`` lines: queries sorted, docs in trec_eval order; byte-stable."""
    _check_token("run tag", tag)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        for q in sorted(run):
            _check_token("query id", q)
            lines = []
            for rank, (d, s) in enumerate(ranked(run[q]), 1):
                _check_token("doc id", d)
                s = float(s)
                if math.isnan(s):
                    raise HardnegError(f"NaN score for ({q!r}, {d!r})", fix="check the embeddings for NaN")
                lines.append(f"{q} Q0 {d} {rank} {s!r} {tag}\n")  # repr: shortest exact round trip
            fh.writelines(lines)


def read_trec_run(path: str | Path) -> Run:
    """Read a TREC run file (``qid Q0 docid rank score tag``) into ``{qid: {docid: score}}``."""
    p = Path(path)
    fix = "each line must be `qid Q0 docid rank score tag` (6 whitespace-separated fields)"
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HardnegError("run file not found", where=p, fix="check the path") from None
    except UnicodeDecodeError:
        raise HardnegError("run file is not UTF-8 text", where=p, fix=fix) from None
    except OSError as exc:
        raise HardnegError(f"cannot read the run file ({exc.strerror})", where=p, fix="check the path") from None
    run: Run = {}
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue  # blank lines carry nothing
        if len(parts) != 6:
            raise HardnegError(f"expected 6 fields, found {len(parts)}", where=p, line=n, fix=fix)
        q, _, d, rank, score, _ = parts
        try:
            int(rank)
        except ValueError:
            raise HardnegError(f"rank {rank!r} is not an integer", where=p, line=n, fix=fix) from None
        try:
            s = float(score)
        except ValueError:
            raise HardnegError(f"score {score!r} is not a number", where=p, line=n, fix=fix) from None
        if math.isnan(s):
            raise HardnegError("score is NaN", where=p, line=n, fix="write finite scores")
        docs = run.setdefault(q, {})
        if d in docs:  # trec_eval refuses duplicates too
            raise HardnegError(f"doc {d!r} listed twice for query {q!r}", where=p, line=n,
                               fix="keep one line per (query, doc)")
        docs[d] = s
    return run


# --------------------------------------------------------------------------------- significance tests
def _sign_flip_null(d: np.ndarray, n_resamples: int, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """Mean differences under random sign flips; all 2^n of them when that is no more than n_resamples."""
    n = d.shape[0]
    if n <= 16 and 2 ** n <= n_resamples:  # exact: enumerate every sign pattern (at most 65,536)
        bits = (np.arange(2 ** n)[:, None] >> np.arange(n)[None, :]) & 1
        return ((1 - 2 * bits) * d).mean(axis=1), True
    out = np.empty(n_resamples)
    step = max(1, _CHUNK_ELEMS // n)
    for lo in range(0, n_resamples, step):
        m = min(step, n_resamples - lo)
        signs = 1 - 2 * rng.integers(0, 2, size=(m, n), dtype=np.int8)
        out[lo:lo + m] = (signs * d).mean(axis=1)
    return out, False


def _bootstrap_means(d: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Means of ``n_resamples`` resamples of ``d`` with replacement."""
    n = d.shape[0]
    out = np.empty(n_resamples)
    step = max(1, _CHUNK_ELEMS // n)
    for lo in range(0, n_resamples, step):
        m = min(step, n_resamples - lo)
        out[lo:lo + m] = d[rng.integers(0, n, size=(m, n))].mean(axis=1)
    return out


def paired_test(a: Mapping[str, float], b: Mapping[str, float], *, n_resamples: int = 10000, seed: int = 0,
                method: Literal["randomization", "bootstrap"] = "randomization") -> dict[str, Any]:
    """Two-sided paired test of per-query scores ``b`` vs ``a`` (diff = b - a) with a 95% bootstrap CI."""
    if method not in ("randomization", "bootstrap"):
        raise HardnegError(f"unknown test method {method!r}", fix="use 'randomization' or 'bootstrap'")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or n_resamples < 1:
        raise HardnegError(f"n_resamples must be a positive integer, got {n_resamples!r}", fix="e.g. 10000")
    if set(a) != set(b):
        only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        raise HardnegError(f"the two runs cover different queries ({len(only_a)} only in the first, e.g. "
                           f"{only_a[:3]}; {len(only_b)} only in the second, e.g. {only_b[:3]})",
                           fix="compare per-query metrics computed on the same qrels")
    if not a:
        raise HardnegError("no queries to compare", fix="pass per-query metrics of at least one query")
    qs = sorted(a)  # fixed order: the result depends on the seed only, not on dict order
    va = np.array([float(a[q]) for q in qs])
    vb = np.array([float(b[q]) for q in qs])
    if not (np.isfinite(va).all() and np.isfinite(vb).all()):
        raise HardnegError("per-query scores must be finite numbers", fix="check the metric values")
    d = vb - va
    obs = float(d.mean())
    # Independent streams for the test and the CI, both fixed by the seed.
    rng_test, rng_ci = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    tol = 1e-12 * max(1.0, abs(obs))  # resampled means are summed in another order; equal must count as equal
    boot = _bootstrap_means(d, n_resamples, rng_ci)
    exact = False
    if method == "randomization":
        null, exact = _sign_flip_null(d, n_resamples, rng_test)
        hits = int((np.abs(null) >= abs(obs) - tol).sum())
        # Exact enumeration includes the observed pattern; Monte Carlo adds it (+1) so p is never 0.
        p = hits / null.shape[0] if exact else (hits + 1) / (n_resamples + 1)
    else:
        # Bootstrap test of H0 "mean diff = 0": the resampled means shifted to the null (Efron & Tibshirani).
        hits = int((np.abs(boot - obs) >= abs(obs) - tol).sum())
        p = (hits + 1) / (n_resamples + 1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {
        "method": method,
        "n_queries": len(qs),
        "mean_a": float(va.mean()),
        "mean_b": float(vb.mean()),
        "mean_diff": obs,
        "p_value": min(1.0, float(p)),
        "ci_low": float(lo),
        "ci_high": float(hi),
        "ci_level": 0.95,
        "n_resamples": n_resamples,
        "exact": exact,
        "seed": seed,
    }
