"""The data a browse page embeds, built from mined rows already in memory (no I/O: see ``inputs.py``).

Layout (``format`` 1), compact so a 110k-row page stays a few tens of MB: every text is stored once and rows
refer to it by index; per mined set the negatives of all rows are flat arrays cut by per-row counts.

- ``docs``     ``{"ids": [...], "text": [...]}``: every document shown (positives, negatives, removed candidates,
               known false negatives), in first-appearance order.
- ``queries``  ``{"ids", "text", "start"}``: the rows of query ``i`` are ``start[i]:start[i+1]`` (queries in the
               first set's order, a query's rows in their order there).
- ``rows``     ``{"pos": [doc index per row]}``: one row per (query, positive).
- ``sets``     one entry per mined set (name, source, teacher(s), n, run statistics, summary of the embedded rows)
               with ``pos_score`` (per row) and ``neg``: ``nn`` (negatives per row), flat ``doc``, ``score``,
               ``rank`` (-1: none), ``teacher`` (indexes into the set's ``teachers``, only when it has several),
               ``badge_at``/``badge`` (flat negative index -> badge codes), ``tip_at``/``tip`` (hover notes);
               ``removed`` (optional): ``row``, ``doc``, ``score``, ``rank``, ``filter`` (index into ``filters``);
               ``qflag``: per query, the bits of ``FLAGS`` that hold for this set.
- ``badges``   the badge table: ``{"kind", "label"}``; kinds: ``positive`` (a labelled positive of the query mined
               as a negative), ``duplicate`` (same text as a positive), ``trap`` (an injected near-copy of a
               positive, from ``injected.json``), ``hidden`` (a hidden positive, from ``hidden.json``), ``audit``
               (a reason from the audit file), ``pad`` (a random padding document).
- ``known``    per query, the known false negatives (traps and hidden positives) whether mined or not:
               ``q``, ``doc``, ``badge``.
- ``charts``   the paper's Fig. 4 per set: histograms of the positive and the top-1 negative scores on shared
               bins, and of positive minus top-1 negative.

Scores are stored as integers: ``round(score * SCORE_SCALE)`` (null when missing).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from hardneg.browse.badges import Badges, Docs, Marker
from hardneg.browse.charts import charts, quantile
from hardneg.browse.expand import expand
from hardneg.browse.sets import Extras, MinedInput, check_same_data, row_keys
from hardneg.errors import HardnegError

__all__ = ["FLAGS", "FORMAT", "GENERATOR", "ROWS_SOFT_LIMIT", "SCORE_SCALE", "Extras", "MinedInput", "build_page_data",
           "check_same_data", "expand"]

FORMAT = 1
GENERATOR = "hardneg browse"
SCORE_SCALE = 10000
# Query flags (per set): a query whose rows have any of these.
FLAG_SHORT, FLAG_AUDIT, FLAG_KNOWN_FN, FLAG_LEAK = 1, 2, 4, 8
FLAGS = {"short": FLAG_SHORT, "audit": FLAG_AUDIT, "known_fn": FLAG_KNOWN_FN, "leak": FLAG_LEAK}
REMOVED_PER_ROW = 10
# The page is built for this many rows; beyond it, `hardneg browse` warns and suggests --limit.
ROWS_SOFT_LIMIT = 250_000


def _scaled(v: Any) -> int | None:
    if v is None or isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return int(round(float(v) * SCORE_SCALE))


class _SetRows:
    """One mined set's entry of ``sets`` (layout: module docstring), filled row by row over the shown rows."""

    def __init__(self, s: MinedInput, n_rows: int, n_queries: int, docs: Docs, marker: Marker,
                 audit: Mapping[tuple[str, str], dict]) -> None:
        self.s, self.docs, self.marker, self.audit = s, docs, marker, audit
        self.teachers: list[str] = [s.teacher] if s.teacher else []
        self.t_index: dict[str, int] = {s.teacher: 0} if s.teacher else {}
        self.neg: dict[str, list] = {k: [] for k in ("nn", "doc", "score", "rank", "teacher", "badge_at", "badge",
                                                     "tip_at", "tip")}
        self.pos_score: list[int | None] = []
        self.n_req = s.n if s.n is not None else max((len(r.get("neg", ())) for r in s.rows), default=0)
        self.qflag = [0] * n_queries
        self.pos_vals: list[float] = []
        self.top1_vals: list[float] = []
        self.diffs: list[float] = []
        self.counts = {"rows": n_rows, "short": 0, "empty": 0, "negatives": 0, "top1_above_pos": 0,
                       "positive": 0, "duplicate": 0, "trap": 0, "hidden": 0, "audit": 0, "pad": 0}

    def add_row(self, qi: int, q: str, r: dict) -> None:
        """Row ``r`` of query ``q`` (index ``qi`` among the shown queries)."""
        negs = r.get("neg", [])
        ps = r["pos"].get("score")
        self.pos_score.append(_scaled(ps))
        self.neg["nn"].append(len(negs))
        real = 0
        for d in negs:
            self._add_negative(qi, q, d)
            if not d.get("pad"):
                real += 1
        self.counts["negatives"] += real
        if real < self.n_req:
            self.counts["short"] += 1
            self.qflag[qi] |= FLAG_SHORT
        if real == 0:
            self.counts["empty"] += 1
        if isinstance(ps, (int, float)) and math.isfinite(ps):
            self._add_chart_values(float(ps), negs)

    def _add_negative(self, qi: int, q: str, d: dict) -> None:
        fi = len(self.neg["doc"])
        self.neg["doc"].append(self.docs.add(str(d["docid"]), d["text"]))
        self.neg["score"].append(_scaled(d.get("score")))
        rk = d.get("rank")
        self.neg["rank"].append(-1 if rk is None or d.get("pad") else int(rk))
        self.neg["teacher"].append(self._teacher(d.get("teacher")))
        codes, note = self.marker.mark(q, d, self.audit)
        if codes:
            self.neg["badge_at"].append(fi)
            self.neg["badge"].append(codes)
            self._count_badges(qi, {self.marker.badges.table[c]["kind"] for c in codes})
        if note:
            self.neg["tip_at"].append(fi)
            self.neg["tip"].append(note)

    def _teacher(self, t: Any) -> int:
        """Index of a negative's own teacher in the set's ``teachers`` (0 when it names none)."""
        if t is None:
            return 0
        t = str(t)
        if t not in self.t_index:
            self.t_index[t] = len(self.teachers)
            self.teachers.append(t)
        return self.t_index[t]

    def _count_badges(self, qi: int, kinds: set[str]) -> None:
        for kind in kinds:
            self.counts[kind] += 1
        if kinds & {"trap", "hidden"}:
            self.qflag[qi] |= FLAG_KNOWN_FN
        if kinds & {"positive", "duplicate"}:
            self.qflag[qi] |= FLAG_LEAK
        if "audit" in kinds:
            self.qflag[qi] |= FLAG_AUDIT

    def _add_chart_values(self, ps: float, negs: list[dict]) -> None:
        self.pos_vals.append(ps)
        first_neg = next((d for d in negs if not d.get("pad")), None)
        s1 = None if first_neg is None else first_neg.get("score")
        if isinstance(s1, (int, float)) and math.isfinite(s1):
            self.top1_vals.append(float(s1))
            self.diffs.append(ps - float(s1))
            if s1 > ps:
                self.counts["top1_above_pos"] += 1

    def entry(self, removed_note: str | None) -> dict[str, Any]:
        s, multi = self.s, len(self.teachers) > 1
        return {
            "name": s.name, "source": s.source, "teacher": s.teacher or (self.teachers[0] if self.teachers else None),
            "teachers": self.teachers, "n": self.n_req, "strategy": s.strategy, "dataset": s.dataset,
            "run": _run_stats(s.stats), "summary": self.counts | {
                "pos_q50": quantile(sorted(self.pos_vals), 0.5), "top1_q50": quantile(sorted(self.top1_vals), 0.5),
                "diff_q50": quantile(sorted(self.diffs), 0.5)},
            "pos_score": self.pos_score,
            "neg": self.neg | {"teacher": self.neg["teacher"] if multi else None},
            "qflag": self.qflag, "removed": None, "removed_note": removed_note,
        }


def _shown_queries(keys: list[tuple[str, str, int]], limit: int | None) -> tuple[list[str], dict[str, list[int]]]:
    """Queries in the first set's order (the first ``limit``), and per query its rows' indices there."""
    q_order: list[str] = []
    q_rows: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        if k[0] not in q_rows:
            q_order.append(k[0])
            q_rows[k[0]] = []
        q_rows[k[0]].append(i)
    return (q_order if limit is None else q_order[:limit]), q_rows


def build_page_data(sets: Sequence[MinedInput], extras: Extras | None = None, *, limit: int | None = None,
                    title: str | None = None) -> dict[str, Any]:
    """The JSON object the page embeds (layout: module docstring). Raises HardnegError on sets of different data."""
    extras = extras or Extras()
    check_same_data(sets)
    if limit is not None and limit < 1:
        raise HardnegError(f"--limit must be at least 1, got {limit}", fix="pass the number of queries to keep")
    first = sets[0]
    keys0 = row_keys(first.rows)
    q_order, q_rows = _shown_queries(keys0, limit)
    order = [i for q in q_order for i in q_rows[q]]
    shown = [keys0[i] for i in order]
    qtext = {str(r["qid"]): r["query"] for r in first.rows}
    docs, badges = Docs(), Badges()
    pos_docs = [docs.add(k[1], first.rows[i]["pos"]["text"]) for k, i in zip(shown, order)]
    marker = Marker(sets, keys0, q_order, extras, badges)
    q_index = {q: i for i, q in enumerate(q_order)}
    out_sets, chart_vals = [], []
    for si, s in enumerate(sets):
        by_key = dict(zip(row_keys(s.rows), s.rows))
        audit = (extras.audit[si] if isinstance(extras.audit, list) else extras.audit) or {}
        rows = _SetRows(s, len(shown), len(q_order), docs, marker, audit)
        for k in shown:
            rows.add_row(q_index[k[0]], k[0], by_key[k])
        entry = rows.entry((extras.removed_notes or [None] * len(sets))[si])
        rem = (extras.removed or [None] * len(sets))[si]
        if rem is not None:
            entry["removed"] = _removed_arrays(rem, shown, docs)
        out_sets.append(entry)
        chart_vals.append((rows.pos_vals, rows.top1_vals, rows.diffs))
    known = marker.known(q_order, docs)
    starts = [0]
    for q in q_order:
        starts.append(starts[-1] + len(q_rows[q]))
    return {
        "format": FORMAT, "generator": GENERATOR, "title": title or _title(sets),
        "score_scale": SCORE_SCALE, "flags": FLAGS,
        "limit": {"queries": limit, "queries_total": len(q_rows), "rows_total": len(keys0),
                  "queries_shown": len(q_order), "rows_shown": len(shown), "rows_soft_limit": ROWS_SOFT_LIMIT},
        "sources": extras.sources,
        "docs": {"ids": docs.ids, "text": docs.text},
        "queries": {"ids": q_order, "text": [qtext[q] for q in q_order], "start": starts},
        "rows": {"pos": pos_docs},
        "sets": out_sets, "badges": badges.table, "known": known, "charts": charts(chart_vals),
    }


def _title(sets: Sequence[MinedInput]) -> str:
    ds = next((s.dataset for s in sets if s.dataset), None)
    return f"hardneg browse: {ds}" if ds else "hardneg browse"


def _run_stats(stats: dict | None) -> dict | None:
    """The parts of a set's stats.json the page shows (counts of the whole run, before --limit)."""
    if not stats:
        return None
    keep = ("rows", "rows_short", "rows_empty", "n_requested", "removed_by_filter", "removed_per_row",
            "top1_neg_above_pos", "traps", "method", "teachers", "duplicate_negatives")
    out = {k: stats[k] for k in keep if k in stats}
    if isinstance(out.get("traps"), dict):  # trap rates: scalars only
        out["traps"] = {k: v for k, v in out["traps"].items() if isinstance(v, (int, float, type(None)))}
    return out


def _removed_arrays(rem: Mapping[tuple[str, str], list[tuple[str, float | None, int, str]]],
                    row_keys: list[tuple[str, str, int]], docs: Docs) -> dict[str, list]:
    """Removed candidates per row (first occurrence of each (query, positive)) as flat arrays."""
    out: dict[str, list] = {"row": [], "doc": [], "score": [], "rank": [], "filter": [], "filters": []}
    f_index: dict[str, int] = {}
    for ri, k in enumerate(row_keys):
        if k[2] != 0:
            continue
        for did, text, sc, rk, filt in rem.get((k[0], k[1]), ())[:REMOVED_PER_ROW]:
            if filt not in f_index:
                f_index[filt] = len(out["filters"])
                out["filters"].append(filt)
            out["row"].append(ri)
            out["doc"].append(docs.add(did, text))
            out["score"].append(_scaled(sc))
            out["rank"].append(int(rk))
            out["filter"].append(f_index[filt])
    return out
