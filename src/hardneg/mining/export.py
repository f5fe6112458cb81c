"""Write a MinedSet: the project JSONL plus exports for sentence-transformers, FlagEmbedding and triplets."""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import numpy as np

from hardneg.errors import HardnegError
from hardneg.io import atomic_path, stable_hash, write_jsonl
from hardneg.mining.select import mix64, row_keys
from hardneg.types import Dataset, MinedSet

EXPORTS = ("st", "flag", "triplets")
ShortPolicy = Literal["drop", "pad"]
# Teacher scores of (query row, corpus row) pairs: q_rows int [m], d_rows int [m] -> float [m].
PadScorer = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _r(x: float) -> float:
    return round(float(x), 6)


def project_rows(mined: MinedSet, dataset: Dataset) -> Iterator[dict]:
    """Rows of the project format, one per (query, positive), in pool order."""
    pool, corpus, queries = mined.pool, dataset.corpus, dataset.queries
    texts, ids = corpus.encoding_texts, corpus.ids
    qtext = {q: queries.texts[queries.row[q]] for q in pool.qids}
    neg_idx, neg_score, neg_rank, n_neg = mined.neg_idx, mined.neg_score, mined.neg_rank, mined.n_neg
    pos_idx, pos_score = mined.pos_idx, mined.pos_score
    for r in range(len(mined)):
        qid = pool.qids[mined.row_q[r]]
        p = int(pos_idx[r])
        yield {
            "qid": qid,
            "query": qtext[qid],
            "pos": {"docid": ids[p], "text": texts[p], "score": _r(pos_score[r])},
            "neg": [{"docid": ids[d], "text": texts[d], "score": _r(s), "rank": int(k)}
                    for d, s, k in zip(neg_idx[r, :n_neg[r]].tolist(), neg_score[r, :n_neg[r]], neg_rank[r, :n_neg[r]])],
        }


def pad_rows(rows: list[dict], mined: MinedSet, dataset: Dataset, n: int, seed: int,
             scorer: PadScorer | None = None) -> list[dict]:
    """Fill rows short of n with random corpus docs that are neither positives nor already negatives.

    FlagEmbedding's miner does the same; the draw is a hash of (seed, row, attempt), so it is reproducible.
    A padded negative is marked ``"pad": true`` with ``rank`` -1, and its ``score`` is the teacher's real score
    from ``scorer`` (without a scorer the row has no ``score`` key for it: never a null where a number belongs).
    """
    pool, corpus = mined.pool, dataset.corpus
    keys = row_keys(pool, mined.row_q, mined.row_pos)
    n_docs = len(corpus)
    out = []
    padded: list[tuple[int, int, int, int]] = []  # (row, slot, query row, corpus row)
    for r, row in enumerate(rows):
        if len(row["neg"]) >= n:
            out.append(row)
            continue
        taken = set(dataset.positives(row["qid"])) | {x["docid"] for x in row["neg"]}
        negs = list(row["neg"])
        attempt = 0
        while len(negs) < n and len(taken) < n_docs:
            with np.errstate(over="ignore"):
                h = mix64(np.array([keys[r] ^ np.uint64(seed & 0xFFFFFFFF) ^ np.uint64(attempt << 32)],
                                    dtype=np.uint64))
            d = int(h[0] % np.uint64(n_docs))
            attempt += 1
            if corpus.ids[d] in taken:
                continue
            taken.add(corpus.ids[d])
            padded.append((len(out), len(negs), dataset.queries.row[row["qid"]], d))
            negs.append({"docid": corpus.ids[d], "text": corpus.encoding_texts[d], "rank": -1, "pad": True})
        out.append({**row, "neg": negs})
    if scorer is not None and padded:
        at = np.array(padded, dtype=np.int64)  # [m, 4]
        for (r, slot, _, _), s in zip(padded, scorer(at[:, 2], at[:, 3]).tolist()):
            out[r]["neg"][slot]["score"] = _r(s)
    return out


def _apply_policy(rows: list[dict], n: int, policy: ShortPolicy, mined: MinedSet, dataset: Dataset,
                  seed: int, scorer: PadScorer | None) -> list[dict]:
    if n == 0:
        return rows
    if policy == "drop":
        return [r for r in rows if len(r["neg"]) >= n]
    return pad_rows(rows, mined, dataset, n, seed, scorer)


def write_exports(rows: list[dict], out: Path, n: int, formats: tuple[str, ...], *, policy: ShortPolicy,
                  mined: MinedSet, dataset: Dataset, seed: int, scorer: PadScorer | None = None) -> dict[str, int]:
    """Write the requested exports under ``out``; returns rows written per format.

    FlagEmbedding rows carry ``pos_scores``/``neg_scores`` (teacher scores, padded negatives included, which is
    why padding with a ``flag`` export needs ``scorer``) and, with ``policy="pad"``, ``neg_pad`` (true for a
    padded negative).
    """
    if policy == "pad" and "flag" in formats and scorer is None:
        raise HardnegError("padding a flag export needs the teacher's scores of the padded documents, which are "
                           "only available for a single encoder teacher", where="--short pad",
                           fix="use --short drop, or export st/triplets only, or mine with a single teacher")
    fixed = _apply_policy(rows, n, policy, mined, dataset, seed, scorer) if formats else []
    written: dict[str, int] = {}
    if "st" in formats:
        st_rows = [{"anchor": r["query"], "positive": r["pos"]["text"],
                    **{f"negative_{i + 1}": r["neg"][i]["text"] for i in range(n)}} for r in fixed]
        written["st.jsonl"] = write_jsonl(out / "st.jsonl", st_rows)
        _write_hf_dataset(out / "st", st_rows, n)
    if "flag" in formats:
        written["flag.jsonl"] = write_jsonl(out / "flag.jsonl", (
            {"query": r["query"], "pos": [r["pos"]["text"]], "neg": [x["text"] for x in r["neg"]],
             "pos_scores": [r["pos"]["score"]], "neg_scores": [x["score"] for x in r["neg"]],
             **({"neg_pad": [bool(x.get("pad", False)) for x in r["neg"]]} if policy == "pad" else {})}
            for r in fixed))
    if "triplets" in formats:
        written["triplets.jsonl"] = write_jsonl(out / "triplets.jsonl", (
            {"anchor": r["query"], "positive": r["pos"]["text"], "negative": x["text"]}
            for r in fixed for x in r["neg"]))
    return written


def _write_hf_dataset(folder: Path, rows: list[dict], n: int) -> None:
    """A ``datasets`` folder (``load_from_disk``) with a content-derived fingerprint, so it is byte-stable."""
    import datasets  # heavy import: only when this export is asked for

    cols = ["anchor", "positive"] + [f"negative_{i + 1}" for i in range(n)]
    ds = datasets.Dataset.from_dict({c: [r[c] for r in rows] for c in cols})
    with atomic_path(folder, is_dir=True) as tmp:
        ds.save_to_disk(str(tmp))
        state_path = tmp / "state.json"
        state = json.loads(state_path.read_text(encoding="utf-8"))
        state["_fingerprint"] = stable_hash(rows)  # datasets draws a random one for in-memory data
        state_path.write_text(json.dumps(state, indent=2, sort_keys=True), encoding="utf-8")
