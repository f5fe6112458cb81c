"""What a browse page is built from: mined sets as read (``MinedInput``), what else is known about their data
(``Extras``), and the rule that one page shows sets of the same data (``check_same_data``)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hardneg.errors import HardnegError


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


def _same_data_error(a: MinedInput, b: MinedInput, what: str) -> HardnegError:
    return HardnegError(f"{b.name} and {a.name} are mined sets of different data: {what}",
                        where=b.source or b.name,
                        fix="browse together only mined sets of one dataset and split (e.g. the strategy folders of "
                            "one `hardneg mine --out`), or make one page per dataset")


def row_keys(rows: list[dict]) -> list[tuple[str, str, int]]:
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
    base = set(row_keys(first.rows))
    for s in sets:
        keys = row_keys(s.rows)
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
