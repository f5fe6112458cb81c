"""A cross-encoder (reranker) teacher: rescore a first-stage candidate pool with a pair scorer and re-rank it.

The paper notes its positive-aware filters work with any teacher that yields scored top-k candidates,
rerankers included. A reranker cannot search a corpus, so it rescores the first-stage pool: every candidate and
every positive (positives are scored directly, as always). The re-ranked pool keeps the first stage's
candidate set; only scores and order change.

Reranker scores live on their own scale (logits, or sigmoid probabilities in [0, 1]): ``abs(t)`` thresholds
and ``marginpos(m)`` margins must be swept on that scale; ``percpos(p)`` is scale-relative but assumes
scores where "p times the positive" is meaningful (positive-valued; the sign-safe form handles negatives).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
from tqdm.auto import tqdm

from hardneg.errors import HardnegError
from hardneg.mining.fusion import sort_candidates, ranks_with_positives
from hardneg.types import CandidatePool, Dataset

# (query text, doc text) pairs -> float scores [n]; higher = more relevant.
PairTextScorer = Callable[[list[tuple[str, str]]], np.ndarray]


class CrossEncoderScorer:
    """``scorer(pairs) -> np.ndarray``: a sentence-transformers ``CrossEncoder``'s ``predict``, loaded lazily."""

    def __init__(self, model_name_or_path: str, *, activation: Literal["sigmoid", "none"] = "sigmoid",
                 max_length: int | None = None, batch_size: int = 32, device: str | None = None,
                 trust_remote_code: bool = False) -> None:
        if activation not in ("sigmoid", "none"):
            raise HardnegError(f"reranker activation must be sigmoid or none, got {activation!r}",
                               fix="use activation='sigmoid' (scores in [0, 1]) or 'none' (raw logits)")
        self.name = str(model_name_or_path)
        self.activation = activation
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = device
        self.trust_remote_code = trust_remote_code
        self._model = None

    def _load(self):
        if self._model is None:
            try:
                from sentence_transformers import CrossEncoder
            except ImportError as exc:  # pragma: no cover - a dependency of the project
                raise HardnegError("sentence-transformers is needed for a cross-encoder teacher",
                                   fix="pip install sentence-transformers") from exc
            try:
                self._model = CrossEncoder(self.name, max_length=self.max_length, device=self.device,
                                           trust_remote_code=self.trust_remote_code)
            except Exception as exc:  # ST raises OSError, ValueError, HF errors...: all mean "cannot load"
                first = str(exc).splitlines()[0] if str(exc) else ""
                raise HardnegError(f"cannot load the reranker {self.name!r} ({type(exc).__name__}: {first})",
                                   fix="pass a local cross-encoder folder, or a hub id with internet access") \
                    from exc
        return self._model

    def __call__(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        import torch

        model = self._load()
        act = torch.nn.Sigmoid() if self.activation == "sigmoid" else torch.nn.Identity()
        out = model.predict([list(p) for p in pairs], batch_size=self.batch_size, show_progress_bar=False,
                            activation_fn=act, convert_to_numpy=True)
        out = np.asarray(out, dtype=np.float32)
        if out.ndim == 2 and out.shape[1] == 1:
            out = out[:, 0]
        if out.ndim != 1:
            raise HardnegError(f"reranker {self.name!r} returns {out.shape[-1]} scores per pair",
                               fix="use a relevance cross-encoder with one output (num_labels=1)")
        return out


def cross_encoder_scorer(model_name_or_path: str, activation: Literal["sigmoid", "none"] = "sigmoid",
                         max_length: int | None = None, *, batch_size: int = 32, device: str | None = None,
                         trust_remote_code: bool = False) -> CrossEncoderScorer:
    """A pair scorer around ``sentence_transformers.CrossEncoder`` (imported and loaded on first call)."""
    return CrossEncoderScorer(model_name_or_path, activation=activation, max_length=max_length,
                              batch_size=batch_size, device=device, trust_remote_code=trust_remote_code)


def _score_all(scorer: PairTextScorer, pairs: Sequence[tuple[str, str]], batch_size: int,
               progress: bool) -> np.ndarray:
    out = np.empty(len(pairs), dtype=np.float32)
    name = getattr(scorer, "name", "reranker")
    for lo in tqdm(range(0, len(pairs), batch_size), desc="rerank", unit="batch", disable=not progress):
        chunk = list(pairs[lo:lo + batch_size])
        s = np.asarray(scorer(chunk), dtype=np.float32).reshape(-1)
        if s.shape[0] != len(chunk):
            raise HardnegError(f"reranker {name!r} returned {s.shape[0]} scores for {len(chunk)} pairs",
                               fix="the scorer must return one score per (query, doc) pair")
        out[lo:lo + len(chunk)] = s
    if not np.all(np.isfinite(out)):
        raise HardnegError(f"reranker {name!r} returned a NaN or infinite score", fix="check the reranker")
    return out


def rerank_pool(pool: CandidatePool, dataset: Dataset, scorer: PairTextScorer, *, batch_size: int = 32,
                progress: bool = True, name: str | None = None) -> CandidatePool:
    """Rescore every candidate and positive of ``pool`` with ``scorer`` and re-rank (score desc, row asc).

    Texts: the query text and the doc's ``title + " " + text``. ``cand_rank`` becomes the rank among
    (candidates + positives) under the new scores. Teacher name: ``name`` or ``<scorer name>@<first stage>``.
    """
    if batch_size < 1:
        raise HardnegError(f"batch_size must be >= 1, got {batch_size}", fix="use e.g. batch_size=32")
    qtext = dataset.queries.texts
    qrow = dataset.queries.row
    try:
        q_rows = np.asarray([qrow[q] for q in pool.qids], dtype=np.int64)
    except KeyError as exc:
        raise HardnegError(f"the pool has query {exc.args[0]!r} that the dataset lacks",
                           fix="rerank a pool built from this dataset") from None
    if pool.meta.get("corpus") not in (None, dataset.corpus.fingerprint):
        raise HardnegError("the pool was built over another corpus", fix="rerank a pool built from this dataset")
    dtext = dataset.corpus.encoding_texts
    valid = pool.cand_idx >= 0  # [Q, D]
    qq, cc = np.nonzero(valid)
    pos_q = np.repeat(np.arange(len(pool)), np.diff(pool.pos_ptr))
    pairs = [(qtext[q_rows[i]], dtext[d]) for i, d in zip(qq.tolist(), pool.cand_idx[qq, cc].tolist())]
    pairs += [(qtext[q_rows[i]], dtext[d]) for i, d in zip(pos_q.tolist(), pool.pos_idx.tolist())]
    scores = _score_all(scorer, pairs, batch_size, progress)
    n_c = qq.shape[0]
    new = np.full(pool.cand_score.shape, np.nan, dtype=np.float32)
    new[qq, cc] = scores[:n_c]
    pos_score = scores[n_c:].astype(np.float32)
    cand_idx, cand_score = sort_candidates(pool.cand_idx.astype(np.int64), new, pool.depth)
    cand_rank = ranks_with_positives(cand_idx, cand_score, pool.pos_ptr, pool.pos_idx, pos_score)
    scorer_name = getattr(scorer, "name", "reranker")
    out = CandidatePool(teacher=name or f"{scorer_name}@{pool.teacher}", qids=pool.qids, cand_idx=cand_idx,
                        cand_score=cand_score, cand_rank=cand_rank, pos_ptr=pool.pos_ptr, pos_idx=pool.pos_idx,
                        pos_score=pos_score,
                        meta={**pool.meta, "rerank": {"scorer": scorer_name, "first_stage": pool.teacher,
                                                      "first_stage_depth": pool.depth}})
    out.validate()
    return out
