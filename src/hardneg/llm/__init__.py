"""LLM (decoder) embedding students after NV-Retriever-v1: bidirectional attention, instruction-masked mean
pooling, LoRA, two-stage training (``recipe``). Imports torch lazily, like ``hardneg.train``."""
from __future__ import annotations

from typing import Any

__all__ = ["DecoderConfig", "build_decoder_embedder", "make_decoder_student", "save_embedder", "instruction_prompt",
           "set_bidirectional", "is_bidirectional", "verify_bidirectional", "prompt_boundary_report",
           "weights_digest", "bf16_supported", "DEFAULT_LORA_TARGETS",
           "RecipeConfig", "load_recipe", "run_recipe", "fit_stage", "StageData", "LLMTrainExtras"]

_LAZY = {**{n: "decoder" for n in ("DecoderConfig", "build_decoder_embedder", "make_decoder_student",
                                  "save_embedder", "instruction_prompt", "set_bidirectional", "is_bidirectional",
                                  "verify_bidirectional", "weights_digest", "bf16_supported",
                                  "DEFAULT_LORA_TARGETS")},
         "prompt_boundary_report": "boundary",
         **{n: "recipe_config" for n in ("RecipeConfig", "load_recipe")},
         "run_recipe": "recipe",
         **{n: "stage" for n in ("fit_stage", "StageData", "LLMTrainExtras")}}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"hardneg.llm.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'hardneg.llm' has no attribute {name!r}")
