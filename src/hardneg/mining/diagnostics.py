"""False-negative diagnostics and teacher comparisons: pure functions over pools / mined sets, plus a driver.

- ``teacher_overlap``: mean Jaccard of the top-n negative sets per row between teacher pairs (paper Table 6).
- ``hidden_positive_probe``: hide one labelled positive of every multi-positive query, mine again, and count
  how often each strategy picks the hidden positive as a negative: a known-answer false-negative rate.
- ``near_duplicate_query_negatives``: negatives that are labelled positives of a near-duplicate query.
- ``score_distributions`` / ``plot_score_distributions``: the paper's Fig. 4 data (positive, top-1 negative,
  positive minus top-1 negative).
- ``run_diagnostics`` (what ``hardneg diagnose`` calls) and ``write_diagnostics`` (JSON + Markdown).
"""
from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hardneg.errors import HardnegError
from hardneg.io import atomic_path, ensure_dir, write_json, write_text
from hardneg.markdown import md_table
from hardneg.mining.ensemble import EnsembleSet, check_same_rows
from hardneg.mining.select import mix64, apply_strategy
from hardneg.mining.stats import score_arrays
from hardneg.mining.strategy import Strategy, parse_strategy
from hardneg.search.exact import exact_search
from hardneg.types import CandidatePool, Dataset, MinedSet

PROBE_SALT = 0x48494445  # "HIDE"
ROUND = 6


def _as_strategy(s: Strategy | str) -> Strategy:
    return s if isinstance(s, Strategy) else parse_strategy(s)


def _stat(x: np.ndarray) -> dict[str, float | None]:
    if x.size == 0:
        return {"mean": None, "median": None}
    return {"mean": float(np.mean(x)), "median": float(np.median(x))}


# -- teacher overlap (Table 6) --------------------------------------------------------------------------------

def jaccard_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row Jaccard of two [R, n] sets of corpus rows (-1 = empty); NaN where both rows are empty."""
    va, vb = a >= 0, b >= 0
    inter = ((a[:, :, None] == b[:, None, :]) & va[:, :, None] & vb[:, None, :]).any(axis=2).sum(axis=1)
    union = va.sum(axis=1) + vb.sum(axis=1) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.maximum(union, 1), np.nan)


def teacher_overlap(mined_by_teacher: Mapping[str, MinedSet], n: int = 4) -> dict:
    """Mean over rows of Jaccard(top-n negatives of teacher a, of teacher b), for every teacher pair.

    Rows where both teachers have no negative are left out (counted in ``rows_both_empty``).
    """
    names = list(mined_by_teacher)
    sets = [mined_by_teacher[k] for k in names]
    check_same_rows(sets)
    tops = [m.neg_idx[:, :n] for m in sets]
    pairs, matrix = [], {a: {} for a in names}
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            jac = jaccard_rows(tops[i], tops[j])
            ok = ~np.isnan(jac)
            mean = float(jac[ok].mean()) if ok.any() else None
            pairs.append({"a": names[i], "b": names[j], "mean_jaccard": mean, "rows": int(ok.sum()),
                          "rows_both_empty": int((~ok).sum())})
            matrix[names[i]][names[j]] = matrix[names[j]][names[i]] = mean
    return {"n": n, "strategy": sets[0].strategy if sets else None, "pairs": pairs, "matrix": matrix}


# -- hidden-positive probe -------------------------------------------------------------------------------------

def _qkeys(qids: Sequence[str]) -> np.ndarray:
    return np.array([int.from_bytes(hashlib.blake2b(q.encode("utf-8"), digest_size=8).digest(), "little")
                     for q in qids], dtype=np.uint64)


def choose_hidden(pool: CandidatePool, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One positive to hide per query with >= 2 positives: (pool query indices [Q'], index into pos arrays [Q']).

    The choice is a hash of (seed, qid), uniform over the query's positives.
    """
    npos = np.diff(pool.pos_ptr)
    multi = np.nonzero(npos >= 2)[0]
    if multi.size == 0:
        return multi.astype(np.int64), multi.astype(np.int64)
    with np.errstate(over="ignore"):
        salt = mix64(np.array([(seed & 0xFFFFFFFFFFFFFFFF) ^ PROBE_SALT], dtype=np.uint64))
        h = mix64(_qkeys([pool.qids[i] for i in multi]) ^ salt)
    j = (h % npos[multi].astype(np.uint64)).astype(np.int64)
    return multi.astype(np.int64), pool.pos_ptr[multi] + j


def probe_pool(pool: CandidatePool, seed: int = 0) -> tuple[CandidatePool, dict[str, np.ndarray]]:
    """The pool the teacher would give if one positive per multi-positive query were unlabelled.

    No re-encoding: the hidden doc's score is known (positives are scored directly), so it is inserted into the
    candidate list at its score position (ties: corpus row ascending); the last candidate drops out if the row
    was full, and a hidden doc ranking below the ``depth``-th candidate stays out (as a fresh search would).
    Raw ranks of the other candidates do not change (the full ranking is the same; only labels changed).

    Returns the probe pool (only the multi-positive queries, with the remaining positives) and per probe query:
    ``hidden_idx`` (corpus row), ``hidden_score``, ``hidden_rank`` (1-based raw rank), ``hidden_col`` (its
    candidate column in the probe pool, -1 if beyond depth).
    """
    qs, hid = choose_hidden(pool, seed)
    d = pool.depth
    qn = qs.shape[0]
    cand_idx = np.full((qn, d), -1, dtype=np.int32)
    cand_score = np.full((qn, d), np.nan, dtype=np.float32)
    cand_rank = np.full((qn, d), -1, dtype=np.int32)
    ptr, pidx, pscore = [0], [], []
    h_idx = pool.pos_idx[hid].astype(np.int64)
    h_score = pool.pos_score[hid].astype(np.float32)
    h_rank = np.zeros(qn, dtype=np.int64)
    h_col = np.full(qn, -1, dtype=np.int64)
    for i, (q, hp) in enumerate(zip(qs.tolist(), hid.tolist())):
        lo, hi = int(pool.pos_ptr[q]), int(pool.pos_ptr[q + 1])
        keep = [k for k in range(lo, hi) if k != hp]
        pidx.extend(pool.pos_idx[keep].tolist())
        pscore.extend(pool.pos_score[keep].tolist())
        ptr.append(len(pidx))
        c, s, r = pool.cand_idx[q], pool.cand_score[q], pool.cand_rank[q]
        v = c >= 0
        hs, hr = h_score[i], h_idx[i]
        above = v & ((s > hs) | ((s == hs) & (c < hr)))  # candidates ranked above the hidden doc
        pos_above = int(np.count_nonzero(above))
        others_s, others_r = pool.pos_score[keep], pool.pos_idx[keep]
        p_above = int(np.count_nonzero((others_s > hs) | ((others_s == hs) & (others_r < hr))))
        h_rank[i] = 1 + pos_above + p_above
        # pos_above == d: the row is full and every candidate outranks the hidden doc (beyond depth).
        if pos_above < d:
            h_col[i] = pos_above
            new_c = np.concatenate([c[:pos_above], [hr], c[pos_above:]])[:d]
            new_s = np.concatenate([s[:pos_above], [hs], s[pos_above:]])[:d]
            new_r = np.concatenate([r[:pos_above], [h_rank[i]], r[pos_above:]])[:d]
        else:
            new_c, new_s, new_r = c, s, r
        cand_idx[i], cand_score[i], cand_rank[i] = new_c, new_s, new_r
    probe = CandidatePool(teacher=pool.teacher, qids=tuple(pool.qids[q] for q in qs.tolist()), cand_idx=cand_idx,
                          cand_score=cand_score, cand_rank=cand_rank, pos_ptr=np.asarray(ptr, dtype=np.int64),
                          pos_idx=np.asarray(pidx, dtype=np.int32), pos_score=np.asarray(pscore, dtype=np.float32),
                          meta={**pool.meta, "probe": {"seed": seed, "hidden_per_query": 1}})
    if qn:
        probe.validate()
    return probe, {"query": qs, "hidden_idx": h_idx, "hidden_score": h_score, "hidden_rank": h_rank,
                   "hidden_col": h_col}


def hidden_positive_probe(pool: CandidatePool, strategies: Sequence[Strategy | str], *, seed: int = 0) -> dict:
    """Per strategy: how often the hidden positive of a (query, remaining positive) row is mined as a negative.

    ``pool`` is a teacher's pool built with the full qrels; only queries with >= 2 positives are probed (one
    positive hidden each, chosen by ``seed``; the same seed is passed to sampled strategies). Output per
    strategy: ``rows``, ``rows_caught``, ``catch_rate``, ``queries_caught``, ``query_catch_rate``,
    ``catch_slot`` (1-based position among the row's negatives: mean, median), ``catch_rank`` (the hidden doc's
    raw teacher rank when caught), ``rows_empty`` and ``negatives_per_row`` (a strategy that mines nothing
    catches nothing), ``hidden_share`` (caught / all mined negatives).
    """
    probe, info = probe_pool(pool, seed)
    qn = len(probe)
    in_pool = info["hidden_col"] >= 0
    out: dict[str, Any] = {
        "teacher": pool.teacher, "seed": seed, "depth": pool.depth, "queries_probed": qn,
        "queries_total": len(pool), "hidden_in_pool": int(in_pool.sum()),
        "hidden_rank": _stat(info["hidden_rank"].astype(np.float64)),
        "hidden_score": _stat(info["hidden_score"].astype(np.float64)),
        "strategies": {},
    }
    for st in map(_as_strategy, strategies):
        if qn == 0:
            out["strategies"][str(st)] = {"rows": 0, "rows_caught": 0, "catch_rate": None, "queries": 0,
                                          "queries_caught": 0, "query_catch_rate": None}
            continue
        m = apply_strategy(probe, st, seed=seed)
        hidden = info["hidden_idx"][m.row_q]  # [R]
        neg = m.neg_idx
        hit = neg == hidden[:, None]  # [R, n]
        caught = hit.any(axis=1)
        slot = np.argmax(hit, axis=1)[caught] + 1
        rank = info["hidden_rank"][m.row_q][caught]
        q_caught = np.zeros(qn, dtype=bool)
        q_caught[m.row_q[caught]] = True
        n_neg = m.n_neg
        rows = len(m)
        out["strategies"][str(st)] = {
            "rows": rows, "rows_caught": int(caught.sum()), "catch_rate": float(caught.mean()),
            "queries": qn, "queries_caught": int(q_caught.sum()), "query_catch_rate": float(q_caught.mean()),
            "catch_slot": _stat(slot.astype(np.float64)), "catch_rank": _stat(rank.astype(np.float64)),
            "rows_empty": int((n_neg == 0).sum()) if st.n else 0,
            "negatives_per_row": float(n_neg.mean()) if rows else 0.0,
            "hidden_share": float(caught.sum() / n_neg.sum()) if n_neg.sum() else None,
        }
    return out


# -- near-duplicate queries -------------------------------------------------------------------------------------

def normalize_text(text: str) -> str:
    """NFKC, lowercase, every run of non-word characters -> one space, stripped."""
    return re.sub(r"\W+", " ", unicodedata.normalize("NFKC", text).lower()).strip()


def _rows_of(mined: MinedSet | EnsembleSet) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(qid per row, neg_idx [R, n], neg_rank [R, n]) of a MinedSet or an EnsembleSet."""
    if isinstance(mined, EnsembleSet):
        return [mined.qids[q] for q in mined.row_q.tolist()], mined.neg_idx, mined.neg_rank
    return [mined.pool.qids[q] for q in mined.row_q.tolist()], mined.neg_idx, mined.neg_rank


def near_duplicate_pairs(dataset: Dataset, threshold: float, q_emb: np.ndarray | None = None, *,
                         max_neighbors: int = 50) -> dict[str, dict[str, float]]:
    """qid -> {near-duplicate qid: similarity} over the split's queries (symmetric, no self pairs).

    Near duplicate: identical normalised text (similarity reported as 1.0), or cosine of the teacher's query
    embeddings >= ``threshold`` among each query's ``max_neighbors`` nearest queries (``q_emb`` in
    ``dataset.queries`` order; None: text identity only).
    """
    ids, texts = dataset.queries.ids, dataset.queries.texts
    out: dict[str, dict[str, float]] = {q: {} for q in ids}
    groups: dict[str, list[int]] = {}
    for i, t in enumerate(texts):
        groups.setdefault(normalize_text(t), []).append(i)
    for members in groups.values():
        for a in members:
            for b in members:
                if a != b:
                    out[ids[a]][ids[b]] = 1.0
    if q_emb is not None and len(ids) > 1:
        e = np.asarray(q_emb, dtype=np.float32)
        if e.shape[0] != len(ids):
            raise HardnegError(f"query embeddings have {e.shape[0]} rows for {len(ids)} queries",
                               fix="pass the teacher's embeddings of dataset.queries, in its order")
        norms = np.linalg.norm(e, axis=1, keepdims=True)
        e = np.divide(e, norms, out=np.zeros_like(e), where=norms > 0)
        scores, idx = exact_search(e, e, min(max_neighbors + 1, len(ids)))
        for a, b in zip(*np.nonzero(scores >= threshold)):
            j = int(idx[a, b])
            if j != a:
                s = float(scores[a, b])
                qa, qb = ids[a], ids[j]
                out[qa][qb] = max(out[qa].get(qb, s), s)
                out[qb][qa] = max(out[qb].get(qa, s), s)
    return out


def near_duplicate_query_negatives(dataset: Dataset, mined: MinedSet | EnsembleSet, threshold: float = 0.95, *,
                                   q_emb: np.ndarray | None = None, max_neighbors: int = 50,
                                   examples: int = 10, pairs: dict[str, dict[str, float]] | None = None) -> dict:
    """Count mined negatives that are labelled positives of a near-duplicate query (likely false negatives).

    ``pairs`` (from ``near_duplicate_pairs``) can be passed to reuse one neighbour search for many mined sets.
    """
    if pairs is None:
        pairs = near_duplicate_pairs(dataset, threshold, q_emb, max_neighbors=max_neighbors)
    drow = dataset.corpus.row
    pos_rows = {q: {drow[d] for d in dataset.positives(q)} for q in dataset.queries.ids}
    qtext = dict(zip(dataset.queries.ids, dataset.queries.texts))
    row_qids, neg_idx, neg_rank = _rows_of(mined)
    flagged_rows = flagged = total = 0
    ex: list[dict] = []
    cache: dict[str, dict[int, tuple[str, float]]] = {}
    for r, qid in enumerate(row_qids):
        if qid not in cache:  # doc row -> (near-duplicate qid with that positive, similarity), best similarity
            m: dict[int, tuple[str, float]] = {}
            for q2, sim in sorted(pairs.get(qid, {}).items(), key=lambda kv: (-kv[1], kv[0])):
                for d in pos_rows.get(q2, ()):
                    if d not in m and d not in pos_rows.get(qid, set()):
                        m[d] = (q2, sim)
            cache[qid] = m
        m = cache[qid]
        negs = neg_idx[r]
        row_hit = False
        for j, d in enumerate(negs.tolist()):
            if d < 0:
                continue
            total += 1
            if d in m:
                flagged += 1
                row_hit = True
                if len(ex) < examples:
                    q2, sim = m[d]
                    ex.append({"qid": qid, "query": qtext[qid], "dup_qid": q2, "dup_query": qtext[q2],
                               "similarity": sim, "docid": dataset.corpus.ids[d], "slot": j + 1,
                               "rank": int(neg_rank[r, j])})
        flagged_rows += row_hit
    n_pairs = sum(len(v) for v in pairs.values()) // 2
    return {"threshold": threshold, "by_embeddings": q_emb is not None, "query_pairs": n_pairs,
            "queries_with_near_duplicate": sum(1 for v in pairs.values() if v),
            "rows": len(row_qids), "rows_flagged": flagged_rows, "negatives_total": total,
            "negatives_flagged": flagged, "flagged_rate": flagged / total if total else None, "examples": ex}


# -- score distributions (Fig. 4) --------------------------------------------------------------------------------

KINDS = ("pos", "top1_neg", "pos_minus_top1")


def _score_arrays(m: MinedSet | EnsembleSet) -> dict[str, np.ndarray]:
    if isinstance(m, EnsembleSet):
        has = m.n_neg > 0
        t = np.maximum(m.neg_teacher[has, 0], 0)
        pos = m.pos_score[has, t].astype(np.float64)  # the top-1 negative's own teacher's positive score
        top1 = m.neg_score[has, 0].astype(np.float64)
        return {"pos": pos, "top1_neg": top1, "pos_minus_top1": pos - top1}
    a = score_arrays(m)
    return {"pos": a["pos"], "top1_neg": a["top1_neg"], "pos_minus_top1": a["pos_minus_top1"]}


def _edges(values: list[np.ndarray], bins: int) -> np.ndarray:
    x = np.concatenate([v for v in values if v.size] or [np.zeros(0)])
    if x.size == 0:
        return np.linspace(-1.0, 1.0, bins + 1)
    lo, hi = math.floor(float(x.min()) * 20) / 20, math.ceil(float(x.max()) * 20) / 20
    if hi <= lo:
        hi = lo + 0.05
    return np.round(np.linspace(lo, hi, bins + 1), 6)


def score_distributions(mined_sets: Mapping[str, MinedSet | EnsembleSet], *, bins: int = 40) -> dict:
    """Histogram data per set (shared edges per kind): positive, top-1 negative, positive - top-1 negative.

    Rows without a negative are left out. Per set also quantiles and ``top1_neg_above_pos`` (rows where the
    top-1 negative outscores the positive: the paper's Fig. 4b).
    """
    arrays = {name: _score_arrays(m) for name, m in mined_sets.items()}
    edges = {k: _edges([a[k] for a in arrays.values()], bins) for k in KINDS}
    sets = {}
    for name, a in arrays.items():
        q = {k: ({f"q{int(p * 100):02d}": float(v) for p, v in zip((0.05, 0.5, 0.95),
                                                                   np.quantile(a[k], (0.05, 0.5, 0.95)))}
                 | {"mean": float(a[k].mean())}) if a[k].size else None for k in KINDS}
        sets[name] = {"rows": int(a["pos"].size), "hist": {k: np.histogram(a[k], bins=edges[k])[0].tolist()
                                                          for k in KINDS},
                      "quantiles": q, "top1_neg_above_pos": int((a["pos_minus_top1"] < 0).sum())}
    return {"kinds": list(KINDS), "edges": {k: v.tolist() for k, v in edges.items()}, "sets": sets}


def plot_score_distributions(data: dict, path: str | Path, *, title: str | None = None) -> Path:
    """Three step-histogram panels (positive, top-1 negative, positive - top-1) as a PNG, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {"pos": "positive score", "top1_neg": "top-1 negative score",
              "pos_minus_top1": "positive - top-1 negative"}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, kind in zip(axes, data["kinds"]):
        edges = np.asarray(data["edges"][kind])
        for name, s in data["sets"].items():
            ax.stairs(s["hist"][kind], edges, label=name)
        if kind == "pos_minus_top1":
            ax.axvline(0.0, color="grey", lw=0.8, ls="--")
        ax.set_xlabel(labels.get(kind, kind))
        ax.set_ylabel("rows")
    axes[0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return path


# -- driver and output ------------------------------------------------------------------------------------------

def _slug(s: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", s.lower()).strip("-") or "x"


def run_diagnostics(dataset: Dataset, pools: Mapping[str, CandidatePool], strategies: Sequence[Strategy | str], *,
                    seed: int = 0, n_overlap: int = 4, q_embs: Mapping[str, np.ndarray] | None = None,
                    near_dup_threshold: float = 0.95, examples: int = 10, out: str | Path | None = None,
                    plot: bool = True) -> dict:
    """``hardneg diagnose``: every diagnostic for every teacher x strategy; written to ``out`` when given.

    ``pools``: teacher name -> its candidate pool for ``dataset`` (full qrels, e.g. from ``get_pool``).
    ``q_embs``: teacher name -> its query embeddings in ``dataset.queries`` order (optional; enables the
    embedding test of near-duplicate queries, else identical normalised text only).
    """
    if not pools:
        raise HardnegError("diagnose needs at least one teacher", fix="pass --teacher")
    strats = [_as_strategy(s) for s in strategies]
    if not strats:
        raise HardnegError("diagnose needs at least one strategy", fix="pass --strategy, e.g. percpos(0.95)+topk(4)")
    q_embs = q_embs or {}
    teachers = list(pools)
    mined = {t: {str(s): apply_strategy(pools[t], s, seed=seed) for s in strats} for t in teachers}
    result: dict[str, Any] = {
        "dataset": {"name": dataset.name, "split": dataset.split, "docs": len(dataset.corpus),
                    "queries": len(dataset.queries)},
        "seed": seed, "teachers": teachers, "strategies": [str(s) for s in strats],
        "hidden_positive": {t: hidden_positive_probe(pools[t], strats, seed=seed) for t in teachers},
        "near_duplicates": {}, "score_distributions": {},
    }
    if len(teachers) >= 2:
        result["overlap"] = {str(s): teacher_overlap({t: mined[t][str(s)] for t in teachers}, n_overlap)
                             for s in strats}
    for t in teachers:
        pairs = near_duplicate_pairs(dataset, near_dup_threshold, q_embs.get(t))
        result["near_duplicates"][t] = {s: near_duplicate_query_negatives(dataset, m, near_dup_threshold,
                                                                          q_emb=q_embs.get(t), examples=examples,
                                                                          pairs=pairs)
                                        for s, m in mined[t].items()}
        result["score_distributions"][t] = score_distributions(mined[t])
    if out is not None:
        folder = ensure_dir(out)
        if plot:
            result["plots"] = {}
            for t in teachers:
                name = f"scores-{_slug(t)}.png"
                plot_score_distributions(result["score_distributions"][t], folder / name, title=f"teacher {t}")
                result["plots"][t] = name
        write_diagnostics(result, folder)
    return result


def _clean(x: Any) -> Any:
    """JSON-safe, stable: floats rounded to 6 digits (NaN/inf -> null), numpy scalars -> Python, tuples -> lists."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return [_clean(v) for v in x.tolist()]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        f = float(x)
        return round(f, ROUND) if math.isfinite(f) else None
    return x


def _f(x: Any, pct: bool = False, nd: int = 3) -> str:
    if x is None:
        return "–"
    return f"{100 * x:.1f}%" if pct else f"{x:.{nd}f}"


def render_markdown(result: dict) -> str:
    """A human summary of ``run_diagnostics``' result."""
    ds = result.get("dataset", {})
    lines = [f"# Diagnostics: {ds.get('name', '?')} ({ds.get('split', '?')})", "",
             f"Teachers: {', '.join(result.get('teachers', []))}. Seed {result.get('seed')}.", ""]
    hp = result.get("hidden_positive", {})
    if hp:
        lines += ["## Hidden-positive probe", "",
                  "One labelled positive of every query with >= 2 positives is hidden (it becomes an ordinary "
                  "candidate); a strategy that mines it as a negative has picked a known false negative. Lower is "
                  "better, but read it with `rows empty` and `negs/row`: a strategy that mines nothing catches "
                  "nothing.", ""]
        for t, h in hp.items():
            lines += [f"### {t}", "",
                      f"{h['queries_probed']} of {h['queries_total']} queries probed; hidden positive within the "
                      f"top-{h['depth']} candidates for {h['hidden_in_pool']}; its median raw rank "
                      f"{_f(h['hidden_rank']['median'], nd=1)}.", ""]
            lines += md_table(["strategy", "rows", "caught", "catch rate", "query catch rate", "mean slot",
                               "median rank", "rows empty", "negs/row"],
                              [[f"`{s}`", v["rows"], v["rows_caught"], _f(v["catch_rate"], True),
                                _f(v["query_catch_rate"], True), _f(v.get("catch_slot", {}).get("mean"), nd=2),
                                _f(v.get("catch_rank", {}).get("median"), nd=1), v.get("rows_empty", 0),
                                _f(v.get("negatives_per_row"), nd=2)] for s, v in h["strategies"].items()])
            lines.append("")
    ov = result.get("overlap")
    if ov:
        lines += ["## Teacher overlap (mean Jaccard of top-n negatives per row)", ""]
        for s, o in ov.items():
            lines += [f"`{s}`, n = {o['n']}:", ""]
            lines += md_table(["teacher a", "teacher b", "mean Jaccard", "rows"],
                              [[p["a"], p["b"], _f(p["mean_jaccard"]), p["rows"]] for p in o["pairs"]])
            lines.append("")
    nd = result.get("near_duplicates", {})
    if nd:
        lines += ["## Negatives that are positives of a near-duplicate query", ""]
        lines += md_table(["teacher", "strategy", "near-dup query pairs", "negatives", "flagged", "rate"],
                          [[t, f"`{s}`", v["query_pairs"], v["negatives_total"], v["negatives_flagged"],
                            _f(v["flagged_rate"], True)] for t, per in nd.items() for s, v in per.items()])
        lines.append("")
    sd = result.get("score_distributions", {})
    if sd:
        lines += ["## Score distributions (paper Fig. 4)", ""]
        body = []
        for t, d in sd.items():
            for s, v in d["sets"].items():
                med = {k: (v["quantiles"][k] or {}).get("q50") for k in KINDS}
                body.append([t, f"`{s}`", v["rows"], _f(med["pos"]), _f(med["top1_neg"]), _f(med["pos_minus_top1"]),
                             v["top1_neg_above_pos"]])
        lines += md_table(["teacher", "strategy", "rows", "median pos", "median top-1 neg", "median pos - top-1",
                           "top-1 > pos"], body)
        lines.append("")
        for t, name in result.get("plots", {}).items():
            lines += [f"![{t}]({name})", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_diagnostics(result: dict, folder: str | Path) -> None:
    """``diagnostics.json`` (sorted keys, floats rounded to 1e-6) and ``diagnostics.md``, each written atomically."""
    folder = ensure_dir(folder)
    clean = _clean(result)
    write_json(folder / "diagnostics.json", clean)
    write_text(folder / "diagnostics.md", render_markdown(clean))
