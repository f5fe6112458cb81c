"""Trap rates: how many known (injected) false negatives a strategy mines, and how many real hard negatives it keeps.
The same for the hidden positives of a ``hardneg thin`` folder (real positives removed from the qrels):
``hidden_rates``, ``hidden_table``; ``known_negative_rates`` picks by manifest type.

The traps of a query are the injected documents whose manifest ``qids`` list it (near-copies of one of its
positives, see ``hardneg.data.inject``). Rows are the mined rows, one per (query, positive); a "trap row" is a row
whose query has at least one trap. With ``n`` the strategy's number of negatives, ``traps(r)`` the traps of row r's
query, ``pool(r)`` its top-depth candidates, ``neg(r)`` the negatives the strategy chose and ``real_n(r)`` the first
``n`` candidates of ``pool(r)`` that are not traps of that query (what naive top-n would take without the traps):

- ``exposure``          sum |traps(r) & pool(r)| / sum |traps(r)|                  (trap rows)
- ``exposure_top_n``    sum |traps(r) & first n of pool(r)| / sum |traps(r)|      (trap rows; naive's intake)
- ``trap_recall``       sum |traps(r) & neg(r)| / sum |traps(r) & pool(r)|        (trap rows): of the traps the
                        teacher retrieved, the share the strategy selects as negatives
- ``rows_with_trap``    share of trap rows with >= 1 trap among neg(r)
- ``trap_share``        sum |traps(r) & neg(r)| / sum |neg(r)|                    (trap rows)
- ``trap_share_all``    the same over all rows (the contamination training sees)
- ``real_kept``         sum |real_n(r) & neg(r)| / sum |real_n(r)|                (all rows): 1.0 for naive top-n;
                        a strategy that avoids traps by dropping everything scores low here
- ``real_kept_trap_rows``  the same over trap rows only

An injected document that is not a trap of the query (a copy of another query's positive) counts as an ordinary,
real negative for it: its source is not a positive of the query, or the manifest would list the query.
Ratios with an empty denominator are ``None``. The counts ``traps``, ``traps_in_pool`` and ``traps_selected`` are
sums over trap rows (a query with two positives counts its traps twice, as training sees them twice);
``by_transform`` splits ``traps_in_pool``/``traps_selected``/``trap_recall`` by the injected copy's transform.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from hardneg.data.inject import Manifest
from hardneg.data.thin import HiddenManifest
from hardneg.data.splits import source_split
from hardneg.errors import HardnegError
from hardneg.markdown import md_table
from hardneg.types import Dataset, MinedSet


def _ratio(a: float, b: float) -> float | None:
    return None if b == 0 else float(a) / float(b)


def trap_masks(mined: MinedSet, dataset: Dataset, manifest: Manifest) -> tuple[np.ndarray, np.ndarray]:
    """(is_trap bool [Q, D] over the pool's candidates, n_traps int64 [Q] per pool query)."""
    pool = mined.pool
    if source_split(dataset.split) != manifest.split:  # a train with a dev carved out keeps its traps
        raise HardnegError(f"the traps were injected for split {manifest.split}, the mined split is {dataset.split}",
                           where=dataset.name, fix=f"mine --split {manifest.split} to measure trap rates")
    row = dataset.corpus.row
    n_docs = len(dataset.corpus)
    missing = [i for i in manifest.ids if i not in row]
    if missing:
        raise HardnegError(f"{len(missing)} injected document(s) are not in the mined corpus (e.g. "
                           f"{sorted(missing)[0]})", where=dataset.name,
                           fix="mine on the injected folder that holds this injected.json")
    if pool.cand_idx.size and int(pool.cand_idx.max()) >= n_docs:
        raise HardnegError("the candidate pool refers to rows beyond the dataset's corpus", where=dataset.name,
                           fix="pass the dataset the pool was mined on")
    n_traps = np.zeros(len(pool), dtype=np.int64)
    keys: list[int] = []
    for i, qid in enumerate(pool.qids):
        ids = manifest.by_qid.get(qid, ())
        n_traps[i] = len(ids)
        keys.extend(i * n_docs + row[d] for d in ids)
    cand = pool.cand_idx.astype(np.int64)  # [Q, D]
    ck = np.arange(len(pool), dtype=np.int64)[:, None] * n_docs + cand
    is_trap = np.isin(ck, np.asarray(keys, dtype=np.int64)) & (cand >= 0)  # [Q, D]
    return is_trap, n_traps


def trap_rates(mined: MinedSet, dataset: Dataset, manifest: Manifest) -> dict[str, Any]:
    """Trap exposure, trap recall and real-hard-negative retention of one strategy's output (rules: module doc)."""
    pool = mined.pool
    is_trap, n_traps = trap_masks(mined, dataset, manifest)
    n = int(mined.neg_col.shape[1])
    rq = mined.row_q
    trap_row = n_traps[rq] > 0  # [R]
    present_q = is_trap.sum(axis=1)  # [Q]
    top_n_q = is_trap[:, :n].sum(axis=1)  # [Q]

    neg = mined.neg_col  # [R, n]
    has = neg >= 0
    cols = np.maximum(neg, 0)
    sel_trap = np.take_along_axis(is_trap[rq], cols, axis=1) & has if n else np.zeros((len(rq), 0), bool)
    real = (pool.cand_idx >= 0) & ~is_trap  # [Q, D]
    ref = real & (np.cumsum(real, axis=1) <= n)  # [Q, D] the first n non-trap candidates
    kept = np.take_along_axis(ref[rq], cols, axis=1) & has if n else np.zeros((len(rq), 0), bool)

    n_sel_trap = sel_trap.sum(axis=1)  # [R]
    n_neg = has.sum(axis=1)  # [R]
    n_kept = kept.sum(axis=1)  # [R]
    n_ref = ref.sum(axis=1)[rq]  # [R]
    t = trap_row
    by_transform = _by_transform(mined, dataset, manifest, is_trap, sel_trap, t)
    traps_t = int(n_traps[rq][t].sum())
    present_t = int(present_q[rq][t].sum())
    selected_t = int(n_sel_trap[t].sum())
    return {
        "strategy": mined.strategy,
        "n": n,
        "rows": int(len(rq)),
        "trap_rows": int(t.sum()),
        "traps": traps_t,
        "traps_in_pool": present_t,
        "traps_selected": selected_t,
        "exposure": _ratio(present_t, traps_t),
        "exposure_top_n": _ratio(int(top_n_q[rq][t].sum()), traps_t),
        "trap_recall": _ratio(selected_t, present_t),
        "rows_with_trap": _ratio(int((n_sel_trap[t] > 0).sum()), int(t.sum())),
        "trap_share": _ratio(selected_t, int(n_neg[t].sum())),
        "trap_share_all": _ratio(int(n_sel_trap.sum()), int(n_neg.sum())),
        "real_kept": _ratio(int(n_kept.sum()), int(n_ref.sum())),
        "real_kept_trap_rows": _ratio(int(n_kept[t].sum()), int(n_ref[t].sum())),
        "negatives_per_row": _ratio(int(n_neg.sum()), int(len(rq))),
        "rows_short": int((n_neg < n).sum()),
        "by_transform": by_transform,
    }


def _by_transform(mined: MinedSet, dataset: Dataset, manifest: Manifest, is_trap: np.ndarray,
                  sel_trap: np.ndarray, trap_row: np.ndarray) -> dict[str, dict[str, Any]]:
    """Per transform (trap rows): traps in the pool, traps selected, and their ratio (the trap recall)."""
    row = dataset.corpus.row
    names = sorted({d.transform for d in manifest.docs})
    code = {row[d.id]: names.index(d.transform) for d in manifest.docs}
    pool, rq = mined.pool, mined.row_q
    tq = pool.cand_idx[rq][trap_row]  # [T, D] corpus rows of the trap rows' candidates
    present = tq[is_trap[rq][trap_row]]
    chosen = np.take_along_axis(pool.cand_idx[rq], np.maximum(mined.neg_col, 0), axis=1)[sel_trap]
    out = {}
    for k, name in enumerate(names):
        p = int(sum(1 for x in present.tolist() if code[x] == k))
        c = int(sum(1 for x in chosen.tolist() if code[x] == k))
        out[name] = {"traps_in_pool": p, "traps_selected": c, "trap_recall": _ratio(c, p)}
    return out


def trap_pool_stats(mined: MinedSet, dataset: Dataset, manifest: Manifest) -> dict[str, Any]:
    """Strategy-independent view of the traps in the pool: raw ranks and score minus the copied positive's score.

    Per (query, trap present in its pool): ``rank`` is the raw teacher rank (positives included); ``margin`` is the
    trap's score minus the teacher score of its source document (a positive of that query).
    """
    pool = mined.pool
    is_trap, n_traps = trap_masks(mined, dataset, manifest)
    row = dataset.corpus.row
    src_row = {row[d.id]: row[d.source] for d in manifest.docs}
    ranks, margins = [], []
    for i, j in zip(*np.nonzero(is_trap)):
        lo, hi = int(pool.pos_ptr[i]), int(pool.pos_ptr[i + 1])
        prow = pool.pos_idx[lo:hi]
        hit = np.nonzero(prow == src_row[int(pool.cand_idx[i, j])])[0]
        ranks.append(int(pool.cand_rank[i, j]))
        if hit.size:
            margins.append(float(pool.cand_score[i, j]) - float(pool.pos_score[lo + int(hit[0])]))
    r, m = np.asarray(ranks, dtype=np.float64), np.asarray(margins, dtype=np.float64)
    return {
        "queries_with_traps": int((n_traps > 0).sum()),
        "traps": int(n_traps.sum()),
        "traps_in_pool": int(is_trap.sum()),
        "rank_median": float(np.median(r)) if r.size else None,
        "rank_p90": float(np.percentile(r, 90)) if r.size else None,
        "margin_median": float(np.median(m)) if m.size else None,
        "outscore_source": _ratio(int((m >= 0).sum()), int(m.size)),
    }


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def trap_table(results: Iterable[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown table of ``trap_rates`` results (a list of them, or a dict strategy -> result)."""
    rows = list(results.values()) if isinstance(results, Mapping) else list(results)
    body = [[f"`{r['strategy']}`", f"{r['trap_rows']:,} / {r['rows']:,}", _pct(r["exposure"]),
             _pct(r["exposure_top_n"]), _pct(r["trap_recall"]), _pct(r["rows_with_trap"]), _pct(r["trap_share"]),
             _pct(r["trap_share_all"]), _pct(r["real_kept"]),
             "n/a" if r.get("negatives_per_row") is None else f"{r['negatives_per_row']:.2f}"]
            for r in rows]
    lines = md_table(["strategy", "trap rows", "exposure@depth", "traps in naive top-n", "trap recall",
                      "rows with >=1 trap", "trap share of negs (trap rows)", "trap share (all rows)", "real negs kept",
                      "negs/row"], body)
    return "\n".join(lines) + "\n"


# -- hidden positives (``hardneg thin``) ------------------------------------------------------------------------

def hidden_masks(mined: MinedSet, dataset: Dataset, hidden: HiddenManifest) -> tuple[np.ndarray, np.ndarray]:
    """(is_hidden bool [Q, D] over the pool's candidates, n_hidden int64 [Q] per pool query)."""
    pool = mined.pool
    if source_split(dataset.split) != hidden.split:
        raise HardnegError(f"the positives were thinned for split {hidden.split}, the mined split is {dataset.split}",
                           where=dataset.name, fix=f"mine --split {hidden.split} to measure hidden-positive rates")
    row = dataset.corpus.row
    n_docs = len(dataset.corpus)
    missing = sorted(d for d in hidden.ids if d not in row)
    if missing:
        raise HardnegError(f"{len(missing)} hidden positive(s) are not in the mined corpus (e.g. {missing[0]})",
                           where=dataset.name, fix="mine on the thinned folder that holds this hidden.json")
    labelled = sorted((q, d) for q, ds in hidden.by_qid.items() for d in ds
                      if dataset.qrels.get(q, {}).get(d, 0) > 0)
    if labelled:
        q, d = labelled[0]
        raise HardnegError(f"hidden positive {d} of query {q} is a labelled positive of the mined qrels",
                           where=dataset.name, fix="mine on the thinned folder that holds this hidden.json")
    if pool.cand_idx.size and int(pool.cand_idx.max()) >= n_docs:
        raise HardnegError("the candidate pool refers to rows beyond the dataset's corpus", where=dataset.name,
                           fix="pass the dataset the pool was mined on")
    n_hidden = np.zeros(len(pool), dtype=np.int64)
    keys: list[int] = []
    for i, qid in enumerate(pool.qids):
        ids = hidden.by_qid.get(qid, ())
        n_hidden[i] = len(ids)
        keys.extend(i * n_docs + row[d] for d in ids)
    cand = pool.cand_idx.astype(np.int64)
    ck = np.arange(len(pool), dtype=np.int64)[:, None] * n_docs + cand
    is_hidden = np.isin(ck, np.asarray(keys, dtype=np.int64)) & (cand >= 0)
    return is_hidden, n_hidden


def hidden_rates(mined: MinedSet, dataset: Dataset, hidden: HiddenManifest) -> dict[str, Any]:
    """How many hidden positives (``hardneg thin``) a strategy mines as negatives: the rules of ``trap_rates``
    (module doc) with "trap" read as "hidden positive of the row's query".

    - ``hidden_recall``     sum |hidden(r) & neg(r)| / sum |hidden(r) & pool(r)|   (hidden rows): of the hidden
                            positives the teacher retrieved, the share the strategy mines as negatives
    - ``hidden_share``      sum |hidden(r) & neg(r)| / sum |neg(r)|                 (hidden rows)
    - ``hidden_share_all``  the same over all rows: the hidden share of all negatives training sees
    - ``exposure``, ``exposure_top_n``, ``rows_with_hidden``, ``real_kept``, ``real_kept_hidden_rows``: as the
      trap rates; ``by_grade`` splits ``hidden_in_pool``/``hidden_selected``/``hidden_recall`` by the hidden
      positive's grade.
    """
    pool = mined.pool
    is_h, n_h = hidden_masks(mined, dataset, hidden)
    n = int(mined.neg_col.shape[1])
    rq = mined.row_q
    h = n_h[rq] > 0  # [R] hidden rows
    present_q = is_h.sum(axis=1)
    top_n_q = is_h[:, :n].sum(axis=1)
    neg = mined.neg_col
    has = neg >= 0
    cols = np.maximum(neg, 0)
    sel = np.take_along_axis(is_h[rq], cols, axis=1) & has if n else np.zeros((len(rq), 0), bool)
    real = (pool.cand_idx >= 0) & ~is_h
    ref = real & (np.cumsum(real, axis=1) <= n)
    kept = np.take_along_axis(ref[rq], cols, axis=1) & has if n else np.zeros((len(rq), 0), bool)
    n_sel, n_neg, n_kept, n_ref = sel.sum(axis=1), has.sum(axis=1), kept.sum(axis=1), ref.sum(axis=1)[rq]

    # by grade: grade of each (pool query, candidate) that is hidden
    row = dataset.corpus.row
    grade_of = {(q, row[d]): g for q, docs in hidden.hidden.items() for d, g in docs.items() if d in row}
    present_g: dict[int, int] = {}
    chosen_g: dict[int, int] = {}
    for r in np.nonzero(h)[0].tolist():
        i = int(rq[r])
        q = pool.qids[i]
        for j in np.nonzero(is_h[i])[0].tolist():
            g = grade_of[(q, int(pool.cand_idx[i, j]))]
            present_g[g] = present_g.get(g, 0) + 1
        for c in np.nonzero(sel[r])[0].tolist():
            g = grade_of[(q, int(pool.cand_idx[i, int(neg[r, c])]))]
            chosen_g[g] = chosen_g.get(g, 0) + 1
    by_grade = {str(g): {"hidden_in_pool": present_g.get(g, 0), "hidden_selected": chosen_g.get(g, 0),
                         "hidden_recall": _ratio(chosen_g.get(g, 0), present_g.get(g, 0))}
                for g in sorted({g for docs in hidden.hidden.values() for g in docs.values()})}
    total_t = int(n_h[rq][h].sum())
    present_t = int(present_q[rq][h].sum())
    selected_t = int(n_sel[h].sum())
    return {
        "strategy": mined.strategy,
        "n": n,
        "rows": int(len(rq)),
        "hidden_rows": int(h.sum()),
        "hidden": total_t,
        "hidden_in_pool": present_t,
        "hidden_selected": selected_t,
        "exposure": _ratio(present_t, total_t),
        "exposure_top_n": _ratio(int(top_n_q[rq][h].sum()), total_t),
        "hidden_recall": _ratio(selected_t, present_t),
        "rows_with_hidden": _ratio(int((n_sel[h] > 0).sum()), int(h.sum())),
        "hidden_share": _ratio(selected_t, int(n_neg[h].sum())),
        "hidden_share_all": _ratio(int(n_sel.sum()), int(n_neg.sum())),
        "real_kept": _ratio(int(n_kept.sum()), int(n_ref.sum())),
        "real_kept_hidden_rows": _ratio(int(n_kept[h].sum()), int(n_ref[h].sum())),
        "negatives_per_row": _ratio(int(n_neg.sum()), int(len(rq))),
        "rows_short": int((n_neg < n).sum()),
        "by_grade": by_grade,
    }


def known_negative_rates(mined: MinedSet, dataset: Dataset, manifest: Manifest | HiddenManifest) -> dict[str, Any]:
    """``{"traps": trap_rates(...)}`` for a ``hardneg inject`` manifest, ``{"hidden": hidden_rates(...)}`` for a
    ``hardneg thin`` one: what ``hardneg mine`` records in each strategy's stats.json."""
    if isinstance(manifest, HiddenManifest):
        return {"hidden": hidden_rates(mined, dataset, manifest)}
    return {"traps": trap_rates(mined, dataset, manifest)}


def hidden_table(results: Iterable[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown table of ``hidden_rates`` results (a list of them, or a dict strategy -> result)."""
    rows = list(results.values()) if isinstance(results, Mapping) else list(results)
    body = [[f"`{r['strategy']}`", f"{r['hidden_rows']:,} / {r['rows']:,}", _pct(r["exposure"]),
             _pct(r["exposure_top_n"]), _pct(r["hidden_recall"]), _pct(r["rows_with_hidden"]),
             _pct(r["hidden_share"]), _pct(r["hidden_share_all"]), _pct(r["real_kept"]),
             "n/a" if r.get("negatives_per_row") is None else f"{r['negatives_per_row']:.2f}"]
            for r in rows]
    lines = md_table(["strategy", "rows with hidden", "exposure@depth", "hidden in naive top-n", "hidden recall",
                      "rows with >=1 hidden", "hidden share of negs (hidden rows)", "hidden share (all rows)",
                      "real negs kept", "negs/row"], body)
    return "\n".join(lines) + "\n"
