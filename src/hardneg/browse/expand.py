"""Reading a browse page's embedded data back as plain nested values (tests, and anyone checking a page)."""
from __future__ import annotations

from typing import Any


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
