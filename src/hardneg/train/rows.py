"""Mined rows -> the fixed-width training columns ``anchor, positive, negative_1..n`` (no torch needed).

Rows short of ``n`` negatives are dropped or padded (``short_rows``), longer ones cut to their first ``n``; the
counts go to ``train_config.json``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hardneg.errors import HardnegError


@dataclass(frozen=True)
class PreparedRows:
    """Training columns plus what the short-row policy did."""

    columns: dict[str, list[str]]  # anchor, positive, negative_1..n -> texts, one entry per kept row
    n_negatives: int
    n_rows_in: int
    n_rows_used: int
    n_rows_dropped: int  # short rows removed (policy "drop")
    n_rows_padded: int  # short rows filled (policy "pad")
    n_pad_negatives: int  # negatives added by padding, in total
    n_rows_truncated: int  # rows with more than n negatives, cut to their first n
    ids: tuple = ()  # per kept row (qid, positive docid, negative docids...): mask_false_negatives=id

    def stats(self) -> dict[str, int]:
        """The counters, for train_config.json."""
        return {"n_negatives": self.n_negatives, "rows_in": self.n_rows_in, "rows_used": self.n_rows_used,
                "rows_dropped": self.n_rows_dropped, "rows_padded": self.n_rows_padded,
                "pad_negatives": self.n_pad_negatives, "rows_truncated": self.n_rows_truncated}


def _row_error(i: int, what: str, where: str) -> HardnegError:
    return HardnegError(f"row {i + 1}: {what}", where=where, line=i + 1,
                        fix='each row needs {"qid": str, "query": str, "pos": {"docid", "text"}, '
                            '"neg": [{"docid", "text"}, ...]} (the mined.jsonl format)')


def validate_rows(rows: Sequence[dict[str, Any]], where: str = "training rows") -> None:
    """Every row in the mined.jsonl shape (qid, query, pos {docid, text}, neg [{docid, text}]), else the first
    bad row's one-line error."""
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise _row_error(i, f"expected an object, got {type(row).__name__}", where)
        if not isinstance(row.get("qid"), str) or not isinstance(row.get("query"), str):
            raise _row_error(i, "missing or non-string 'qid'/'query'", where)
        pos = row.get("pos")
        if not isinstance(pos, dict) or not isinstance(pos.get("text"), str) or not isinstance(pos.get("docid"), str):
            raise _row_error(i, "missing or malformed 'pos' (needs string 'docid' and 'text')", where)
        negs = row.get("neg", [])
        if not isinstance(negs, list) or not all(
                isinstance(n, dict) and isinstance(n.get("text"), str) and isinstance(n.get("docid"), str)
                for n in negs):
            raise _row_error(i, "malformed 'neg' (needs a list of objects with string 'docid' and 'text')", where)


def resolve_n_negatives(rows: Sequence[dict[str, Any]], n_negatives: int | None) -> int:
    """The column count: the configured n, or the largest negative count of any row."""
    if n_negatives is not None:
        return n_negatives
    return max((len(r.get("neg", [])) for r in rows), default=0)


def prepare_rows(rows: Sequence[dict[str, Any]], n_negatives: int, short_rows: str, seed: int,
                 *, where: str = "training rows") -> PreparedRows:
    """Give every row exactly ``n_negatives`` negatives: drop or pad short rows, cut long ones to their first n.

    Padding draws, with ``numpy.random.default_rng(seed)``, from the distinct negatives (by docid) of all rows,
    excluding the row's own positive and negatives and every positive of the same qid.
    """
    validate_rows(rows, where)
    if short_rows not in ("drop", "pad"):
        raise HardnegError(f"unknown short_rows policy {short_rows!r}", where=where, fix="use 'drop' or 'pad'")
    n = n_negatives
    pool_ids: list[str] = []
    pool_text: dict[str, str] = {}
    positives_of: dict[str, set[str]] = {}
    if short_rows == "pad":
        for r in rows:
            positives_of.setdefault(r["qid"], set()).add(r["pos"]["docid"])
            for neg in r.get("neg", []):
                if neg["docid"] not in pool_text:
                    pool_text[neg["docid"]] = neg["text"]
                    pool_ids.append(neg["docid"])
    rng = np.random.default_rng(seed)
    cols: dict[str, list[str]] = {"anchor": [], "positive": []}
    for j in range(n):
        cols[f"negative_{j + 1}"] = []
    dropped = padded = pad_total = truncated = 0
    row_ids: list[tuple[str, ...]] = []
    for r in rows:
        negs = list(r.get("neg", []))
        if len(negs) > n:
            negs = negs[:n]
            truncated += 1
        texts = [neg["text"] for neg in negs]
        if len(texts) < n:
            if short_rows == "drop":
                dropped += 1
                continue
            banned = positives_of[r["qid"]] | {neg["docid"] for neg in negs} | {r["pos"]["docid"]}
            need = n - len(texts)
            chosen = _draw(rng, pool_ids, banned, need)
            if len(chosen) < need:
                raise HardnegError(
                    f"cannot pad query {r['qid']!r} to {n} negatives: only {len(chosen)} other negatives exist",
                    where=where, fix="lower n_negatives or use short_rows='drop'")
            texts += [pool_text[d] for d in chosen]
            negs = negs + [{"docid": d} for d in chosen]
            padded += 1
            pad_total += need
        row_ids.append((r["qid"], r["pos"]["docid"], *(neg["docid"] for neg in negs)))
        cols["anchor"].append(r["query"])
        cols["positive"].append(r["pos"]["text"])
        for j, t in enumerate(texts):
            cols[f"negative_{j + 1}"].append(t)
    return PreparedRows(columns=cols, n_negatives=n, n_rows_in=len(rows), n_rows_used=len(cols["anchor"]),
                        n_rows_dropped=dropped, n_rows_padded=padded, n_pad_negatives=pad_total,
                        n_rows_truncated=truncated, ids=tuple(row_ids))


def _draw(rng: np.random.Generator, pool: list[str], banned: set[str], need: int) -> list[str]:
    """Up to ``need`` distinct pool ids not in ``banned``, uniformly at random (deterministic given rng)."""
    chosen: list[str] = []
    seen: set[str] = set()
    # Rejection sampling costs O(need) draws while the pool is mostly allowed; a full shuffle is the fallback.
    for _ in range(20 * need + 100):
        if len(chosen) == need or not pool:
            return chosen
        d = pool[int(rng.integers(len(pool)))]
        if d not in banned and d not in seen:
            seen.add(d)
            chosen.append(d)
    for k in rng.permutation(len(pool)):
        if len(chosen) == need:
            break
        d = pool[int(k)]
        if d not in banned and d not in seen:
            seen.add(d)
            chosen.append(d)
    return chosen
