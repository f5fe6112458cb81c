"""Teacher ensembles (the paper's §4, Table 2) over MinedSets of several teachers mined on the SAME rows.

- **cross-sample** ``ensemble(cross)``: each (query, positive) row takes ALL its negatives from one teacher,
  drawn uniformly at random. The draw is a hash of (seed, qid, positive's corpus row), so a row's teacher does
  not depend on the other rows or their order.
- **intra-sample** ``ensemble(intra,dedup)`` / ``ensemble(intra,no-dedup)``: the top-1 negative of each
  teacher, in teacher order (list the most accurate teacher first: it also supplies the positive's score in
  the JSONL). With ``no-dedup`` a doc picked by two teachers appears twice (the paper's best variant: a repeated
  negative weighs more in the InfoNCE loss). With ``dedup`` a duplicate is replaced by that teacher's next
  negative not already taken for the row; if the teacher has none left the slot stays empty.
  For ``n`` slots other than the number of teachers T, slots go round-robin: slot ``s`` belongs to teacher
  ``s mod T``; its round ``s // T`` takes that teacher's next negative (no-dedup: its ``(s // T + 1)``-th
  survivor; dedup: its next survivor not taken yet). With n = T this is exactly the paper's rule.

Input design. A ``MinedSet`` keeps only a fixed number of negatives per row, and dedup must walk deeper into a
teacher's filtered list. So intra-sample reads each teacher's *whole ranked survivor list*: a MinedSet mined
with the strategy's filters and ``topk(depth)`` (``survivor_sets``), and ``n`` says how many to output.
Cross-sample reads MinedSets mined with the full strategy (so a sampled selector keeps its sampling), cut to
``n``. ``ensemble_mine(pools, strategy, spec, seed)`` does the right thing for both.

Empty slots (a teacher short of survivors) are moved to the end of the row (-1 / NaN pads), keeping the order
of the filled slots.
"""
from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from hardneg.errors import HardnegError
from hardneg.mining.select import mix64, apply_strategy, row_keys
from hardneg.mining.strategy import Strategy, TopK
from hardneg.types import CandidatePool, Dataset, MinedSet

Method = Literal["cross", "intra"]
CROSS_SALT = 0x43524F5353  # "CROSS": keeps the teacher draw independent of a sampled selector's Gumbel noise


@dataclass(frozen=True)
class EnsembleSpec:
    """``ensemble(cross)``, ``ensemble(intra,dedup)`` or ``ensemble(intra,no-dedup)``."""

    method: Method
    dedup: bool = False

    def __post_init__(self) -> None:
        if self.method not in ("cross", "intra"):
            raise HardnegError(f"unknown ensemble method {self.method!r}", fix=ENSEMBLE_HELP)
        if self.method == "cross" and self.dedup:
            raise HardnegError("ensemble(cross) takes no dedup option", fix=ENSEMBLE_HELP)

    def __str__(self) -> str:
        if self.method == "cross":
            return "ensemble(cross)"
        return f"ensemble(intra,{'dedup' if self.dedup else 'no-dedup'})"

    @property
    def slug(self) -> str:
        return str(self).replace("(", "-").replace(")", "").replace(",", "-")


ENSEMBLE_HELP = "write ensemble(cross), ensemble(intra,dedup) or ensemble(intra,no-dedup)"
_ENS = re.compile(r"^\s*ensemble\s*\((.*)\)\s*$", re.IGNORECASE)


def parse_ensemble(text: str) -> EnsembleSpec | None:
    """Parse one ``ensemble(...)`` token; None if ``text`` is not an ensemble token at all."""
    m = _ENS.match(text)
    if m is None:
        if text.strip().lower().startswith("ensemble"):
            raise HardnegError(f'bad ensemble "{text.strip()}": arguments in parentheses are required',
                               fix=ENSEMBLE_HELP)
        return None
    args = [a.strip().lower() for a in m.group(1).split(",")]
    if args == ["cross"]:
        return EnsembleSpec("cross")
    if len(args) == 2 and args[0] == "intra" and args[1] in ("dedup", "no-dedup", "nodedup"):
        return EnsembleSpec("intra", dedup=args[1] == "dedup")
    if args == ["intra"]:
        raise HardnegError(f'bad ensemble "{text.strip()}": say whether duplicates are kept',
                           fix="write ensemble(intra,dedup) or ensemble(intra,no-dedup) (the paper's best)")
    raise HardnegError(f'bad ensemble "{text.strip()}"', fix=ENSEMBLE_HELP)


def split_ensemble(text: str) -> tuple[str, EnsembleSpec | None]:
    """``"percpos(0.95)+topk(4)+ensemble(intra,dedup)"`` -> (``"percpos(0.95)+topk(4)"``, spec); any position."""
    parts, depth, cur = [], 0, []
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if ch == "+" and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    specs = [(i, parse_ensemble(p)) for i, p in enumerate(parts)]
    found = [(i, s) for i, s in specs if s is not None]
    if len(found) > 1:
        raise HardnegError(f'bad strategy "{text.strip()}": more than one ensemble(...)', fix=ENSEMBLE_HELP)
    if not found:
        return text.strip(), None
    i, spec = found[0]
    return "+".join(p.strip() for j, p in enumerate(parts) if j != i), spec


@dataclass(frozen=True)
class EnsembleSet:
    """An ensemble's output: one row per (query, positive), each negative tagged with its teacher.

    Arrays (R rows, n slots, T teachers):
      row_q       int64   [R]     pool query index (``qids[row_q]``)
      row_pos     int64   [R]     index into the pools' positive arrays (same in every teacher's pool)
      pos_idx     int32   [R]     corpus row of the row's positive
      pos_score   float32 [R, T]  every teacher's score of the positive
      neg_idx     int32   [R, n]  corpus rows of the negatives (-1 pads, at the end)
      neg_teacher int32   [R, n]  index into ``teachers`` of the teacher that supplied it (-1 pads)
      neg_score   float32 [R, n]  that teacher's score (NaN pads): scales differ between teachers
      neg_rank    int32   [R, n]  that teacher's 1-based raw rank, positives included (-1 pads)
      row_teacher int32   [R]     cross-sample: the teacher drawn for the row; intra-sample: -1
    """

    method: str                 # canonical ensemble string, e.g. "ensemble(intra,no-dedup)"
    strategy: str               # the per-teacher strategy it was built from
    teachers: tuple[str, ...]
    qids: tuple[str, ...]
    row_q: np.ndarray
    row_pos: np.ndarray
    pos_idx: np.ndarray
    pos_score: np.ndarray
    neg_idx: np.ndarray
    neg_teacher: np.ndarray
    neg_score: np.ndarray
    neg_rank: np.ndarray
    row_teacher: np.ndarray

    def __len__(self) -> int:
        return int(self.row_q.shape[0])

    @property
    def n_neg(self) -> np.ndarray:
        """Negatives per row, int [R]."""
        return (self.neg_idx >= 0).sum(axis=1)

    @property
    def name(self) -> str:
        """``<strategy>+<ensemble>`` e.g. ``percpos(0.95)+topk(4)+ensemble(cross)``."""
        return f"{self.strategy}+{self.method}" if self.strategy else self.method


# -- checks -------------------------------------------------------------------------------------------------

def check_same_rows(mined: Sequence[MinedSet]) -> None:
    """Raise unless every MinedSet has the same (query, positive) rows in the same order."""
    if not mined:
        raise HardnegError("an ensemble needs at least one teacher's mined set", fix="pass one per teacher")
    ref = mined[0]
    for m in mined[1:]:
        who = f"teachers {ref.pool.teacher!r} and {m.pool.teacher!r}"
        if ref.pool.meta.get("corpus") and m.pool.meta.get("corpus") and \
                ref.pool.meta["corpus"] != m.pool.meta["corpus"]:
            raise HardnegError(f"{who} were mined over different corpora", fix="mine every teacher on one dataset")
        if ref.pool.qids != m.pool.qids:
            raise HardnegError(f"{who} have different queries", fix="mine every teacher on the same dataset split")
        same = (np.array_equal(ref.row_q, m.row_q) and np.array_equal(ref.row_pos, m.row_pos)
                and np.array_equal(ref.pos_idx, m.pos_idx))
        if not same:
            raise HardnegError(f"{who} have different (query, positive) rows",
                               fix="mine every teacher on the same dataset split and qrels")


def _teacher_names(mined: Sequence[MinedSet]) -> tuple[str, ...]:
    names = tuple(m.pool.teacher for m in mined)
    if len(set(names)) != len(names):
        raise HardnegError(f"a teacher appears twice in the ensemble: {', '.join(names)}",
                           fix="list each teacher once")
    return names


def _compact(idx: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
    """Move empty slots (idx < 0) to the end of each row, keeping the filled slots' order."""
    order = np.argsort(idx < 0, axis=1, kind="stable")
    return tuple(np.take_along_axis(a, order, axis=1) for a in (idx, *others))


def _pos_scores(mined: Sequence[MinedSet]) -> np.ndarray:
    return np.stack([m.pos_score.astype(np.float32) for m in mined], axis=1)  # [R, T]


# -- the two ensembles ----------------------------------------------------------------------------------------

def teacher_draw(pool: CandidatePool, row_q: np.ndarray, row_pos: np.ndarray, n_teachers: int,
                 seed: int) -> np.ndarray:
    """Uniform teacher index per row, int32 [R]: a hash of (seed, qid, positive's corpus row)."""
    keys = row_keys(pool, row_q, row_pos)
    with np.errstate(over="ignore"):
        salt = mix64(np.array([(seed & 0xFFFFFFFFFFFFFFFF) ^ CROSS_SALT], dtype=np.uint64))
        x = mix64(keys ^ salt)
    u = (x >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))  # [0, 1)
    return np.minimum((u * n_teachers).astype(np.int64), n_teachers - 1).astype(np.int32)


def cross_sample(mined_by_teacher: Sequence[MinedSet], seed: int = 0, *, n: int | None = None) -> EnsembleSet:
    """Cross-sample ensembling: every row takes all its negatives from one uniformly drawn teacher.

    ``mined_by_teacher``: one MinedSet per teacher (teacher order), mined with the per-teacher strategy;
    ``n`` (default: the widest set) cuts each row to its first n negatives.
    """
    mined = list(mined_by_teacher)
    check_same_rows(mined)
    teachers = _teacher_names(mined)
    ref = mined[0]
    t = len(mined)
    width = max(m.neg_col.shape[1] for m in mined)
    n = width if n is None else n
    if n < 0:
        raise HardnegError(f"n must be >= 0, got {n}", fix="use e.g. n=4")
    r = len(ref)
    choice = teacher_draw(ref.pool, ref.row_q, ref.row_pos, t, seed)  # [R]
    neg_idx = np.full((r, n), -1, dtype=np.int32)
    neg_score = np.full((r, n), np.nan, dtype=np.float32)
    neg_rank = np.full((r, n), -1, dtype=np.int32)
    for k, m in enumerate(mined):
        rows = choice == k
        w = min(n, m.neg_col.shape[1])
        neg_idx[rows, :w] = m.neg_idx[rows, :w]
        neg_score[rows, :w] = m.neg_score[rows, :w]
        neg_rank[rows, :w] = m.neg_rank[rows, :w]
    neg_teacher = np.where(neg_idx >= 0, choice[:, None], -1).astype(np.int32)
    neg_idx, neg_teacher, neg_score, neg_rank = _compact(neg_idx, neg_teacher, neg_score, neg_rank)
    return EnsembleSet(method=str(EnsembleSpec("cross")), strategy=_base_strategy(mined), teachers=teachers,
                       qids=ref.pool.qids, row_q=ref.row_q.copy(), row_pos=ref.row_pos.copy(),
                       pos_idx=ref.pos_idx.astype(np.int32), pos_score=_pos_scores(mined), neg_idx=neg_idx,
                       neg_teacher=neg_teacher, neg_score=neg_score, neg_rank=neg_rank, row_teacher=choice)


def intra_sample(mined_by_teacher: Sequence[MinedSet], dedup: bool, n: int | None = None) -> EnsembleSet:
    """Intra-sample ensembling: the top-1 negative of each teacher in teacher order (round-robin past T slots).

    ``mined_by_teacher``: each teacher's ranked survivor list (filters + a deep ``topk``; see
    ``survivor_sets``). ``dedup``: replace a corpus row already taken by that teacher's next untaken one.
    ``n``: output slots (default: the number of teachers).
    """
    mined = list(mined_by_teacher)
    check_same_rows(mined)
    teachers = _teacher_names(mined)
    ref = mined[0]
    t = len(mined)
    n = t if n is None else n
    if n < 0:
        raise HardnegError(f"n must be >= 0, got {n}", fix="use e.g. n=4")
    r = len(ref)
    lists = [(m.neg_idx, m.neg_score, m.neg_rank) for m in mined]  # each [R, width_t], filled slots first
    neg_idx = np.full((r, n), -1, dtype=np.int32)
    neg_teacher = np.full((r, n), -1, dtype=np.int32)
    neg_score = np.full((r, n), np.nan, dtype=np.float32)
    neg_rank = np.full((r, n), -1, dtype=np.int32)
    if not dedup:
        for s in range(n):
            k, j = s % t, s // t
            idx, sc, rk = lists[k]
            if j < idx.shape[1]:
                neg_idx[:, s], neg_score[:, s], neg_rank[:, s] = idx[:, j], sc[:, j], rk[:, j]
    else:
        ptr = np.zeros((t, r), dtype=np.int64)  # next column to look at, per teacher and row
        all_rows = np.arange(r)
        for s in range(n):
            k = s % t
            idx, sc, rk = lists[k]
            width = idx.shape[1]
            todo = all_rows.copy()  # rows still looking for this slot's negative
            while todo.size:
                p = ptr[k, todo]
                has = p < width
                todo, p = todo[has], p[has]  # a teacher with nothing left leaves the slot empty
                if not todo.size:
                    break
                cand = idx[todo, p]  # [r']
                ptr[k, todo] = p + 1
                empty = cand < 0  # the teacher's list ended (pads come last)
                ptr[k, todo[empty]] = width
                taken = (neg_idx[todo, :s] == cand[:, None]).any(axis=1) if s else np.zeros(todo.size, bool)
                ok = ~empty & ~taken
                rows_ok = todo[ok]
                neg_idx[rows_ok, s] = cand[ok]
                neg_score[rows_ok, s] = sc[rows_ok, p[ok]]
                neg_rank[rows_ok, s] = rk[rows_ok, p[ok]]
                todo = todo[~ok & ~empty]  # duplicates walk on
    neg_teacher = np.where(neg_idx >= 0, (np.arange(n) % max(t, 1))[None, :], -1).astype(np.int32)
    neg_idx, neg_teacher, neg_score, neg_rank = _compact(neg_idx, neg_teacher, neg_score, neg_rank)
    return EnsembleSet(method=str(EnsembleSpec("intra", dedup)), strategy=_base_strategy(mined),
                       teachers=teachers, qids=ref.pool.qids, row_q=ref.row_q.copy(), row_pos=ref.row_pos.copy(),
                       pos_idx=ref.pos_idx.astype(np.int32), pos_score=_pos_scores(mined), neg_idx=neg_idx,
                       neg_teacher=neg_teacher, neg_score=neg_score, neg_rank=neg_rank,
                       row_teacher=np.full(r, -1, dtype=np.int32))


def _base_strategy(mined: Sequence[MinedSet]) -> str:
    names = {m.strategy for m in mined}
    return mined[0].strategy if len(names) == 1 else "|".join(m.strategy for m in mined)


def survivor_sets(pools: Sequence[CandidatePool], strategy: Strategy) -> list[MinedSet]:
    """Each teacher's whole ranked survivor list: ``strategy``'s filters + ``topk(pool depth)``.

    The strategy string of the returned sets is the input strategy's (their width is the pool depth).
    """
    out = []
    for p in pools:
        deep = Strategy(strategy.filters, TopK(max(p.depth, 1)))
        m = apply_strategy(p, deep)
        out.append(MinedSet(strategy=str(strategy), pool=p, row_q=m.row_q, row_pos=m.row_pos, neg_col=m.neg_col,
                            removed=m.removed))
    return out


def ensemble_mine(pools: Sequence[CandidatePool], strategy: Strategy, spec: EnsembleSpec, *,
                  seed: int = 0) -> EnsembleSet:
    """The one call for ``hardneg mine``: apply ``strategy`` per teacher and ensemble with ``spec``.

    cross: each teacher mined with the full strategy (sampling included, same seed), then one teacher per row.
    intra: each teacher's survivors (the strategy's filters), then n = ``strategy.n`` slots round-robin.
    """
    if len(pools) < 2:
        raise HardnegError(f"an ensemble needs at least two teachers, got {len(pools)}",
                           fix="pass several --teacher values")
    if spec.method == "cross":
        return cross_sample([apply_strategy(p, strategy, seed=seed) for p in pools], seed, n=strategy.n)
    return intra_sample(survivor_sets(pools, strategy), spec.dedup, n=strategy.n)


# -- output -------------------------------------------------------------------------------------------------

def _r(x: float) -> float:
    return round(float(x), 6)


def ensemble_rows(es: EnsembleSet, dataset: Dataset) -> Iterator[dict]:
    """Project-format JSONL rows; each negative also names its ``teacher``; pos score = the first teacher's."""
    corpus, queries = dataset.corpus, dataset.queries
    texts, ids = corpus.encoding_texts, corpus.ids
    n_neg = es.n_neg
    for r in range(len(es)):
        qid = es.qids[es.row_q[r]]
        p = int(es.pos_idx[r])
        k = int(n_neg[r])
        yield {
            "qid": qid,
            "query": queries.texts[queries.row[qid]],
            "pos": {"docid": ids[p], "text": texts[p], "score": _r(es.pos_score[r, 0])},
            "neg": [{"docid": ids[d], "text": texts[d], "score": _r(s), "rank": int(rk), "teacher": es.teachers[t]}
                    for d, s, rk, t in zip(es.neg_idx[r, :k].tolist(), es.neg_score[r, :k].tolist(),
                                           es.neg_rank[r, :k].tolist(), es.neg_teacher[r, :k].tolist())],
        }


def ensemble_stats(es: EnsembleSet, n: int | None = None) -> dict:
    """Counts for the summary: rows full/short/empty, duplicate negatives, each teacher's share."""
    n = es.neg_idx.shape[1] if n is None else n
    n_neg = es.n_neg
    srt = np.sort(np.where(es.neg_idx >= 0, es.neg_idx, -1), axis=1)
    dups = int(((srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0)).sum()) if srt.shape[1] > 1 else 0
    share = {t: int((es.neg_teacher == k).sum()) for k, t in enumerate(es.teachers)}
    out = {"method": es.method, "strategy": es.strategy, "teachers": list(es.teachers), "rows": len(es),
           "n_requested": n, "rows_full": int((n_neg >= n).sum()), "rows_short": int((n_neg < n).sum()),
           "rows_empty": int((n_neg == 0).sum()) if n else 0, "negatives_total": int(n_neg.sum()),
           "duplicate_negatives": dups, "negatives_per_teacher": share}
    if (es.row_teacher >= 0).any():
        out["rows_per_teacher"] = {t: int((es.row_teacher == k).sum()) for k, t in enumerate(es.teachers)}
    return out
