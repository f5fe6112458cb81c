"""Contrastive losses: InfoNCE with or without in-batch negatives, plain or GradCache-cached.

With in-batch negatives the sentence-transformers losses are used as they are
(``MultipleNegativesRankingLoss`` / ``CachedMultipleNegativesRankingLoss``): for query i the softmax runs over
its positive, its hard negatives and every other row's positive and hard negatives. sentence-transformers 6.2
has no switch that leaves the in-batch documents out (``hardness_mode`` only re-weights them), so the
"own negatives only" variant is written here.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from sentence_transformers.base.losses.gradcache import CachedLossMixin
from sentence_transformers.base.losses.merged_forward import embed_columns
from sentence_transformers.sentence_transformer.losses import (
    CachedMultipleNegativesRankingLoss,
    MultipleNegativesRankingLoss,
)
from torch import Tensor, nn

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from hardneg.train.config import TrainConfig


def _pairwise_cos(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise cosine similarity: [n, d] x [n, d] -> [n]."""
    return (F.normalize(a, p=2, dim=-1) * F.normalize(b, p=2, dim=-1)).sum(dim=-1)


def own_negatives_infonce(query: Tensor, docs: list[Tensor], scale: float,
                          pairwise_sim: Callable[[Tensor, Tensor], Tensor] = _pairwise_cos) -> Tensor:
    """Per-row InfoNCE losses [b] over each query's own positive (``docs[0]``) and hard negatives (``docs[1:]``)."""
    # [b, 1 + k]: column 0 is the positive; row i never sees row j's documents.
    logits = torch.stack([pairwise_sim(query, d) for d in docs], dim=1) * scale
    return torch.logsumexp(logits, dim=1) - logits[:, 0]


class OwnNegativesInfoNCELoss(nn.Module):
    """InfoNCE without in-batch negatives (paper eq. 1 with D^N = the row's own hard negatives).

    For a row with query q, positive d+ and hard negatives n_1..n_k, with s = cosine similarity and
    scale = 1/tau::

        L = -log( exp(scale * s(q, d+)) / (exp(scale * s(q, d+)) + sum_j exp(scale * s(q, n_j))) )

    averaged over the rows of the batch. Input columns: (anchor, positive, negative_1, ..., negative_k),
    k >= 1. The documents of other rows take no part, so the batch size does not change the objective.
    """

    def __init__(self, model: SentenceTransformer, scale: float = 20.0) -> None:
        super().__init__()
        if not scale > 0:
            raise ValueError("scale must be > 0")
        self.model = model
        self.scale = scale

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        # One forward for the anchors, one merged forward for all document columns (like MNRL).
        embeddings = embed_columns(self.model, sentence_features)
        return self.compute_loss_from_embeddings(embeddings, labels)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None = None) -> Tensor:
        """Loss from per-column embeddings: [anchor [b, d], positive [b, d], negative_j [b, d]...]."""
        if len(embeddings) < 3:
            raise ValueError("own-negatives InfoNCE needs at least one hard-negative column")
        return own_negatives_infonce(embeddings[0], list(embeddings[1:]), self.scale).mean()

    def get_config_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "similarity_fct": "cos_sim", "in_batch_negatives": False}

    @property
    def temperature(self) -> float:
        return 1.0 / self.scale


class CachedOwnNegativesInfoNCELoss(CachedLossMixin, nn.Module):
    """GradCache version of :class:`OwnNegativesInfoNCELoss`: same loss and gradients, bounded memory."""

    def __init__(self, model: SentenceTransformer, scale: float = 20.0, mini_batch_size: int = 32) -> None:
        super().__init__()
        if not scale > 0:
            raise ValueError("scale must be > 0")
        self.model = model
        self.scale = scale
        self.mini_batch_size = mini_batch_size

    def calculate_loss(self, reps: list[list[Tensor]], labels: Tensor | None = None, *,
                       with_backward: bool = False) -> Tensor:
        query = torch.cat(reps[0])  # [b, d]
        docs = [torch.cat(r) for r in reps[1:]]  # (1 + k) x [b, d]
        if len(docs) < 2:
            raise ValueError("own-negatives InfoNCE needs at least one hard-negative column")
        b = query.size(0)
        total: list[Tensor] = []
        # Rows are independent, so the loss can be chunked (and back-propagated) row block by row block.
        for begin in range(0, b, self.mini_batch_size):
            end = min(begin + self.mini_batch_size, b)
            part = own_negatives_infonce(query[begin:end], [d[begin:end] for d in docs], self.scale)
            part = part.sum() / b
            if with_backward:
                part.backward()
                part = part.detach()
            total.append(part)
        return sum(total)

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        return self.forward_cached(list(sentence_features), labels)

    def get_config_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "similarity_fct": "cos_sim", "in_batch_negatives": False,
                "mini_batch_size": self.mini_batch_size}


def build_loss(model: SentenceTransformer, cfg: TrainConfig) -> nn.Module:
    """The loss module for ``cfg``: (in-batch negatives on/off) x (plain/cached)."""
    cached = cfg.loss == "cached_infonce"
    mask = getattr(cfg, "mask_false_negatives", "none")
    if mask != "none":  # validated by TrainConfig: in-batch negatives, plain infonce
        mode, _, rest = mask.partition("(")
        return MaskedInfoNCELoss(model, scale=cfg.scale, mode=mode, margin=float(rest.rstrip(")") or 0.0))
    if cfg.in_batch_negatives:
        if cached:
            return CachedMultipleNegativesRankingLoss(model, scale=cfg.scale, mini_batch_size=cfg.mini_batch_size)
        return MultipleNegativesRankingLoss(model, scale=cfg.scale)
    if cached:
        return CachedOwnNegativesInfoNCELoss(model, scale=cfg.scale, mini_batch_size=cfg.mini_batch_size)
    return OwnNegativesInfoNCELoss(model, scale=cfg.scale)



# ---------------------------------------------------------------- in-batch false-negative masking

def id_hash(text: str) -> int:
    """A stable 63-bit integer for an id (qid or docid), for the ``label`` column of ``mask_false_negatives=id``."""
    import hashlib

    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little") >> 1


def id_labels(ids: list[list[str]]) -> list[list[int]]:
    """Per row [qid, positive docid, negative docids...] -> their ``id_hash`` values (the trainer's label column)."""
    return [[id_hash(x) for x in row] for row in ids]


def _token_keys(features: dict[str, Tensor]) -> Tensor:
    """One int64 key per tokenised text [b]: equal texts (same tokens after truncation) get equal keys."""
    ids = features["input_ids"]
    att = features.get("attention_mask", torch.ones_like(ids))
    keys = [hash(tuple(r[m.bool()].tolist())) for r, m in zip(ids, att)]
    return torch.tensor(keys, dtype=torch.int64, device=ids.device)


def false_negative_mask(mode: str, sim: Tensor, *, margin: float = 0.0, doc_keys: Tensor | None = None,
                        labels: Tensor | None = None) -> Tensor:
    """bool [b, (1+k) b]: which in-batch candidates to leave out of anchor i's softmax.

    Columns are the batch's documents in MNRL order: the b positives, then negative_1 of every row, and so on;
    column c belongs to row c mod b. A row's own positive and own hard negatives are never masked.

    - ``id``:    the candidate's docid is the anchor's positive's, or the candidate is the positive of another row of
                 the same query (``labels`` [b, 2 + k] = id hashes of qid, positive, negatives)
    - ``text``:  the candidate's text (its tokens) equals the anchor's positive's (``doc_keys`` [(1+k) b])
    - ``score``: sim(anchor, candidate) > sim(anchor, own positive) + margin
    """
    b, cols = sim.shape
    col_row = torch.arange(cols, device=sim.device) % b  # [C]
    own = col_row[None, :] == torch.arange(b, device=sim.device)[:, None]  # [b, C]
    if mode == "id":
        if labels is None:
            raise ValueError("mask_false_negatives=id needs the id label column")
        qid, doc = labels[:, 0], labels[:, 1:].T.reshape(-1)  # [b], [C] in column order
        same_doc = doc[None, :] == labels[:, 1][:, None]  # [b, C]
        same_query_pos = (torch.arange(cols, device=sim.device) < b)[None, :] & (qid[col_row][None, :] == qid[:, None])
        mask = same_doc | same_query_pos
    elif mode == "text":
        if doc_keys is None:
            raise ValueError("mask_false_negatives=text needs the documents' token keys")
        mask = doc_keys[None, :] == doc_keys[:b][:, None]  # [b, C]: equal to the anchor's positive (column i)
    elif mode == "score":
        pos = sim.diagonal()[:, None]  # [b, 1] sim(anchor i, own positive i)
        mask = sim.detach() > pos.detach() + margin
    else:
        raise ValueError(f"unknown mask mode {mode}")
    return mask & ~own


def masked_infonce(query: Tensor, docs: list[Tensor], scale: float, mode: str, *, margin: float = 0.0,
                   doc_keys: Tensor | None = None, labels: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(mean loss, masked logits [b, (1+k) b]) of in-batch InfoNCE with false negatives left out (-inf logits)."""
    cand = torch.cat(docs, dim=0)  # [(1+k) b, d]
    sim = F.normalize(query, p=2, dim=-1) @ F.normalize(cand, p=2, dim=-1).T  # [b, (1+k) b]
    mask = false_negative_mask(mode, sim, margin=margin, doc_keys=doc_keys, labels=labels)
    logits = (sim * scale).masked_fill(mask, float("-inf"))
    target = torch.arange(query.size(0), device=query.device)
    return F.cross_entropy(logits, target), logits


def mask_counts(logits: Tensor) -> tuple[int, int]:
    """(masked, in-batch candidates) of masked logits [b, (1+k) b]: each row's candidates other than its own
    positive and k negatives, and how many of them the mask took out (-inf)."""
    b, cols = logits.shape
    return int(torch.isinf(logits).sum()), b * (cols - cols // b)


class MaskedInfoNCELoss(nn.Module):
    """MNRL (in-batch InfoNCE) that leaves in-batch false negatives out of each anchor's softmax.

    ``mode``: ``id`` | ``text`` | ``score`` (``false_negative_mask``); ``margin`` for ``score``. With ``id`` the
    dataset carries a ``label`` column of id hashes per row (``id_labels``: qid, positive, negatives).
    """

    def __init__(self, model: SentenceTransformer, scale: float = 20.0, mode: str = "id", margin: float = 0.0) -> None:
        super().__init__()
        if not scale > 0:
            raise ValueError("scale must be > 0")
        self.model, self.scale, self.mode, self.margin = model, scale, mode, margin
        self.masked, self.in_batch = 0, 0  # summed over every training batch: train_config.json "masking"

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        features = list(sentence_features)
        embeddings = embed_columns(self.model, features)
        keys = torch.cat([_token_keys(f) for f in features[1:]]) if self.mode == "text" else None
        loss, logits = masked_infonce(embeddings[0], list(embeddings[1:]), self.scale, self.mode, margin=self.margin,
                                      doc_keys=keys, labels=labels)
        if self.training:
            masked, in_batch = mask_counts(logits.detach())
            self.masked, self.in_batch = self.masked + masked, self.in_batch + in_batch
        return loss

    def training_stats(self) -> dict[str, Any]:
        """How often the mask fired during training (every batch, gradient accumulation included)."""
        return {"masked": self.masked, "in_batch_candidates": self.in_batch,
                "share": round(self.masked / self.in_batch, 6) if self.in_batch else 0.0}

    def get_config_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "similarity_fct": "cos_sim", "in_batch_negatives": True,
                "mask_false_negatives": self.mode, "margin": self.margin}
