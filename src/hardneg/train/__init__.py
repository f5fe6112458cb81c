"""Fine-tune embedding students on mined hard negatives (thin layer over the sentence-transformers trainer).

``TrainConfig`` imports cheaply; ``train`` and the losses load torch and sentence-transformers on first use.
"""
from __future__ import annotations

from typing import Any

from hardneg.train.config import TrainConfig

__all__ = ["TrainConfig", "train", "prepare_rows", "merge_lora", "OwnNegativesInfoNCELoss",
           "CachedOwnNegativesInfoNCELoss", "build_loss"]

_LAZY = {"train": "trainer", "prepare_rows": "trainer", "merge_lora": "trainer",
         "OwnNegativesInfoNCELoss": "losses", "CachedOwnNegativesInfoNCELoss": "losses", "build_loss": "losses"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"hardneg.train.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'hardneg.train' has no attribute {name!r}")
