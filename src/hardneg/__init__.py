"""hardneg: positive-aware hard-negative mining and embedding fine-tuning (NV-Retriever, arXiv 2407.15831).

The front door: the dozen names a notebook needs, imported on first use (``import hardneg`` stays light).

    import hardneg
    ds = hardneg.load_dataset("../shared/data/scifact", "train")
    pool = hardneg.get_pool(hardneg.EncoderSpec("minilm"), ds, depth=100, cache_dir=None)
    mined = hardneg.apply_strategy(pool, hardneg.parse_strategy("percpos(0.95)+topk(4)"))

``mine_hard_negatives`` is a drop-in for sentence-transformers' function of that name (``docs/st-compat.md``).
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> module that defines it
_EXPORTS = {
    "load_dataset": "hardneg.data.load",
    "load_eval_dataset": "hardneg.data.load",
    "parse_strategy": "hardneg.mining.strategy",
    "parse_teacher": "hardneg.mining.teachers",
    "as_teacher": "hardneg.mining.teachers",
    "EncoderSpec": "hardneg.encode.encoder",
    "get_pool": "hardneg.mining.pipeline",
    "apply_strategy": "hardneg.mining.select",
    "project_rows": "hardneg.mining.export",
    "MineConfig": "hardneg.mining.pipeline",
    "run_mine": "hardneg.mining.pipeline",
    "TrainConfig": "hardneg.train.config",
    "train": "hardneg.train.trainer",
    "evaluate_model": "hardneg.evaluate.pipeline",
    "load_config": "hardneg.experiments.config",
    "run_pipeline": "hardneg.experiments.run",
    "run_ablation": "hardneg.experiments.ablate",
    "write_report": "hardneg.report",
    "mine_hard_negatives": "hardneg.st_compat",
    "thin_dataset": "hardneg.data.thin",
    "HardnegError": "hardneg.errors",
}
__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    """Import a front-door name on first use (PEP 562): torch loads only when a name that needs it is used."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hardneg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
