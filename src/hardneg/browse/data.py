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
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hardneg.errors import HardnegError

FORMAT = 1
GENERATOR = "hardneg browse"
SCORE_SCALE = 10000
BINS = 40
# Query flags (per set): a query whose rows have any of these.
FLAG_SHORT, FLAG_AUDIT, FLAG_KNOWN_FN, FLAG_LEAK = 1, 2, 4, 8
FLAGS = {"short": FLAG_SHORT, "audit": FLAG_AUDIT, "known_fn": FLAG_KNOWN_FN, "leak": FLAG_LEAK}
REMOVED_PER_ROW = 10
# The page is built for this many rows; beyond it, `hardneg browse` warns and suggests --limit.
ROWS_SOFT_LIMIT = 250_000

_WS = re.compile(r"\s+")


@dataclass
class MinedInput:
    """One mined set as read: its rows (the project format) and what is known about how it was mined."""

    name: str
    rows: list[dict]
    source: str = ""
    teacher: str | None = None
    n: int | None = None
    strategy: str | None = None
    stats: dict | None = None
    dataset: str | None = None       # "name/split" from the mine summary, when known
    path: Path | None = None
    mine_config: dict | None = None


@dataclass
class Extras:
    """What is known about the data beyond the mined rows (all optional)."""

    positives: Mapping[str, Sequence[str]] | None = None   # qid -> labelled positives (qrels)
    doc_text: Mapping[str, str] | None = None                # docid -> text, for documents not in the rows
    traps: Mapping[str, Mapping[str, str]] | None = None     # qid -> {injected docid: note (transform, source)}
    hidden: Mapping[str, Mapping[str, Any]] | None = None    # qid -> {docid: grade}
    # (qid, docid) -> {"reasons": [...], "scores": {...}}: one mapping for every set, or a list (one per set)
    audit: Mapping[tuple[str, str], dict] | list[Mapping[tuple[str, str], dict]] | None = None
    removed: list[Mapping[tuple[str, str], list[tuple[str, float | None, int, str]]] | None] | None = None
    removed_notes: list[str | None] | None = None
    sources: dict[str, Any] = field(default_factory=dict)    # paths and counts shown in the header


def _norm(text: str) -> str:
    return _WS.sub(" ", text).strip().casefold()


def _scaled(v: Any) -> int | None:
    if v is None or isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return int(round(float(v) * SCORE_SCALE))


def _same_data_error(a: MinedInput, b: MinedInput, what: str) -> HardnegError:
    return HardnegError(f"{b.name} and {a.name} are mined sets of different data: {what}",
                        where=b.source or b.name,
                        fix="browse together only mined sets of one dataset and split (e.g. the strategy folders of "
                            "one `hardneg mine --out`), or make one page per dataset")


def _row_keys(rows: list[dict]) -> list[tuple[str, str, int]]:
    """(qid, positive docid, occurrence) per row: a hand-made file may repeat a (query, positive) pair."""
    seen: dict[tuple[str, str], int] = {}
    keys = []
    for r in rows:
        k = (str(r["qid"]), str(r["pos"]["docid"]))
        seen[k] = seen.get(k, 0) + 1
        keys.append((*k, seen[k] - 1))
    return keys


def check_same_data(sets: Sequence[MinedInput]) -> None:
    """Raise HardnegError unless every set has the same (query, positive) rows with the same texts."""
    if not sets:
        raise HardnegError("no mined set given", fix="pass mined.jsonl files or `hardneg mine --out` folders")
    first = sets[0]
    for s in sets[1:]:
        if first.dataset and s.dataset and first.dataset != s.dataset:
            raise _same_data_error(first, s, f"mined from {s.dataset} and {first.dataset}")
    qtext: dict[str, tuple[str, MinedInput]] = {}
    dtext: dict[str, tuple[str, MinedInput]] = {}
    base = set(_row_keys(first.rows))
    for s in sets:
        keys = _row_keys(s.rows)
        if s is not first:
            ks = set(keys)
            extra, missing = ks - base, base - ks
            if extra or missing:
                k = min(extra) if extra else min(missing)
                what = (f"{len(extra)} (query, positive) rows are only in {s.name}" if extra
                        else f"{len(missing)} (query, positive) rows of {first.name} are not in {s.name}")
                raise _same_data_error(first, s, f"{what} (e.g. query {k[0]}, positive {k[1]})")
        for r in s.rows:
            q = str(r["qid"])
            old = qtext.setdefault(q, (r["query"], s))
            if old[0] != r["query"]:
                raise _same_data_error(old[1], s, f"query {q} has different texts")
            for d in (r["pos"], *r.get("neg", ())):
                did = str(d["docid"])
                old = dtext.setdefault(did, (d["text"], s))
                if old[0] != d["text"]:
                    raise _same_data_error(old[1], s, f"document {did} has different texts")


class _Docs:
    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.ids: list[str] = []
        self.text: list[str] = []

    def add(self, docid: str, text: str) -> int:
        i = self.index.get(docid)
        if i is None:
            i = self.index[docid] = len(self.ids)
            self.ids.append(docid)
            self.text.append(text)
        return i


class _Badges:
    def __init__(self) -> None:
        self.index: dict[tuple[str, str], int] = {}
        self.table: list[dict[str, str]] = []

    def code(self, kind: str, label: str) -> int:
        k = (kind, label)
        if k not in self.index:
            self.index[k] = len(self.table)
            self.table.append({"kind": kind, "label": label})
        return self.index[k]


def _grade(g: Any) -> str:
    return str(int(g)) if isinstance(g, (int, float)) and not isinstance(g, bool) and float(g).is_integer() else str(g)


def _hist(values: list[float], edges: list[float]) -> list[int]:
    counts = [0] * (len(edges) - 1)
    if not counts:
        return counts
    lo, hi = edges[0], edges[-1]
    width = (hi - lo) / len(counts) or 1.0
    for v in values:
        i = int((v - lo) / width)
        counts[min(max(i, 0), len(counts) - 1)] += 1
    return counts


def _edges(values: list[float], *, symmetric: bool = False) -> list[float]:
    if not values:
        return [0.0, 1.0]
    lo, hi = min(values), max(values)
    if symmetric:
        m = max(abs(lo), abs(hi)) or 1.0
        lo, hi = -m, m
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    pad = (hi - lo) * 0.01
    lo, hi = lo - (0 if symmetric else pad), hi + (0 if symmetric else pad)
    step = (hi - lo) / BINS
    return [round(lo + i * step, 6) for i in range(BINS + 1)]


def _quantile(sorted_vals: list[float], q: float) -> float | None:
    if not sorted_vals:
        return None
    pos = q * (len(sorted_vals) - 1)
    i = int(pos)
    j = min(i + 1, len(sorted_vals) - 1)
    return round(sorted_vals[i] + (sorted_vals[j] - sorted_vals[i]) * (pos - i), 6)


def build_page_data(sets: Sequence[MinedInput], extras: Extras | None = None, *, limit: int | None = None,
                    title: str | None = None) -> dict[str, Any]:
    """The JSON object the page embeds (layout: module docstring). Raises HardnegError on sets of different data."""
    extras = extras or Extras()
    check_same_data(sets)
    if limit is not None and limit < 1:
        raise HardnegError(f"--limit must be at least 1, got {limit}", fix="pass the number of queries to keep")
    first = sets[0]
    keys0 = _row_keys(first.rows)
    # Queries in the first set's order; rows grouped by query, in their order there.
    q_order: list[str] = []
    q_rows: dict[str, list[int]] = {}
    for i, k in enumerate(keys0):
        if k[0] not in q_rows:
            q_order.append(k[0])
            q_rows[k[0]] = []
        q_rows[k[0]].append(i)
    queries_total, rows_total = len(q_order), len(keys0)
    if limit is not None:
        q_order = q_order[:limit]
    order = [i for q in q_order for i in q_rows[q]]
    row_keys = [keys0[i] for i in order]
    qtext = {str(r["qid"]): r["query"] for r in first.rows}

    docs = _Docs()
    badges = _Badges()
    pos_docs = [docs.add(k[1], first.rows[i]["pos"]["text"]) for k, i in zip(row_keys, order)]

    # The positives of each query and their normalised texts (leak / duplicate detection).
    positives: dict[str, set[str]] = {}
    for k in keys0:
        positives.setdefault(k[0], set()).add(k[1])
    if extras.positives:
        for q, ds in extras.positives.items():
            positives.setdefault(str(q), set()).update(str(d) for d in ds)
    row_text: dict[str, str] = {}
    for s in sets:
        for r in s.rows:
            row_text.setdefault(str(r["pos"]["docid"]), r["pos"]["text"])
            for d in r.get("neg", ()):
                row_text.setdefault(str(d["docid"]), d["text"])
    corpus_text = extras.doc_text or {}

    def text_of(did: str) -> str | None:
        t = row_text.get(did)
        return corpus_text.get(did) if t is None else t

    normed: dict[str, str] = {}  # docid -> normalised text (each document once: texts repeat across rows)

    def norm_of(did: str, text: str) -> str:
        v = normed.get(did)
        if v is None:
            v = normed[did] = _norm(text)
        return v

    pos_text: dict[str, set[str]] = {}
    for q in q_order:
        pos_text[q] = {norm_of(d, t) for d in positives.get(q, ()) if (t := text_of(d)) is not None}

    traps = extras.traps or {}
    hidden = extras.hidden or {}
    code_pos = badges.code("positive", "labelled positive")
    code_dup = badges.code("duplicate", "same text as a positive")
    code_pad = badges.code("pad", "random padding")

    def neg_badges(q: str, d: dict, audit: Mapping[tuple[str, str], dict]) -> tuple[list[int], str | None]:
        did = str(d["docid"])
        codes, tips = [], []
        if d.get("pad"):
            codes.append(code_pad)
        if did in positives.get(q, ()):
            codes.append(code_pos)
        elif norm_of(did, d["text"]) in pos_text.get(q, ()):
            codes.append(code_dup)
        if did in traps.get(q, {}):
            note = traps[q][did]
            codes.append(badges.code("trap", "injected trap" + (f" ({note})" if note else "")))
        if did in hidden.get(q, {}):
            codes.append(badges.code("hidden", f"hidden positive (grade {_grade(hidden[q][did])})"))
        a = audit.get((q, did))
        if a:
            codes.extend(badges.code("audit", str(reason)) for reason in a.get("reasons", ()))
            sc = a.get("scores") or {}
            if sc:
                tips.append("audit: " + ", ".join(f"{k}={_fmt(v)}" for k, v in sc.items()))
        return codes, ("; ".join(tips) or None)

    q_index = {q: i for i, q in enumerate(q_order)}
    row_q = [q_index[k[0]] for k in row_keys]
    out_sets = []
    chart_vals: list[tuple[list[float], list[float]]] = []
    for si, s in enumerate(sets):
        by_key = dict(zip(_row_keys(s.rows), s.rows))
        audit = (extras.audit[si] if isinstance(extras.audit, list) else extras.audit) or {}
        teachers: list[str] = []
        t_index: dict[str, int] = {}
        if s.teacher:
            t_index[s.teacher] = 0
            teachers.append(s.teacher)
        nn, doc, score, rank, teacher = [], [], [], [], []
        badge_at, badge, tip_at, tip = [], [], [], []
        pos_score = []
        n_req = s.n if s.n is not None else max((len(r.get("neg", ())) for r in s.rows), default=0)
        qflag = [0] * len(q_order)
        pos_vals, top1_vals, diffs = [], [], []
        counts = {"rows": len(row_keys), "short": 0, "empty": 0, "negatives": 0, "top1_above_pos": 0,
                  "positive": 0, "duplicate": 0, "trap": 0, "hidden": 0, "audit": 0, "pad": 0}
        for ri, k in enumerate(row_keys):
            r = by_key[k]
            q = k[0]
            negs = r.get("neg", [])
            ps = r["pos"].get("score")
            pos_score.append(_scaled(ps))
            nn.append(len(negs))
            real = 0
            for d in negs:
                fi = len(doc)
                doc.append(docs.add(str(d["docid"]), d["text"]))
                score.append(_scaled(d.get("score")))
                rk = d.get("rank")
                rank.append(-1 if rk is None or d.get("pad") else int(rk))
                t = d.get("teacher")
                if t is not None:
                    t = str(t)
                    if t not in t_index:
                        t_index[t] = len(teachers)
                        teachers.append(t)
                teacher.append(t_index[t] if t is not None else 0)
                codes, note = neg_badges(q, d, audit)
                if codes:
                    badge_at.append(fi)
                    badge.append(codes)
                    kinds = {badges.table[c]["kind"] for c in codes}
                    for kind in kinds:
                        counts[kind] += 1
                    if kinds & {"trap", "hidden"}:
                        qflag[row_q[ri]] |= FLAG_KNOWN_FN
                    if kinds & {"positive", "duplicate"}:
                        qflag[row_q[ri]] |= FLAG_LEAK
                    if "audit" in kinds:
                        qflag[row_q[ri]] |= FLAG_AUDIT
                if note:
                    tip_at.append(fi)
                    tip.append(note)
                if not d.get("pad"):
                    real += 1
            counts["negatives"] += real
            if real < n_req:
                counts["short"] += 1
                qflag[row_q[ri]] |= FLAG_SHORT
            if real == 0:
                counts["empty"] += 1
            if isinstance(ps, (int, float)) and math.isfinite(ps):
                pos_vals.append(float(ps))
                first_neg = next((d for d in negs if not d.get("pad")), None)
                s1 = None if first_neg is None else first_neg.get("score")
                if isinstance(s1, (int, float)) and math.isfinite(s1):
                    top1_vals.append(float(s1))
                    diffs.append(float(ps) - float(s1))
                    if s1 > ps:
                        counts["top1_above_pos"] += 1
        multi = len(teachers) > 1
        entry: dict[str, Any] = {
            "name": s.name, "source": s.source, "teacher": s.teacher or (teachers[0] if teachers else None),
            "teachers": teachers, "n": n_req, "strategy": s.strategy, "dataset": s.dataset,
            "run": _run_stats(s.stats), "summary": counts | {
                "pos_q50": _quantile(sorted(pos_vals), 0.5), "top1_q50": _quantile(sorted(top1_vals), 0.5),
                "diff_q50": _quantile(sorted(diffs), 0.5)},
            "pos_score": pos_score,
            "neg": {"nn": nn, "doc": doc, "score": score, "rank": rank, "teacher": teacher if multi else None,
                    "badge_at": badge_at, "badge": badge, "tip_at": tip_at, "tip": tip},
            "qflag": qflag, "removed": None,
            "removed_note": (extras.removed_notes or [None] * len(sets))[si],
        }
        rem = (extras.removed or [None] * len(sets))[si]
        if rem is not None:
            entry["removed"] = _removed_arrays(rem, row_keys, docs)
        out_sets.append(entry)
        chart_vals.append((pos_vals, top1_vals, diffs))

    # Known false negatives of each shown query (traps and hidden positives), mined or not.
    known = {"q": [], "doc": [], "badge": []}
    for qi, q in enumerate(q_order):
        for did, note in sorted(traps.get(q, {}).items()):
            known["q"].append(qi)
            known["doc"].append(docs.add(did, text_of(did) or ""))
            known["badge"].append(badges.code("trap", "injected trap" + (f" ({note})" if note else "")))
        for did, g in sorted(hidden.get(q, {}).items()):
            known["q"].append(qi)
            known["doc"].append(docs.add(did, text_of(did) or ""))
            known["badge"].append(badges.code("hidden", f"hidden positive (grade {_grade(g)})"))

    score_vals = [v for pv, tv, _ in chart_vals for v in (*pv, *tv)]
    edges = _edges(score_vals)
    diff_edges = _edges([v for _, _, dv in chart_vals for v in dv], symmetric=True)
    charts = {"edges": edges, "diff_edges": diff_edges,
              "sets": [{"pos": _hist(pv, edges), "top1": _hist(tv, edges), "diff": _hist(dv, diff_edges)}
                       for pv, tv, dv in chart_vals]}
    starts, acc = [], 0
    for q in q_order:
        starts.append(acc)
        acc += len(q_rows[q])
    starts.append(acc)
    return {
        "format": FORMAT, "generator": GENERATOR, "title": title or _title(sets),
        "score_scale": SCORE_SCALE, "flags": FLAGS,
        "limit": {"queries": limit, "queries_total": queries_total, "rows_total": rows_total,
                  "queries_shown": len(q_order), "rows_shown": len(row_keys), "rows_soft_limit": ROWS_SOFT_LIMIT},
        "sources": extras.sources,
        "docs": {"ids": docs.ids, "text": docs.text},
        "queries": {"ids": q_order, "text": [qtext[q] for q in q_order], "start": starts},
        "rows": {"pos": pos_docs},
        "sets": out_sets, "badges": badges.table, "known": known, "charts": charts,
    }


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


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
                    row_keys: list[tuple[str, str, int]], docs: _Docs) -> dict[str, list]:
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


# -- reading the embedded data back (tests, and anyone checking a page) ----------------------------------------

def expand(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The embedded data as plain nested values: per query ``{"qid", "query", "rows": [{"pos", "pos_text",
    "sets": {name: {"pos_score", "neg": [{"docid", "score", "rank", "teacher", "badges": [(kind, label)],
    "tip"}], "removed": [...]}}}], "known": [(docid, kind, label)], "flags": {name: [flag names]}}``."""
    ids, scale = data["docs"]["ids"], data["score_scale"]
    table = data["badges"]
    unscale = lambda v: None if v is None else v / scale  # noqa: E731
    per_set = []
    for s in data["sets"]:
        neg = s["neg"]
        offs = [0]
        for c in neg["nn"]:
            offs.append(offs[-1] + c)
        bmap = dict(zip(neg["badge_at"], neg["badge"]))
        tmap = dict(zip(neg["tip_at"], neg["tip"]))
        rem: dict[int, list] = {}
        if s["removed"]:
            r = s["removed"]
            for row, d, sc, rk, f in zip(r["row"], r["doc"], r["score"], r["rank"], r["filter"]):
                rem.setdefault(row, []).append({"docid": ids[d], "score": unscale(sc), "rank": rk,
                                                "filter": r["filters"][f]})
        per_set.append((s, offs, bmap, tmap, rem))
    known: dict[int, list] = {}
    for q, d, b in zip(data["known"]["q"], data["known"]["doc"], data["known"]["badge"]):
        known.setdefault(q, []).append((ids[d], table[b]["kind"], table[b]["label"]))
    out = []
    qs = data["queries"]
    for qi, qid in enumerate(qs["ids"]):
        rows = []
        for ri in range(qs["start"][qi], qs["start"][qi + 1]):
            sets = {}
            for s, offs, bmap, tmap, rem in per_set:
                negs = []
                for fi in range(offs[ri], offs[ri + 1]):
                    t = s["neg"]["teacher"]
                    negs.append({"docid": ids[s["neg"]["doc"][fi]], "score": unscale(s["neg"]["score"][fi]),
                                 "rank": s["neg"]["rank"][fi],
                                 "teacher": s["teachers"][t[fi]] if t else s["teacher"],
                                 "badges": [(table[c]["kind"], table[c]["label"]) for c in bmap.get(fi, ())],
                                 "tip": tmap.get(fi)})
                sets[s["name"]] = {"pos_score": unscale(s["pos_score"][ri]), "neg": negs,
                                   "removed": rem.get(ri, [])}
            p = data["rows"]["pos"][ri]
            rows.append({"pos": ids[p], "pos_text": data["docs"]["text"][p], "sets": sets})
        flags = {s["name"]: [name for name, bit in data["flags"].items() if s["qflag"][qi] & bit]
                 for s in data["sets"]}
        out.append({"qid": qid, "query": qs["text"][qi], "rows": rows, "known": known.get(qi, []),
                    "flags": flags})
    return out
