"""Candidate pools: one teacher's top-``depth`` non-positive candidates plus every positive's own score."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hardneg.data.jsonl import read_json_file, read_versioned_json
from hardneg.errors import HardnegError
from hardneg.io import atomic_path, dumps_json, read_npy, sha256_file
from hardneg.search.depth import MAX_DEPTH, depth_problem, effective_depth  # noqa: F401 (re-exported)
from hardneg.search.exact import exact_search, score_pairs
from hardneg.types import CandidatePool, Dataset

POOL_FORMAT = 2  # 2: keyed by length-prefixed corpus/queries fingerprints (1's could collide)
_ARRAYS = ("cand_idx", "cand_score", "cand_rank", "pos_ptr", "pos_idx", "pos_score")
def positive_rows(dataset: Dataset) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Queries that have a positive (relevance > 0), and their positives' corpus rows.

    Returns (qids, pos_ptr int64 [Q+1], pos_idx int32 [P]) in the dataset's query order and qrels order.
    """
    qids: list[str] = []
    ptr = [0]
    rows: list[int] = []
    drow = dataset.corpus.row
    for qid in dataset.queries.ids:
        pos = dataset.positives(qid)
        if not pos:
            continue
        qids.append(qid)
        rows.extend(drow[d] for d in pos)
        ptr.append(len(rows))
    return qids, np.asarray(ptr, dtype=np.int64), np.asarray(rows, dtype=np.int32)


def candidates_from_search(scores: np.ndarray, idx: np.ndarray, pos_ptr: np.ndarray, pos_idx: np.ndarray,
                           depth: int, n_docs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Remove positives from a search result and keep the first ``depth`` candidates of each query.

    ``scores``/``idx`` [Q, K] sorted (score desc, row asc) with K >= depth + max positives (or the corpus).
    Returns cand_idx int32, cand_score float32, cand_rank int32 (1-based raw rank), all [Q, depth], -1/NaN pads;
    ``depth`` is first clamped to ``n_docs`` (``effective_depth``).
    """
    depth = effective_depth(depth, n_docs)
    q, k = idx.shape
    npos = np.diff(pos_ptr)
    # Mark positives with one vectorised membership test on (query, row) keys.
    keys = np.arange(q, dtype=np.int64)[:, None] * n_docs + idx  # [Q, K]
    pos_keys = np.repeat(np.arange(q, dtype=np.int64), npos) * n_docs + pos_idx
    is_pos = np.isin(keys, pos_keys)  # [Q, K]
    order = np.argsort(is_pos, axis=1, kind="stable")[:, :depth]  # non-positives first, rank order kept
    keep = ~np.take_along_axis(is_pos, order, axis=1)  # [Q, depth]
    cand_idx = np.where(keep, np.take_along_axis(idx, order, axis=1), -1).astype(np.int32)
    cand_score = np.where(keep, np.take_along_axis(scores, order, axis=1), np.nan).astype(np.float32)
    cand_rank = np.where(keep, order + 1, -1).astype(np.int32)
    if cand_idx.shape[1] < depth:  # corpus smaller than depth
        pad = depth - cand_idx.shape[1]
        cand_idx = np.pad(cand_idx, ((0, 0), (0, pad)), constant_values=-1)
        cand_score = np.pad(cand_score, ((0, 0), (0, pad)), constant_values=np.nan)
        cand_rank = np.pad(cand_rank, ((0, 0), (0, pad)), constant_values=-1)
    return cand_idx, cand_score, cand_rank


def build_pool(teacher: str, dataset: Dataset, q_emb: np.ndarray, d_emb, depth: int, *,
               progress: bool = False, meta: dict | None = None, search_fn=None) -> CandidatePool:
    """Search ``depth`` + max positives per query so that ``depth`` non-positive candidates remain.

    ``q_emb`` [len(dataset.queries), dim] in dataset query order; ``d_emb`` [len(corpus), dim] or shards.
    ``search_fn(q_emb, k) -> (scores, idx)`` replaces the in-process exact search (e.g. Ray's sharded search,
    which must return the same result); positives are always scored here from ``d_emb``. ``depth`` is clamped
    to the corpus size (``effective_depth``); ``meta["depth"]`` and ``pool.depth`` hold the clamped value.
    """
    depth = effective_depth(depth, len(dataset.corpus))
    qids, pos_ptr, pos_idx = positive_rows(dataset)
    if not qids:
        raise HardnegError(f"no query of split '{dataset.split}' has a positive (relevance > 0)",
                           where=dataset.name, fix="check the qrels scores, or use another split")
    qrow = dataset.queries.row
    q_sel = np.asarray([qrow[q] for q in qids], dtype=np.int64)
    q_emb = np.asarray(q_emb)[q_sel]  # [Q, dim]
    n_docs = len(dataset.corpus)
    k = depth + int(np.diff(pos_ptr).max())
    scores, idx = search_fn(q_emb, k) if search_fn else exact_search(q_emb, d_emb, k, progress=progress)
    cand_idx, cand_score, cand_rank = candidates_from_search(scores, idx, pos_ptr, pos_idx, depth, n_docs)
    pos_q = np.repeat(np.arange(len(qids)), np.diff(pos_ptr))
    pos_score = score_pairs(q_emb, d_emb, pos_q, pos_idx)
    pool = CandidatePool(teacher=teacher, qids=tuple(qids), cand_idx=cand_idx, cand_score=cand_score,
                         cand_rank=cand_rank, pos_ptr=pos_ptr, pos_idx=pos_idx, pos_score=pos_score,
                         meta={**(meta or {}), "depth": depth, "corpus": dataset.corpus.fingerprint,
                               "n_docs": n_docs, "dataset": dataset.name, "split": dataset.split})
    pool.validate()
    return pool


def save_pool(pool: CandidatePool, folder: str | Path) -> None:
    """Write a pool as ``.npy`` arrays + ``pool.json`` (with each array's sha256), atomically."""
    with atomic_path(folder, is_dir=True) as tmp:
        hashes = {}
        for name in _ARRAYS:
            with open(tmp / f"{name}.npy", "wb") as fh:
                np.save(fh, np.ascontiguousarray(getattr(pool, name)), allow_pickle=False)
            hashes[name] = sha256_file(tmp / f"{name}.npy")
        (tmp / "qids.json").write_text(json.dumps(list(pool.qids), ensure_ascii=False), encoding="utf-8")
        hashes["qids"] = sha256_file(tmp / "qids.json")
        doc = {"format": POOL_FORMAT, "teacher": pool.teacher, "meta": pool.meta, "sha256": hashes}
        (tmp / "pool.json").write_text(dumps_json(doc), encoding="utf-8")


def load_pool(folder: str | Path, *, verify: bool = True) -> CandidatePool:
    """Read a pool written by ``save_pool``; with ``verify`` every file's sha256 is checked first."""
    folder = Path(folder)
    meta_path = folder / "pool.json"
    if not meta_path.is_file():
        raise HardnegError("not a candidate pool (no pool.json)", where=folder,
                           fix="point at a folder written by `hardneg mine`")
    doc = read_versioned_json(meta_path, POOL_FORMAT, what="pool", fix="delete the folder and mine again")
    if verify:
        for name, digest in doc["sha256"].items():
            f = folder / (f"{name}.npy" if name != "qids" else "qids.json")
            if not f.is_file() or sha256_file(f) != digest:
                raise HardnegError(f"pool file {f.name} is missing or corrupt (hash mismatch)", where=folder,
                                   fix="delete the folder and mine again")
    arrays = {name: read_npy(folder / f"{name}.npy") for name in _ARRAYS}
    qids = tuple(read_json_file(folder / "qids.json", fix="delete the folder and mine again"))
    pool = CandidatePool(teacher=doc["teacher"], qids=qids, meta=doc["meta"], **arrays)
    pool.validate()
    return pool
