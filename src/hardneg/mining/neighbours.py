"""Per-pool arrays for the false-negative filters: candidate-to-positive document cosines and text duplicates.

Both are computed once per candidate pool and replayed by every strategy (``PoolExtras``):

- ``pos_cos`` float32 [Q, D]: max over the query's positives of cos(candidate document, positive document), from the
  teacher's cached document embeddings (``posnbr(tau)``). Stored under ``<cache>/fn/<key>/pos_cos.npy``, keyed by
  the teacher fingerprint, the corpus and the pool's candidate and positive rows.
- ``dup`` bool [Q, D]: the candidate's normalised text equals a positive's or a higher-ranked candidate's
  (``dedup``). ``normalise_text``: Unicode lowercase (``str.lower``), every character that is neither a letter, a
  digit, ``_`` nor whitespace removed (regex ``[^\\w\\s]``), runs of whitespace collapsed to one space, ends
  stripped. The text is the BEIR encoding text, ``title + " " + text``.
"""
from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

import numpy as np

from hardneg.errors import HardnegError
from hardneg.io import ensure_dir, read_npy, stable_hash, write_npy
from hardneg.mining.select import PoolExtras
from hardneg.types import CandidatePool, Dataset

log = logging.getLogger("hardneg")

_PUNCT = re.compile(r"[^\w\s]")
_WS = re.compile(r"\s+")
_CHUNK_FLOATS = 8_000_000  # gathered embedding floats per block (~32 MB)


def normalise_text(text: str) -> str:
    """Lowercase, punctuation removed, whitespace collapsed (the ``dedup`` rule; see the module docstring)."""
    return _WS.sub(" ", _PUNCT.sub("", text.lower())).strip()


def dup_mask(pool: CandidatePool, texts) -> np.ndarray:
    """bool [Q, D]: candidate j of query q has the normalised text of a positive of q or of a candidate i < j.

    ``texts``: the corpus texts by row (e.g. ``dataset.corpus.encoding_texts``)."""
    rows = np.unique(np.concatenate([pool.cand_idx[pool.cand_idx >= 0].ravel(), pool.pos_idx.astype(np.int32)]))
    ids: dict[str, int] = {}
    tid_of_row = {int(r): ids.setdefault(normalise_text(texts[int(r)]), len(ids)) for r in rows.tolist()}
    t = max(len(ids), 1)
    lut_rows = np.asarray(list(tid_of_row), dtype=np.int64)
    lut_tids = np.asarray(list(tid_of_row.values()), dtype=np.int64)
    order = np.argsort(lut_rows)
    lut_rows, lut_tids = lut_rows[order], lut_tids[order]

    def tid(r: np.ndarray) -> np.ndarray:
        return lut_tids[np.searchsorted(lut_rows, np.maximum(r, 0))]

    q, d = pool.cand_idx.shape
    valid = pool.cand_idx >= 0  # [Q, D]
    key = np.arange(q, dtype=np.int64)[:, None] * t + tid(pool.cand_idx.astype(np.int64))  # [Q, D]
    key = np.where(valid, key, -1 - np.arange(q * d, dtype=np.int64).reshape(q, d))  # pads: unique keys
    pos_q = np.repeat(np.arange(q, dtype=np.int64), np.diff(pool.pos_ptr))
    pos_key = pos_q * t + tid(pool.pos_idx.astype(np.int64))
    as_pos = np.isin(key, pos_key)
    flat = key.ravel()  # row-major: within a query, columns in rank order
    _, first, inv = np.unique(flat, return_index=True, return_inverse=True)
    earlier = (first[inv] != np.arange(flat.size)).reshape(q, d)
    return (as_pos | earlier) & valid


def pos_cos_matrix(pool: CandidatePool, d_emb: np.ndarray) -> np.ndarray:
    """float32 [Q, D]: max cosine of each candidate document to the query's positive documents (NaN pads)."""
    q, d = pool.cand_idx.shape
    npos = np.diff(pool.pos_ptr)
    pmax = int(npos.max()) if q else 0
    slot = np.arange(pmax)[None, :]
    pos = np.where(slot < npos[:, None], pool.pos_idx[np.minimum(pool.pos_ptr[:-1, None] + slot,
                                                                 len(pool.pos_idx) - 1)], -1)  # [Q, Pmax]
    norms = np.linalg.norm(d_emb, axis=1).astype(np.float32)
    norms[norms == 0] = 1.0
    out = np.full((q, d), np.nan, dtype=np.float32)
    dim = d_emb.shape[1]
    step = max(1, _CHUNK_FLOATS // max(1, (d + pmax) * dim))
    for b in range(0, q, step):
        ci = pool.cand_idx[b:b + step]  # [B, D]
        pi = pos[b:b + step]  # [B, P]
        ce = d_emb[np.maximum(ci, 0)].astype(np.float32) / norms[np.maximum(ci, 0)][..., None]  # [B, D, dim]
        pe = d_emb[np.maximum(pi, 0)].astype(np.float32) / norms[np.maximum(pi, 0)][..., None]  # [B, P, dim]
        cos = np.einsum("bdk,bpk->bdp", ce, pe)  # [B, D, P]
        cos = np.where((pi >= 0)[:, None, :], cos, -np.inf).max(axis=2)  # [B, D]
        out[b:b + step] = np.where(ci >= 0, cos, np.nan)
    return out


def _array_digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:32]


def doc_embeddings(pool: CandidatePool, dataset: Dataset, cache_dir: Path | None, teacher=None) -> np.ndarray:
    """The document embeddings of the pool's teacher (or ``teacher``: a Teacher, an EncoderSpec or an alias), from
    the cache."""
    from hardneg.encode.cache import encode_cached
    from hardneg.encode.encoder import EncoderSpec, load_encoder
    from hardneg.mining.teachers import as_teacher

    if teacher is None:
        d = pool.meta.get("teacher_spec")
        if not d:
            raise HardnegError(f"posnbr needs document embeddings, and the pool of {pool.teacher} has none (a fusion "
                               "or hand-made pool)", where="posnbr",
                               fix="mine with a single encoder teacher, or pass the pool_extras teacher=")
    t = as_teacher(EncoderSpec.from_dict(d) if teacher is None else teacher)
    if t.kind != "single":
        raise HardnegError(f"posnbr needs one encoder's document embeddings, got {t}", where="posnbr",
                           fix="use a single encoder teacher")
    enc = load_encoder(t.base, cache_dir)
    return encode_cached(enc, dataset.corpus.ids, dataset.corpus.encoding_texts, "doc", cache_dir, progress=False)


def judge_scores(pool: CandidatePool, dataset: Dataset, teacher: str, cache_dir: Path | None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Another teacher's scores of the pool's candidates and positives: (float32 [Q, D] NaN pads, float32 [P])."""
    from hardneg.encode.cache import dataset_embeddings
    from hardneg.encode.encoder import EncoderSpec, load_encoder
    from hardneg.search.exact import score_pairs

    qrow = dataset.queries.row
    q_emb, d_emb = dataset_embeddings(load_encoder(EncoderSpec(model=teacher), cache_dir), dataset, cache_dir)
    q_emb = q_emb[np.asarray([qrow[q] for q in pool.qids], dtype=np.int64)]  # [Q, dim]
    q, d = pool.cand_idx.shape
    valid = pool.cand_idx >= 0
    qq = np.repeat(np.arange(q), d)[valid.ravel()]
    cand = np.full((q, d), np.nan, dtype=np.float32)
    cand[valid] = score_pairs(q_emb, d_emb, qq, pool.cand_idx[valid])
    pos_q = np.repeat(np.arange(q), np.diff(pool.pos_ptr))
    return cand, np.asarray(score_pairs(q_emb, d_emb, pos_q, pool.pos_idx), dtype=np.float32)


def pool_extras(pool: CandidatePool, dataset: Dataset, cache_dir: Path | None, *,
                need: set[str] | frozenset[str] = frozenset({"pos_cos", "dup"}), teacher=None,
                d_emb: np.ndarray | None = None) -> PoolExtras:
    """The arrays ``need`` asks for (``pos_cos``, ``dup``, ``judge:TEACHER``); ``pos_cos`` is cached under
    ``<cache>/fn``."""
    if pool.cand_idx.size and int(pool.cand_idx.max()) >= len(dataset.corpus):
        raise HardnegError("the candidate pool refers to rows beyond the dataset's corpus", where=dataset.name,
                           fix="pass the dataset the pool was mined on")
    pos_cos = dup = None
    if "dup" in need:
        dup = dup_mask(pool, dataset.corpus.encoding_texts)
    if "pos_cos" in need:
        fp = pool.meta.get("teacher_fingerprint", pool.teacher) if teacher is None else str(teacher)
        key = stable_hash({"teacher": fp, "corpus": dataset.corpus.fingerprint,
                           "pool": _array_digest(pool.cand_idx, pool.pos_ptr, pool.pos_idx), "what": "pos_cos"}, n=24)
        f = None if cache_dir is None else Path(cache_dir) / "fn" / key / "pos_cos.npy"
        if f is not None and f.is_file() and d_emb is None:
            pos_cos = read_npy(f)
        else:
            emb = d_emb if d_emb is not None else doc_embeddings(pool, dataset, cache_dir, teacher)
            pos_cos = pos_cos_matrix(pool, np.asarray(emb))
            if f is not None and d_emb is None:
                ensure_dir(f.parent)
                write_npy(f, pos_cos)
    judges = {k.split(":", 1)[1]: judge_scores(pool, dataset, k.split(":", 1)[1], cache_dir)
              for k in sorted(need) if k.startswith("judge:")}
    return PoolExtras(pos_cos=pos_cos, dup=dup, judge=judges or None)
