"""Evaluate a model on a BEIR split: encode (cached), exact search over the whole corpus, BEIR-exact metrics."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from hardneg.data.load import descriptor_of
from hardneg.encode.backend import release_workers
from hardneg.encode.cache import encode_cached
from hardneg.encode.encoder import EncoderSpec, encoder_precision, load_encoder
from hardneg.evaluate.metrics import build_run, compute_metrics, write_trec_run
from hardneg.errors import HardnegError
from hardneg.io import atomic_path, write_json
from hardneg.search.depth import depth_problem
from hardneg.search.exact import exact_search
from hardneg.search.spec import SearchSpec
from hardneg.types import Dataset


@dataclass(frozen=True)
class EvalResult:
    metrics: dict[str, float]
    per_query: dict[str, dict[str, float]]
    run: dict[str, dict[str, float]]
    seconds: dict[str, float]
    precision: str = "fp32"  # the compute precision the encoder resolved (recorded in metrics.json)


def evaluate_model(spec: EncoderSpec | str, dataset: Dataset, *, cache_dir: Path | None, depth: int = 1000,
                   ignore_identical_ids: bool | None = None, progress: bool = True,
                   search: SearchSpec | None = None) -> EvalResult:
    """BEIR-exact nDCG@10, Recall@100 and MRR@10 (plus nDCG@1/5/100, Recall@10/1000) and Judged@10 (the share of
    the top 10 that has a judgement, ir_measures' definition) of ``spec`` on ``dataset``. ``search``: the backend
    (default exact; BEIR's numbers assume exact)."""
    spec = EncoderSpec(model=spec) if isinstance(spec, str) else spec
    problem = depth_problem(depth)
    if problem is not None:  # checked before any encoding; a depth beyond the corpus is clamped by the search
        raise HardnegError(problem, where="evaluate depth", fix="use e.g. depth 1000 (BEIR's)")
    if ignore_identical_ids is None:
        ignore_identical_ids = descriptor_of(dataset).ignore_identical_ids
    t = {}
    t0 = time.perf_counter()
    encoder = load_encoder(spec, cache_dir)
    q_emb = encode_cached(encoder, dataset.queries.ids, dataset.queries.texts, "query", cache_dir, progress=progress)
    d_emb = encode_cached(encoder, dataset.corpus.ids, dataset.corpus.encoding_texts, "doc", cache_dir,
                          progress=progress)
    release_workers(encoder)  # an encoder's Ray actors free their CPUs for the search
    t["encode"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    # One extra hit per query so that dropping an identical id still leaves `depth` results.
    k = depth + int(ignore_identical_ids)
    if search is None or search.identity() is None:
        scores, idx = exact_search(q_emb, d_emb, k, progress=progress)
    else:
        scores, idx = search.search_fn(progress=progress)(q_emb, d_emb, k)
    run = build_run(dataset.queries.ids, dataset.corpus.ids, scores, idx, ignore_identical_ids=ignore_identical_ids)
    if ignore_identical_ids:
        run = {q: dict(list(docs.items())[:depth]) for q, docs in run.items()}
    t["search"] = round(time.perf_counter() - t0, 3)
    metrics, per_query = compute_metrics(dataset.qrels, run, ndcg_at=(1, 5, 10, 100), recall_at=(10, 100, 1000),
                                         mrr_at=(10,), judged_at=(10,))
    return EvalResult(metrics, per_query, run, t, encoder_precision(encoder))


def write_eval(result: EvalResult, folder: Path, info: dict) -> None:
    """``metrics.json`` (with ``info``), ``per_query.json`` and ``run.trec``, all in one atomic folder."""
    with atomic_path(folder, is_dir=True) as tmp:
        write_json(tmp / "metrics.json", {**info, "precision": result.precision, "metrics": result.metrics})
        write_json(tmp / "per_query.json", result.per_query)
        write_trec_run(tmp / "run.trec", result.run)
