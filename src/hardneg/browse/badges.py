"""The tables a browse page indexes into (``Docs``: every text once; ``Badges``: badge kinds and labels) and
``Marker``, which knows the data around the mined rows (labelled positives and their texts, injected traps,
hidden positives) and gives each negative its badges and hover note."""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from hardneg.browse.sets import Extras, MinedInput

_WS = re.compile(r"\s+")


class Docs:
    """Every document shown, once, in first-appearance order: docid -> index into ``ids`` / ``text``."""

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


class Badges:
    """The badge table, each (kind, label) once: its code is the index."""

    def __init__(self) -> None:
        self.index: dict[tuple[str, str], int] = {}
        self.table: list[dict[str, str]] = []

    def code(self, kind: str, label: str) -> int:
        k = (kind, label)
        if k not in self.index:
            self.index[k] = len(self.table)
            self.table.append({"kind": kind, "label": label})
        return self.index[k]


def _norm(text: str) -> str:
    return _WS.sub(" ", text).strip().casefold()


def _grade(g: Any) -> str:
    return str(int(g)) if isinstance(g, (int, float)) and not isinstance(g, bool) and float(g).is_integer() else str(g)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


class Marker:
    """Badges of the negatives of the shown queries: ``positive``, ``duplicate``, ``trap``, ``hidden``, ``audit``,
    ``pad`` (kinds: ``hardneg.browse.data``'s docstring)."""

    def __init__(self, sets: Sequence[MinedInput], keys: list[tuple[str, str, int]], q_order: list[str],
                 extras: Extras, badges: Badges) -> None:
        self.badges = badges
        # The positives of each query and their normalised texts (leak / duplicate detection).
        self.positives: dict[str, set[str]] = {}
        for k in keys:
            self.positives.setdefault(k[0], set()).add(k[1])
        if extras.positives:
            for q, ds in extras.positives.items():
                self.positives.setdefault(str(q), set()).update(str(d) for d in ds)
        self.row_text: dict[str, str] = {}
        for s in sets:
            for r in s.rows:
                self.row_text.setdefault(str(r["pos"]["docid"]), r["pos"]["text"])
                for d in r.get("neg", ()):
                    self.row_text.setdefault(str(d["docid"]), d["text"])
        self.corpus_text = extras.doc_text or {}
        self.normed: dict[str, str] = {}  # docid -> normalised text (each document once: texts repeat across rows)
        self.pos_text = {q: {self.norm_of(d, t) for d in self.positives.get(q, ())
                             if (t := self.text_of(d)) is not None} for q in q_order}
        self.traps = extras.traps or {}
        self.hidden = extras.hidden or {}
        self.code_pos = badges.code("positive", "labelled positive")
        self.code_dup = badges.code("duplicate", "same text as a positive")
        self.code_pad = badges.code("pad", "random padding")

    def text_of(self, did: str) -> str | None:
        """A document's text: as in the mined rows, else the corpus's (``Extras.doc_text``), else None."""
        t = self.row_text.get(did)
        return self.corpus_text.get(did) if t is None else t

    def norm_of(self, did: str, text: str) -> str:
        v = self.normed.get(did)
        if v is None:
            v = self.normed[did] = _norm(text)
        return v

    def trap_code(self, note: str) -> int:
        return self.badges.code("trap", "injected trap" + (f" ({note})" if note else ""))

    def hidden_code(self, grade: Any) -> int:
        return self.badges.code("hidden", f"hidden positive (grade {_grade(grade)})")

    def mark(self, q: str, d: dict, audit: Mapping[tuple[str, str], dict]) -> tuple[list[int], str | None]:
        """The badge codes of negative ``d`` of query ``q`` and its hover note (audit scores) or None."""
        did = str(d["docid"])
        codes, tips = [], []
        if d.get("pad"):
            codes.append(self.code_pad)
        if did in self.positives.get(q, ()):
            codes.append(self.code_pos)
        elif self.norm_of(did, d["text"]) in self.pos_text.get(q, ()):
            codes.append(self.code_dup)
        if did in self.traps.get(q, {}):
            codes.append(self.trap_code(self.traps[q][did]))
        if did in self.hidden.get(q, {}):
            codes.append(self.hidden_code(self.hidden[q][did]))
        a = audit.get((q, did))
        if a:
            codes.extend(self.badges.code("audit", str(reason)) for reason in a.get("reasons", ()))
            sc = a.get("scores") or {}
            if sc:
                tips.append("audit: " + ", ".join(f"{k}={_fmt(v)}" for k, v in sc.items()))
        return codes, ("; ".join(tips) or None)

    def known(self, q_order: list[str], docs: Docs) -> dict[str, list[int]]:
        """Known false negatives of each shown query (traps and hidden positives), mined or not."""
        known: dict[str, list[int]] = {"q": [], "doc": [], "badge": []}
        for qi, q in enumerate(q_order):
            for did, note in sorted(self.traps.get(q, {}).items()):
                known["q"].append(qi)
                known["doc"].append(docs.add(did, self.text_of(did) or ""))
                known["badge"].append(self.trap_code(note))
            for did, g in sorted(self.hidden.get(q, {}).items()):
                known["q"].append(qi)
                known["doc"].append(docs.add(did, self.text_of(did) or ""))
                known["badge"].append(self.hidden_code(g))
        return known
