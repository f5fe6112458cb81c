"""One stage of the NV-Retriever-v1 recipe: a decoder-LLM student trained on several sources at once.

Each training source is a sentence-transformers dataset of its own inside one ``DatasetDict``; the trainer's
multi-dataset sampler (``proportional`` by default) draws every batch from a single source, so

- a batch has one instruction, which is what lets ``Pooling(include_prompt=False)`` mask it (ST tracks one
  prompt length per batch);
- each source has its own loss: retrieval -> ``MultipleNegativesRankingLoss`` (hard + in-batch negatives),
  non-retrieval -> ``OwnNegativesInfoNCELoss`` (own hard negatives only: in a classification batch the other
  rows' texts often share the query's label, so they would be false negatives).

The per-stage training knobs are a ``TrainConfig`` (validated by hardneg.train) plus ``LLMTrainExtras``
(gradient checkpointing, bf16, optimizer, sampler), which the core trainer does not have. The training loop is
``hardneg.train.trainer.fit_model``: this module builds its ``TrainingSetup`` and the LLM entries of
``train_config.json`` (weight hashes before/after, per-source statistics, precision).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hardneg.errors import ConfigErrors, HardnegError
from hardneg.llm.decoder import DEFAULT_LORA_TARGETS, instruction_prompt
from hardneg.options import opt

KINDS = ("retrieval", "classification", "clustering", "sts")
SAMPLERS = ("proportional", "round_robin")
BF16_CHOICES = ("auto", True, False)
WEIGHT_DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass(frozen=True)
class LLMTrainExtras:
    """Trainer settings an LLM student needs beyond ``TrainConfig`` (the recipe's ``[train]`` / ``[stageN]``)."""

    gradient_checkpointing: bool = opt(True, "Recompute each decoder layer in the backward pass (non-reentrant): "
                                             "activations drop to one hidden state per layer and token.")
    bf16: bool | str = opt("auto", "bf16 autocast: auto (on a CUDA GPU that supports it, fp32 elsewhere), true "
                                   "(fails where unsupported) or false (fp32).")
    weights_dtype: str = opt("auto", "dtype of the frozen base weights while training: auto (bfloat16 when bf16 is "
                                     "on: 14.5 GB for Mistral-7B instead of 29 GB, else float32), float32, bfloat16 "
                                     "or float16; LoRA adapters stay float32.")
    optimizer: str = opt("adamw_torch", "transformers optim name.")
    lr_scheduler: str = opt("linear", "transformers lr_scheduler_type name.")
    sampler: str = opt("proportional", "How batches alternate between sources: proportional (every row once per "
                                       "epoch, sources drawn in proportion to their size) or round_robin (one batch "
                                       "per source in turn, stops with the smallest source).")
    attn_implementation: str | None = opt(None, "Attention implementation while training [default: the one stored "
                                                "in the model (sdpa)].")
    record_weight_hashes: bool = opt(True, "sha256 of the weights before LoRA and after merging (proves stage 2 "
                                           "starts from stage 1's output); one pass over the weights.")

    def __post_init__(self) -> None:
        p: list[str] = []
        for name in ("gradient_checkpointing", "record_weight_hashes"):
            if not isinstance(getattr(self, name), bool):
                p.append(f"{name}={getattr(self, name)!r}: must be true or false")
        if self.bf16 not in BF16_CHOICES or (isinstance(self.bf16, int) and not isinstance(self.bf16, bool)):
            p.append(f"bf16={self.bf16!r}: must be \"auto\", true or false")
        if self.weights_dtype not in WEIGHT_DTYPES:
            p.append(f"weights_dtype={self.weights_dtype!r}: must be one of {', '.join(WEIGHT_DTYPES)}")
        for name in ("optimizer", "lr_scheduler"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                p.append(f"{name}={getattr(self, name)!r}: must be a transformers name, e.g. "
                         + ("'adamw_torch'" if name == "optimizer" else "'linear'"))
        if self.sampler not in SAMPLERS:
            p.append(f"sampler={self.sampler!r}: must be one of {', '.join(SAMPLERS)}")
        if self.attn_implementation is not None and not isinstance(self.attn_implementation, str):
            p.append(f"attn_implementation={self.attn_implementation!r}: must be a string such as 'sdpa'")
        if p:
            raise ConfigErrors(p, where="train config")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Precision:
    bf16: bool
    weights_dtype: str
    reason: str


def resolve_precision(extras: LLMTrainExtras) -> Precision:
    """bf16 autocast and the weights' dtype for this machine (``"auto"``: bf16 only on a bf16-capable GPU)."""
    from hardneg.llm import decoder  # through the module: tests monkeypatch decoder.bf16_supported

    supported = decoder.bf16_supported()
    if extras.bf16 is True and not supported:
        raise HardnegError("bf16=true but this machine has no CUDA device with bfloat16 support",
                           where="train config", fix='set bf16 = "auto" (fp32 here) or false')
    on = supported if extras.bf16 == "auto" else bool(extras.bf16)
    reason = ("bf16 requested" if extras.bf16 is True else "bf16 disabled" if extras.bf16 is False
              else "auto: CUDA bf16 available" if supported else "auto: no CUDA device with bf16 (fp32)")
    dtype = extras.weights_dtype if extras.weights_dtype != "auto" else ("bfloat16" if on else "float32")
    return Precision(bf16=on, weights_dtype=dtype, reason=reason)


@dataclass
class StageData:
    """One training source: mined rows (the mined.jsonl format), its kind and its query instruction."""

    name: str
    kind: str
    rows: list[dict[str, Any]]
    instruction: str = ""
    source: str = ""  # where the rows came from (for the record)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise HardnegError(f"data source {self.name!r}: kind={self.kind!r}",
                               fix=f"use one of {', '.join(KINDS)}")
        if not self.name or not isinstance(self.name, str):
            raise HardnegError(f"data source name must be a non-empty string, got {self.name!r}",
                               fix='set name = "scifact" (names key the per-source losses and prompts)')


@dataclass
class StageResult:
    """The trained model (LoRA merged), its folder and what was recorded in ``train_config.json``."""

    model: Any
    out_dir: Path
    record: dict[str, Any]
    curve: dict[str, list[dict[str, float]]]


def kind_batch_sampler(in_batch_negatives: bool):
    """Per-source batch sampler: no duplicate texts in retrieval batches with in-batch negatives (a duplicate
    would be a false negative), plain random batches elsewhere. Sources are told apart by ``info.description``."""
    from sentence_transformers.base.sampler import DefaultBatchSampler, NoDuplicatesBatchSampler
    from torch.utils.data import RandomSampler

    def make(dataset: Any, **kw: Any) -> Any:
        kind = (getattr(dataset, "info", None) and dataset.info.description) or ""
        if in_batch_negatives and kind == "hardneg:retrieval":
            return NoDuplicatesBatchSampler(dataset, **kw)
        return DefaultBatchSampler(RandomSampler(dataset, generator=kw.get("generator")), **kw)

    return make


def add_decoder_lora(model: Any, cfg: Any) -> dict[str, Any]:
    """LoRA adapters on the configured (or default decoder) projections, checked to exist in the model."""
    from hardneg.llm.decoder import lora_targets
    from hardneg.train.trainer import add_lora

    wanted = tuple(cfg.lora_target_modules) if cfg.lora_target_modules else DEFAULT_LORA_TARGETS
    targets = lora_targets(model, wanted)
    missing = sorted(set(wanted) - set(targets))
    if not targets or (cfg.lora_target_modules and missing):
        raise HardnegError(f"LoRA target modules not found in the student: {', '.join(missing or wanted)}",
                           where="train config", fix="set lora target_modules to Linear layer names of the model, "
                                                     f"e.g. {list(DEFAULT_LORA_TARGETS)}")
    return add_lora(model, cfg, targets)


def load_decoder_student(path: str, precision: Precision, extras: LLMTrainExtras, cfg: Any) -> Any:
    """The student folder in the training dtype (``use_cache`` off), its lengths checked against its positions."""
    from sentence_transformers import SentenceTransformer

    from hardneg.llm.decoder import torch_dtype

    model_kwargs: dict[str, Any] = {"dtype": torch_dtype(precision.weights_dtype)}
    if extras.attn_implementation:
        model_kwargs["attn_implementation"] = extras.attn_implementation
    try:
        model = SentenceTransformer(path, model_kwargs=model_kwargs)
    except OSError as exc:
        raise HardnegError(f"cannot load the student {path!r}: {str(exc).splitlines()[0]}", where="train config",
                           fix="pass a folder written by hardneg.llm (or any sentence-transformers folder)") from None
    hf = model.transformers_model
    hf.config.use_cache = False
    limit = getattr(hf.config, "max_position_embeddings", None)
    for name in ("query_max_length", "doc_max_length"):
        if isinstance(limit, int) and getattr(cfg, name) > limit:
            raise HardnegError(f"{name}={getattr(cfg, name)} exceeds the student's {limit} positions",
                               where="train config", fix=f"set {name} <= {limit}")
    return model


def stage_negatives(data: Sequence[StageData], cfg: Any) -> int:
    """The negatives per row of a stage (``cfg.n_negatives``, else the most any row has), checked against the
    sources: names unique, something to contrast, hard negatives for every non-retrieval source."""
    if not data:
        raise HardnegError("a stage needs at least one data source", where="recipe config",
                           fix="add [[stage1.data]] entries (mined.jsonl files or BEIR folders)")
    names = [d.name for d in data]
    if len(set(names)) != len(names):
        raise HardnegError(f"data source names must be unique, got {names}", where="recipe config",
                           fix="give each [[stageN.data]] entry its own name")
    n = cfg.n_negatives if cfg.n_negatives is not None else max(len(r.get("neg", [])) for d in data for r in d.rows)
    if n == 0 and not cfg.in_batch_negatives:
        raise HardnegError("n_negatives=0 and in_batch_negatives=false: nothing to contrast", where="train config",
                           fix="set n_negatives >= 1 or in_batch_negatives = true")
    if n == 0 and any(d.kind != "retrieval" for d in data):
        raise HardnegError("non-retrieval sources need hard negatives (they train without in-batch negatives)",
                           where="train config", fix="set n_negatives >= 1")
    return n


@dataclass
class Sources:
    """The ``DatasetDict`` entries of a stage, keyed by source name, with their losses, prompts and counts."""

    datasets: dict[str, Any]
    losses: dict[str, Any]
    prompts: dict[str, dict[str, str]]
    stats: dict[str, Any]


def build_sources(model: Any, data: Sequence[StageData], cfg: Any, n: int) -> Sources:
    """Each source as a dataset of ``n`` negatives per row, with its loss (in-batch negatives for retrieval
    only) and its prompts (the instruction on anchors, ``cfg.doc_prompt`` on documents)."""
    from datasets import Dataset, DatasetInfo

    from hardneg.train.losses import build_loss
    from hardneg.train.rows import prepare_rows

    loss_by_kind = {
        "retrieval": build_loss(model, cfg),
        "other": build_loss(model, replace(cfg, in_batch_negatives=False)) if n > 0 else None,
    }
    out = Sources({}, {}, {}, {})
    for d in data:
        prep = prepare_rows(d.rows, n, cfg.short_rows, cfg.seed, where=f"data source {d.name!r}")
        if prep.n_rows_used == 0:
            raise HardnegError(f"data source {d.name!r}: no rows left ({prep.n_rows_in} in, {prep.n_rows_dropped} "
                               f"short of {n} negatives)", where="training rows",
                               fix="mine more negatives (e.g. topk(5)), or use short_rows = \"pad\"")
        out.datasets[d.name] = Dataset.from_dict(prep.columns, info=DatasetInfo(description=f"hardneg:{d.kind}"))
        out.losses[d.name] = loss_by_kind["retrieval" if d.kind == "retrieval" else "other"]
        p = instruction_prompt(d.instruction)
        out.prompts[d.name] = {**({"anchor": p} if p else {}),
                               **({c: cfg.doc_prompt for c in prep.columns if c != "anchor"} if cfg.doc_prompt else {})}
        p_len = model[0]._get_prompt_length(p) if p else 0
        if p_len and p_len >= cfg.query_max_length:
            raise HardnegError(f"data source {d.name!r}: the instruction alone is {p_len} tokens, so "
                               f"query_max_length={cfg.query_max_length} leaves no query token to pool",
                               where="train config", fix=f"raise query_max_length well above {p_len}")
        out.stats[d.name] = {"kind": d.kind, "source": d.source, "instruction": d.instruction, "query_prompt": p,
                             "prompt_tokens": p_len, "loss": type(out.losses[d.name]).__name__, **prep.stats()}
    return out


def checkpointing_active(model: Any) -> bool:
    """Whether the student's decoder recomputes activations in the backward pass (transformers 4 and 5 names)."""
    hf = model.transformers_model
    if hasattr(type(hf), "is_activation_checkpointing"):
        return bool(getattr(hf, "is_activation_checkpointing", None))
    return bool(getattr(hf, "is_gradient_checkpointing", False))


def fit_stage(data: Sequence[StageData], cfg: Any, extras: LLMTrainExtras, out_dir: str | Path, *,
              progress: bool = True) -> StageResult:
    """Train ``cfg.student`` on several sources at once (one ``DatasetDict`` entry each) and save the merged model.

    ``cfg`` is a ``TrainConfig``: ``n_negatives`` columns per row (``short_rows`` for rows with fewer),
    ``in_batch_negatives`` applies to retrieval sources (non-retrieval sources never use them), LoRA if
    ``cfg.lora``. ``cfg.query_prompt`` is ignored: each source's instruction is its query prompt
    (``"{instruction}: "``), masked out of the pooling; ``cfg.doc_prompt`` (default none) prefixes the documents
    (and, being a prompt, is masked too). Output: a sentence-transformers folder at ``out_dir`` with
    ``train_config.json`` (including weight hashes before/after), ``loss_curve.json`` and ``loss_curve.png``,
    written by ``hardneg.train.trainer.fit_model``.
    """
    import transformers
    from datasets import DatasetDict
    from sentence_transformers.base.sampler import MultiDatasetBatchSamplers

    from hardneg.llm.decoder import describe, weights_digest
    from hardneg.train.trainer import TrainingSetup, fit_model, jsonable, make_collator

    n = stage_negatives(data, cfg)
    precision = resolve_precision(extras)
    transformers.set_seed(cfg.seed)
    model = load_decoder_student(cfg.student, precision, extras, cfg)
    initial = weights_digest(model) if extras.record_weight_hashes else None
    lora_info = add_decoder_lora(model, cfg) if cfg.lora else None
    src = build_sources(model, data, cfg, n)
    columns = list(next(iter(src.datasets.values())).column_names)
    collator = make_collator(model, cfg, columns, src.prompts)
    record = {
        "config": cfg.to_dict(), "extras": extras.to_dict(), "student_path": cfg.student,
        "precision": dataclasses.asdict(precision), "gradient_checkpointing_active": None, "n_negatives": n,
        "sources": src.stats,
        "losses": {name: {"class": type(loss).__name__, **jsonable(loss.get_config_dict())}
                   for name, loss in src.losses.items()},
        "max_length": {"query": cfg.query_max_length, "document": cfg.doc_max_length},
        "lora": lora_info, "weights": None, "model": None,
    }
    sampler = (MultiDatasetBatchSamplers.PROPORTIONAL if extras.sampler == "proportional"
               else MultiDatasetBatchSamplers.ROUND_ROBIN)
    setup = TrainingSetup(
        train_dataset=DatasetDict(src.datasets), loss=src.losses, collator=collator, record=record,
        bf16=precision.bf16, checkpointing=extras.gradient_checkpointing,
        args={"optim": extras.optimizer, "lr_scheduler_type": extras.lr_scheduler, "eval_strategy": "no",
              "batch_sampler": kind_batch_sampler(cfg.in_batch_negatives), "multi_dataset_batch_sampler": sampler})

    def on_saved(trained: Any) -> dict[str, Any]:
        final = weights_digest(trained) if extras.record_weight_hashes else None
        return {"gradient_checkpointing_active": checkpointing_active(trained),
                "weights": {"initial_sha256": initial, "final_sha256": final}, "model": describe(trained)}

    res = fit_model(model, cfg, out_dir, setup, progress=progress, on_saved=on_saved)
    return StageResult(model=res.model, out_dir=res.out_dir, record=res.record, curve=res.curve)
