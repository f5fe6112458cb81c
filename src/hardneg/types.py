"""Core data shapes: frozen values with id <-> row maps. No I/O, no models."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from hardneg.hashing import sha256_pairs

# qid -> {docid: relevance}; relevance > 0 means relevant (a positive).
Qrels = dict[str, dict[str, int]]


def _fingerprint(ids: tuple[str, ...], texts: tuple[str, ...]) -> str:
    # Length-prefixed (not separator-joined): it keys the pool cache and run stages, so it must not collide.
    return sha256_pairs(ids, texts)


@dataclass(frozen=True)
class Corpus:
    """Documents in a stable row order. ``text_for_encoding`` is ``title + " " + text`` (BEIR convention)."""

    ids: tuple[str, ...]
    titles: tuple[str, ...]
    texts: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.ids)

    @cached_property
    def row(self) -> dict[str, int]:
        return {d: i for i, d in enumerate(self.ids)}

    @cached_property
    def encoding_texts(self) -> tuple[str, ...]:
        return tuple((f"{t} {x}" if t else x).strip() for t, x in zip(self.titles, self.texts))

    @cached_property
    def fingerprint(self) -> str:
        return _fingerprint(self.ids, self.encoding_texts)

    def subset(self, rows: np.ndarray | list[int]) -> Corpus:
        rows = list(rows)
        return Corpus(tuple(self.ids[i] for i in rows), tuple(self.titles[i] for i in rows),
                      tuple(self.texts[i] for i in rows))


@dataclass(frozen=True)
class Queries:
    ids: tuple[str, ...]
    texts: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.ids)

    @cached_property
    def row(self) -> dict[str, int]:
        return {q: i for i, q in enumerate(self.ids)}

    @cached_property
    def fingerprint(self) -> str:
        return _fingerprint(self.ids, self.texts)

    def subset(self, ids: list[str] | tuple[str, ...]) -> Queries:
        return Queries(tuple(ids), tuple(self.texts[self.row[q]] for q in ids))


MANIFESTS = ("injected.json", "hidden.json")  # written by `hardneg inject` / `hardneg thin` into a BEIR folder


@dataclass(frozen=True)
class DataSource:
    """Where a dataset was loaded from: what outputs record, and where a manifest of known false negatives lives.

    ``kind``: ``beir`` (a folder), ``beir-name`` (a BEIR dataset fetched into the cache), ``pairs-jsonl``,
    ``hf`` (a Hugging Face pairs dataset) or ``memory`` (built in Python, e.g. from a ``datasets.Dataset``).
    ``descriptor``: the ``--data`` argument as given; ``path``: the resolved folder or file ("" for memory/hf);
    ``manifest``: ``injected.json`` or ``hidden.json`` when the folder holds one, else None.
    """

    kind: str
    descriptor: str
    path: str = ""
    manifest: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {"kind": self.kind, "descriptor": self.descriptor, "path": self.path, "manifest": self.manifest}


@dataclass(frozen=True)
class Dataset:
    """One split of a retrieval dataset: the queries that have qrels in this split, and the whole corpus.

    ``source`` says where it came from (``DataSource``); it takes no part in equality or in any cache key (those
    hash the contents), and parts of a dataset (a carved dev, a stripped copy) keep their parent's source."""

    name: str
    split: str
    corpus: Corpus
    queries: Queries          # only the split's queries, in first-appearance order of the qrels file
    qrels: Qrels = field(repr=False)
    source: DataSource | None = field(default=None, compare=False, repr=False)

    def positives(self, qid: str) -> list[str]:
        """Docids with relevance > 0 for ``qid``, in qrels file order."""
        return [d for d, r in self.qrels.get(qid, {}).items() if r > 0]


@dataclass(frozen=True)
class CandidatePool:
    """One teacher's candidates for every query that has a positive: what every strategy replays.

    Arrays (Q queries, D = depth):
      cand_idx    int32   [Q, D]  corpus rows of the top-D *non-positive* candidates, score desc, row asc;
                                  -1 pads a query with fewer than D candidates
      cand_score  float32 [Q, D]  teacher scores (NaN where padded)
      cand_rank   int32   [Q, D]  1-based rank in the teacher's full ranking, positives included
      pos_ptr     int64   [Q+1]   positives of query i are pos_idx[pos_ptr[i]:pos_ptr[i+1]] (qrels order)
      pos_idx     int32   [P]     corpus rows of positives
      pos_score   float32 [P]     teacher score of each positive, computed directly (not from the top-D)
    """

    teacher: str
    qids: tuple[str, ...]
    cand_idx: np.ndarray
    cand_score: np.ndarray
    cand_rank: np.ndarray
    pos_ptr: np.ndarray
    pos_idx: np.ndarray
    pos_score: np.ndarray
    meta: dict = field(default_factory=dict, compare=False)

    @property
    def depth(self) -> int:
        return int(self.cand_idx.shape[1])

    def __len__(self) -> int:
        return len(self.qids)

    def validate(self) -> None:
        """Check shape invariants (a corrupt or hand-edited pool fails here, not deep in a strategy)."""
        q, d = self.cand_idx.shape
        if self.cand_score.shape != (q, d) or self.cand_rank.shape != (q, d):
            raise ValueError("candidate arrays disagree in shape")
        if len(self.qids) != q or self.pos_ptr.shape != (q + 1,):
            raise ValueError("pool query count disagrees with its arrays")
        if self.pos_idx.shape != self.pos_score.shape or int(self.pos_ptr[-1]) != self.pos_idx.shape[0]:
            raise ValueError("pool positive arrays disagree")
        if np.any(np.diff(self.pos_ptr) < 1):
            raise ValueError("every pool query needs at least one positive")


@dataclass(frozen=True)
class MinedSet:
    """A strategy's output: one row per (query, positive), negatives as columns of the candidate pool.

    Arrays (R rows, n = the strategy's number of negatives):
      row_q    int64 [R]     pool query index of each row
      row_pos  int64 [R]     index into the pool's positive arrays (pos_idx / pos_score)
      neg_col  int32 [R, n]  pool candidate columns, in rank order; -1 pads a row short of n
    ``removed`` counts, per filter (canonical string), the candidates it removed, summed over rows.
    """

    strategy: str
    pool: CandidatePool = field(repr=False)
    row_q: np.ndarray
    row_pos: np.ndarray
    neg_col: np.ndarray
    removed: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.row_q.shape[0])

    @property
    def n_neg(self) -> np.ndarray:
        """Negatives per row, int [R]."""
        return (self.neg_col >= 0).sum(axis=1)

    def _take(self, arr: np.ndarray, fill) -> np.ndarray:
        cols = np.maximum(self.neg_col, 0)
        out = np.take_along_axis(arr[self.row_q], cols, axis=1)
        return np.where(self.neg_col >= 0, out, fill)

    @property
    def neg_idx(self) -> np.ndarray:
        """Corpus rows of the negatives, int32 [R, n] (-1 pads)."""
        return self._take(self.pool.cand_idx, -1).astype(np.int32)

    @property
    def neg_score(self) -> np.ndarray:
        """Teacher scores of the negatives, float32 [R, n] (NaN pads)."""
        return self._take(self.pool.cand_score, np.nan).astype(np.float32)

    @property
    def neg_rank(self) -> np.ndarray:
        """1-based raw teacher rank of the negatives (positives included in the ranking), int32 [R, n]."""
        return self._take(self.pool.cand_rank, -1).astype(np.int32)

    @property
    def pos_idx(self) -> np.ndarray:
        return self.pool.pos_idx[self.row_pos]

    @property
    def pos_score(self) -> np.ndarray:
        return self.pool.pos_score[self.row_pos]
