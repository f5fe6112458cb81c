"""``mine_hard_negatives``: sentence-transformers' function of that name, on hardneg's pools and strategies.

A drop-in for ``sentence_transformers.util.mine_hard_negatives``: a ``datasets.Dataset`` of (anchor, positive)
rows in, a ``Dataset`` out in the same output formats and columns, with the parameter names ST uses. Underneath,
the candidates come from one cached hardneg pool (exact search, stable ties) and the margins are hardneg filters
with ST's semantics (``docs/st-compat.md`` has the parameter table):

- ``absolute_margin=m`` -> ``marginpos(m)``, ``relative_margin=r`` -> ``percpos(1-r)``, ``max_score=t`` ->
  ``abs(t)``, all against the query's lowest positive score (ST's rule; hardneg's ``ref=min``);
- ST's candidate window, the top ``range_max + max_positives`` documents of the raw ranking, is a cut on the
  pool's raw rank; ``range_min`` skips survivors (after the filters) as ST does;
- ``sampling_strategy="random"`` draws uniformly from survivors ``range_min .. range_max``, seeded by ``seed``
  and the anchor text (ST draws from Python's global ``random``: its draws differ, their distribution does not).

Deliberate differences: identical anchor texts are one query, as in ST, but the merge is logged rather than
silent; identical texts are one document (as in ST) with a content id; ``min_score``, ``cross_encoder``,
``include_positives`` and multi-process options are refused with a one-line error instead of being emulated.
"""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from hardneg.errors import HardnegError
from hardneg.types import CandidatePool, Corpus, DataSource, Dataset, Queries

log = logging.getLogger("hardneg")

OutputFormat = Literal["triplet", "n-tuple", "labeled-pair", "labeled-list"]
FORMATS = ("triplet", "n-tuple", "labeled-pair", "labeled-list")
UNSUPPORTED = ("cross_encoder", "min_score", "include_positives", "use_multi_process", "use_faiss")


def st_strategy(*, num_negatives: int, range_min: int = 0, absolute_margin: float | None = None,
                relative_margin: float | None = None, max_score: float | None = None) -> str:
    """The hardneg strategy string of ST's margin parameters, selecting the first ``range_min + n`` survivors
    (the compat layer then drops the first ``range_min``, as ST's ``range_min`` does)."""
    parts = []
    if absolute_margin is not None:
        parts.append(f"marginpos({absolute_margin!r})")
    if relative_margin is not None:
        parts.append(f"percpos({1.0 - relative_margin!r})")
    if max_score is not None:
        parts.append(f"abs({max_score!r})")
    return "+".join(parts + [f"topk({range_min + num_negatives})"])


def st_range_max(range_min: int, num_negatives: int, max_positives: int, filtered: bool) -> int:
    """ST's default ``range_max``: 10 x more candidates when a margin or max_score filters them."""
    return range_min + num_negatives * (10 if filtered else 1) + max_positives


def window_pool(pool: CandidatePool, raw_window: int) -> CandidatePool:
    """The pool restricted to candidates of raw rank <= ``raw_window`` (ST's top-k over positives and all)."""
    keep = pool.cand_rank <= raw_window  # [Q, D]
    return CandidatePool(teacher=pool.teacher, qids=pool.qids, cand_idx=np.where(keep, pool.cand_idx, -1),
                         cand_score=np.where(keep, pool.cand_score, np.nan).astype(np.float32),
                         cand_rank=np.where(keep, pool.cand_rank, -1), pos_ptr=pool.pos_ptr, pos_idx=pool.pos_idx,
                         pos_score=pool.pos_score, meta=pool.meta)


def text_id(text: str) -> str:
    return "t" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:20]


def pairs_dataset(anchors: Sequence[str], positives: Sequence[str], corpus: Sequence[str] | None) -> Dataset:
    """One query per distinct anchor text (every positive of its rows is a positive), one document per distinct
    text of ``corpus`` + positives (ST's corpus rule)."""
    texts = list(dict.fromkeys([*(corpus if corpus is not None else positives), *positives]))
    ids = tuple(text_id(t) for t in texts)
    qtexts = list(dict.fromkeys(anchors))
    if len(qtexts) != len(anchors):
        log.info("%d anchor texts occur on several rows: each is one query whose positives are all of its rows' "
                 "positives (as sentence-transformers does)", len(anchors) - len(qtexts))
    qids = tuple(f"q{i}" for i in range(len(qtexts)))
    qid_of = dict(zip(qtexts, qids))
    qrels: dict[str, dict[str, int]] = {}
    for a, p in zip(anchors, positives):
        qrels.setdefault(qid_of[a], {})[text_id(p)] = 1
    return Dataset(name="pairs", split="train", corpus=Corpus(ids, ("",) * len(ids), tuple(texts)),
                   queries=Queries(qids, tuple(qtexts)), qrels=qrels, source=DataSource("memory", "datasets.Dataset"))


def _columns(dataset: Any, anchor: str | None, positive: str | None) -> tuple[str, str]:
    cols = list(dataset.column_names)
    a = anchor if anchor in cols else cols[0]
    if positive in cols:
        return a, positive
    if len(cols) < 2:
        raise HardnegError(f"the dataset has one column ({cols[0]}); it needs an anchor and a positive column",
                           where="mine_hard_negatives", fix="pass a Dataset of (anchor, positive) rows")
    return a, cols[1]


def _check(num_negatives: int, range_min: int, range_max: int, output_format: str,
           sampling_strategy: str) -> None:
    problems = []
    if isinstance(num_negatives, bool) or not isinstance(num_negatives, int) or num_negatives < 1:
        problems.append(f"num_negatives must be an integer >= 1, got {num_negatives!r}")
    if range_min < 0 or range_min >= range_max:
        problems.append(f"need 0 <= range_min < range_max, got {range_min} and {range_max}")
    elif isinstance(num_negatives, int) and num_negatives > range_max - range_min:
        problems.append(f"cannot mine {num_negatives} negatives from range {range_min}..{range_max}")
    if output_format not in FORMATS:
        problems.append(f"output_format must be one of {', '.join(FORMATS)}, got {output_format!r}")
    if sampling_strategy not in ("top", "random"):
        problems.append(f'sampling_strategy must be "top" or "random", got {sampling_strategy!r}')
    if problems:
        raise HardnegError("; ".join(problems), where="mine_hard_negatives", fix="correct the arguments")


def _pick(cols: np.ndarray, n: int, range_min: int, strategy: str, seed: int, key: str) -> np.ndarray:
    """Columns chosen from one row's survivors ``cols`` (rank order, -1 pads): [<= n]."""
    live = cols[cols >= 0][range_min:]
    if strategy == "top" or len(live) <= n:
        return live[:n]
    digest = hashlib.sha256(f"{seed}\x1f{key}".encode("utf-8", "surrogatepass")).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    return np.sort(rng.choice(live, size=n, replace=False))  # sorted columns = score order, like ST's sort


def mine_hard_negatives(dataset: Any, model: Any, anchor_column_name: str | None = None,
                        positive_column_name: str | None = None, corpus: Sequence[str] | None = None,
                        range_min: int = 0, range_max: int | None = None, max_score: float | None = None,
                        absolute_margin: float | None = None, relative_margin: float | None = None,
                        num_negatives: int = 3, sampling_strategy: Literal["random", "top"] = "top",
                        query_prompt: str | None = None, corpus_prompt: str | None = None,
                        output_format: OutputFormat = "triplet", output_scores: bool = False,
                        batch_size: int = 32, cache_folder: str | Path | None = None, seed: int = 0,
                        verbose: bool = True, **unsupported: Any) -> Any:
    """sentence-transformers' ``mine_hard_negatives`` on hardneg (see the module docstring).

    ``model``: a hardneg alias (``minilm``), a model folder, a hub id, or a loaded ``SentenceTransformer`` (its
    embeddings are then not cached). ``cache_folder``: hardneg's cache (embeddings and the pool); None encodes
    afresh. ``seed``: the ``random`` sampling strategy's seed.
    """
    import datasets

    given = sorted(k for k, v in unsupported.items() if v not in (None, False))
    if given or any(k not in UNSUPPORTED for k in unsupported):
        names = ", ".join(given or sorted(unsupported))
        raise HardnegError(f"unsupported argument(s): {names}", where="mine_hard_negatives",
                           fix="drop them (see docs/st-compat.md), or use sentence-transformers' own function")
    a_col, p_col = _columns(dataset, anchor_column_name, positive_column_name)
    anchors, positives = list(dataset[a_col]), list(dataset[p_col])
    ds = pairs_dataset(anchors, positives, corpus)
    max_pos = max(len(v) for v in ds.qrels.values())
    filtered = any(x is not None for x in (absolute_margin, relative_margin, max_score))
    if range_max is None:
        range_max = st_range_max(range_min, num_negatives, max_pos, filtered)
    _check(num_negatives, range_min, range_max, output_format, sampling_strategy)
    pool = window_pool(_pool(ds, model, range_max + max_pos, query_prompt, corpus_prompt, batch_size, cache_folder,
                             verbose), range_max + max_pos)
    from hardneg.mining.select import apply_strategy
    from hardneg.mining.strategy import parse_strategy

    take = range_max if sampling_strategy == "random" else range_min + num_negatives
    strategy = parse_strategy(st_strategy(num_negatives=take - range_min, range_min=range_min,
                                          absolute_margin=absolute_margin, relative_margin=relative_margin,
                                          max_score=max_score))
    mined = apply_strategy(pool, strategy, seed=seed)
    rows = []  # (query row, positive row in pool arrays, chosen candidate columns)
    chosen_by_q: dict[int, np.ndarray] = {}
    for r in range(len(mined)):
        q = int(mined.row_q[r])
        if q not in chosen_by_q:  # ref=min: every positive row of a query has the same survivors
            chosen_by_q[q] = _pick(mined.neg_col[r], num_negatives, range_min, sampling_strategy, seed,
                                   ds.queries.texts[ds.queries.row[pool.qids[q]]])
        rows.append((q, int(mined.row_pos[r]), chosen_by_q[q]))
    data = _format(rows, pool, ds, a_col, p_col, num_negatives, output_format, output_scores)
    if verbose:
        short = sum(len(c) < num_negatives for c in chosen_by_q.values())
        log.info("mined %s: %d of %d queries have fewer than %d negatives", strategy, short, len(chosen_by_q),
                 num_negatives)
    return datasets.Dataset.from_dict(data)


def _pool(ds: Dataset, model: Any, depth: int, query_prompt: str | None, corpus_prompt: str | None,
          batch_size: int, cache_folder: str | Path | None, progress: bool) -> CandidatePool:
    from hardneg.mining.candidates import build_pool

    if isinstance(model, (str, Path)):
        from hardneg.mining.pipeline import get_pool
        from hardneg.mining.teachers import make_teacher

        teacher = make_teacher(str(model), query_prompt=query_prompt or "", doc_prompt=corpus_prompt or "",
                               batch_size=batch_size)
        return get_pool(teacher, ds, depth, Path(cache_folder) if cache_folder else None, progress=progress)
    if not hasattr(model, "encode"):
        raise HardnegError(f"model is a {type(model).__name__}", where="mine_hard_negatives",
                           fix="pass a SentenceTransformer, a model folder, a hub id or an alias such as minilm")
    enc = dict(batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=progress)
    q_emb = model.encode(list(ds.queries.texts), prompt=query_prompt, **enc)
    d_emb = model.encode(list(ds.corpus.texts), prompt=corpus_prompt, **enc)
    return build_pool("model", ds, np.asarray(q_emb, np.float32), np.asarray(d_emb, np.float32), depth)


def _format(rows: list[tuple[int, int, np.ndarray]], pool: CandidatePool, ds: Dataset, a_col: str, p_col: str,
            n: int, fmt: str, scores: bool) -> dict[str, list]:
    """ST's output columns for each format (see sentence-transformers' ``mine_hard_negatives``)."""
    texts = ds.corpus.texts
    qtext = {q: ds.queries.texts[ds.queries.row[qid]] for q, qid in enumerate(pool.qids)}

    def negs(q: int, cols: np.ndarray) -> tuple[list[str], list[float]]:
        return ([texts[i] for i in pool.cand_idx[q, cols]], [float(s) for s in pool.cand_score[q, cols]])

    out: dict[str, list] = {}
    if fmt == "triplet":
        out = {a_col: [], p_col: [], "negative": [], **({"scores": []} if scores else {})}
        for q, p, cols in rows:
            for t, s in zip(*negs(q, cols)):
                out[a_col].append(qtext[q])
                out[p_col].append(texts[pool.pos_idx[p]])
                out["negative"].append(t)
                if scores:
                    out["scores"].append([float(pool.pos_score[p]), s])
    elif fmt == "n-tuple":
        full = [(q, p, c) for q, p, c in rows if len(c) == n]
        out = {a_col: [qtext[q] for q, _, _ in full], p_col: [texts[pool.pos_idx[p]] for _, p, _ in full],
               **{f"negative_{i + 1}": [negs(q, c)[0][i] for q, _, c in full] for i in range(n)}}
        if scores:
            out["scores"] = [[float(pool.pos_score[p]), *negs(q, c)[1]] for q, p, c in full]
    elif fmt == "labeled-pair":
        out = {a_col: [], p_col: [], ("score" if scores else "label"): []}
        key = "score" if scores else "label"
        done: set[int] = set()
        for q, _, cols in rows:
            if q in done:
                continue
            done.add(q)
            for i in range(int(pool.pos_ptr[q]), int(pool.pos_ptr[q + 1])):
                out[a_col].append(qtext[q])
                out[p_col].append(texts[pool.pos_idx[i]])
                out[key].append(float(pool.pos_score[i]) if scores else 1)
            for t, s in zip(*negs(q, cols)):
                out[a_col].append(qtext[q])
                out[p_col].append(t)
                out[key].append(s if scores else 0)
    else:  # labeled-list
        kept = [(q, p, c) for q, p, c in rows if len(c)]
        out = {a_col: [qtext[q] for q, _, _ in kept],
               p_col: [[texts[pool.pos_idx[p]], *negs(q, c)[0]] for q, p, c in kept]}
        if scores:
            out["scores"] = [[float(pool.pos_score[p]), *negs(q, c)[1]] for q, p, c in kept]
        else:
            out["labels"] = [[1] + [0] * len(c) for _, _, c in kept]
    return out
