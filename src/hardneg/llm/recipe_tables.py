"""The recipe's config tables, each field declared once with its help: ``hardneg.options`` turns every field into a
``--table.key`` flag of ``hardneg recipe``, a key of its TOML file and a ``table.key=value`` override alike.

    [recipe]    RecipeSection: out, cache, seed
    [model]     hardneg.llm.decoder.DecoderConfig: how the causal LM becomes an embedder
    [lora]      LoraSection: LoRA of both stages
    [train]     training settings shared by both stages: TrainConfig (but student and query_prompt, which the
                recipe sets) and LLMTrainExtras
    [mine]      MineSection: how ``beir = ...`` sources are mined
    [stage1]    StageSection (data: the [[stage1.data]] sources) + the [train] keys, which override [train]
    [stage2]    the same, plus include_stage1_data; no [stage2] table = a one-stage recipe
    [evaluate]  hardneg.llm.recipe_config.EvalSpec

This module is read for ``hardneg recipe --help`` (the classes from source, without import), so it imports
nothing heavy; ``hardneg.llm.recipe_config`` validates the tables and builds the ``RecipeConfig``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hardneg.errors import ConfigErrors
from hardneg.llm.decoder import DEFAULT_LORA_TARGETS
from hardneg.options import Table, opt


@dataclass(frozen=True)
class RecipeSection:
    out: str = opt("runs/nv-retriever-v1", "Output folder: config.resolved.json, results.json, timings.json and "
                                           "stages/ (one hashed folder per stage: a rerun resumes).")
    cache: str | None = opt(None, "Cache folder for embeddings, pools and BEIR downloads [default: $HARDNEG_CACHE or "
                                  "~/.cache/hardneg].")
    seed: int = opt(0, "Seed of the max_rows subsets, and of training and mining where they set none.")

    def __post_init__(self) -> None:
        p = []
        if not isinstance(self.out, str) or not self.out:
            p.append(f"out={self.out!r}: must be a folder path")
        if self.cache is not None and (not isinstance(self.cache, str) or not self.cache):
            p.append(f"cache={self.cache!r}: must be a folder path")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            p.append(f"seed={self.seed!r}: must be an integer >= 0")
        if p:
            raise ConfigErrors(p, where="recipe")


@dataclass(frozen=True)
class LoraSection:
    """LoRA of both stages (its keys are TrainConfig's ``lora*``; a stage's own ``lora_*`` keys win)."""

    enabled: bool = opt(True, "Train LoRA adapters (merged into the weights on save); false trains every weight.")
    rank: int = opt(16, "LoRA rank (Table 8: 16).")
    alpha: int = opt(32, "LoRA alpha (Table 8: 32).")
    dropout: float = opt(0.1, "LoRA dropout.")
    target_modules: tuple[str, ...] = opt(DEFAULT_LORA_TARGETS, "Modules LoRA adapts, repeatable [default: every "
                                                                "attention and MLP projection].")


@dataclass(frozen=True)
class MineSection:
    """How ``beir = ...`` sources are mined; a recipe whose sources are all ``mined = FILE`` needs no [mine]."""

    teacher: str | dict[str, Any] = opt("minilm", "Teacher: an alias, folder or hub id, or a table of encoder keys "
                                                  '(model, query_prompt, max_seq_length, batch_size, dtype, ...), e.g. '
                                                  '{model = "intfloat/e5-mistral-7b-instruct", query_prompt = '
                                                  '"Instruct: {instruction}\\nQuery: "}; {instruction} is replaced by '
                                                  "each source's instruction.")
    strategy: str = opt("percpos(0.95)+topk(5)", "Mining strategy (see `hardneg mine --help`); stage 1 trains on "
                                                 "the top n_negatives of it.")
    depth: int = opt(100, "Candidates kept per query before filtering.")
    seed: int | None = opt(None, "Seed of the sampled strategies [default: recipe.seed].")


@dataclass(frozen=True)
class StageSection:
    """A stage's own keys; its other keys are the training settings of [train], which they override."""

    data: tuple[dict | str, ...] = opt((), "Training source, repeatable: [[stageN.data]] tables in the TOML, a TOML "
                                           'inline table on the command line, e.g. {beir = "scifact", max_rows = '
                                           '1000}. Keys: mined (a mined.jsonl) or beir (a BEIR folder or name, mined '
                                           "with [mine]), kind (retrieval, classification, clustering, sts), split, "
                                           "name, instruction, max_rows.")
    include_stage1_data: bool | None = opt(None, "Also train on stage 1's sources, with this stage's settings "
                                                 "[default: true].")


_TRAIN = ("hardneg.llm.stage:LLMTrainExtras", "hardneg.train.config:TrainConfig")
_SET_BY_RECIPE = ("student", "query_prompt")  # each stage's student; each source's instruction prompts its queries
_ME = "hardneg.llm.recipe_tables"

# the tables of `hardneg recipe`, in the order of the TOML (and of --help)
TABLES: list[Table] = [
    Table("recipe", (f"{_ME}:RecipeSection",), bare=False),
    Table("model", ("hardneg.llm.decoder:DecoderConfig",), bare=False),
    Table("lora", (f"{_ME}:LoraSection",), bare=False),
    Table("train", _TRAIN, bare=False, exclude=_SET_BY_RECIPE),
    Table("mine", (f"{_ME}:MineSection",), bare=False),
    Table("stage1", (f"{_ME}:StageSection", *_TRAIN), bare=False, inherit="train",
          exclude=(*_SET_BY_RECIPE, "include_stage1_data")),  # stage 1 has no earlier stage
    Table("stage2", (f"{_ME}:StageSection", *_TRAIN), bare=False, inherit="train", exclude=_SET_BY_RECIPE),
    Table("evaluate", ("hardneg.llm.recipe_config:EvalSpec",), bare=False),
]
