"""Output rows of treated strategies (``relabel(J)``, ``drop(J)``, ``drop-query(J)``; rules in strategy.py).

Every row of a treated set carries ``"treatment"`` (the canonical treatment string). With ``relabel``, a row whose
judge flagged candidates among the first k also lists them (``"relabeled": [docid, ...]``, they are no longer among
its negatives), and each flagged (query, document) pair adds one extra training row right after the first row that
flagged it: the document as the positive (marked ``"relabeled": true``) with that row's negatives. The trainer reads
these as ordinary rows, so relabelled candidates are trained on as positives without any trainer change.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import numpy as np

from hardneg.mining.export import project_rows
from hardneg.mining.select import TreatedSet
from hardneg.types import Dataset, MinedSet


def _r(x: float) -> float:
    return round(float(x), 6)


def mined_rows(mined: MinedSet, dataset: Dataset) -> Iterator[dict]:
    """``project_rows`` for a plain set (byte-identical output); treated rows as described above otherwise."""
    if not isinstance(mined, TreatedSet):
        yield from project_rows(mined, dataset)
        return
    ids, texts = dataset.corpus.ids, dataset.corpus.encoding_texts
    extras = _extra_rows(mined)
    ridx = mined.relabel_idx  # [R, k]
    for r, row in enumerate(project_rows(mined, dataset)):
        out = {**row, "treatment": mined.treatment}
        if mined.relabel_col.shape[1]:
            out["relabeled"] = [ids[d] for d in ridx[r].tolist() if d >= 0]
        yield out
        qi = int(mined.row_q[r])
        for d, c in extras[r]:
            yield {"qid": row["qid"], "query": row["query"],
                   "pos": {"docid": ids[d], "text": texts[d], "score": _r(mined.pool.cand_score[qi, c]),
                           "relabeled": True},
                   "neg": row["neg"], "treatment": mined.treatment}


def _extra_rows(mined: TreatedSet) -> list[list[tuple[int, int]]]:
    """Per row, the (corpus row, pool column) of the relabelled documents it adds as extra rows (first row wins)."""
    ridx, rcol = mined.relabel_idx, mined.relabel_col
    seen: set[tuple[int, int]] = set()
    out = []
    for r in range(len(mined)):
        q = int(mined.row_q[r])
        mine = []
        for d, c in zip(ridx[r].tolist(), rcol[r].tolist()):
            if d >= 0 and (q, d) not in seen:
                seen.add((q, d))
                mine.append((d, c))
        out.append(mine)
    return out


def export_view(mined: MinedSet) -> MinedSet:
    """``mined`` with one row per output row of ``mined_rows`` (an extra relabelled row repeats its source row's
    arrays), so exports that index rows and the set together (padding) stay aligned."""
    if not isinstance(mined, TreatedSet) or not mined.relabel_col.shape[1]:
        return mined
    src = np.repeat(np.arange(len(mined), dtype=np.int64), [1 + len(e) for e in _extra_rows(mined)])
    return replace(mined, row_q=mined.row_q[src], row_pos=mined.row_pos[src], neg_col=mined.neg_col[src],
                   relabel_col=mined.relabel_col[src])
