"""The NV-Retriever-v1 recipe: a decoder-LLM student trained in two stages on mined hard negatives.

    base LLM ──build──▶ embedder folder (bidirectional, mean pooling w/o instruction, L2)     stages/base-<h>/
      stage 1: retrieval data, 1 hard negative + in-batch negatives, LoRA (merged on save)     stages/stage1-<h>/
      stage 2: stage 1's weights + fresh LoRA; retrieval data (5 hard negatives + in-batch) and
               non-retrieval data (classification, clustering, STS: 5 "negatives", no in-batch)  stages/stage2-<h>/
      evaluate: base / stage1 / stage2 on BEIR splits, per-dataset instruction on queries       stages/eval-<h>/
    results.json, timings.json, config.resolved.json

Each training source is a sentence-transformers dataset of its own inside one ``DatasetDict``; the trainer's
multi-dataset sampler (``proportional`` by default) draws every batch from a single source, so

- a batch has one instruction, which is what lets ``Pooling(include_prompt=False)`` mask it (ST tracks one
  prompt length per batch);
- each source has its own loss: retrieval -> ``MultipleNegativesRankingLoss`` (hard + in-batch negatives),
  non-retrieval -> ``OwnNegativesInfoNCELoss`` (own hard negatives only: in a classification batch the other
  rows' texts often share the query's label, so they would be false negatives).

The per-stage training knobs are a ``TrainConfig`` (validated by hardneg.train) plus ``LLMTrainExtras``
(gradient checkpointing, bf16, optimizer, sampler), which the core trainer does not have.

A stage folder is named by the hash of everything that determines it (inputs' identities and settings), so a
re-run skips finished stages and a killed run resumes at the unfinished one.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hardneg.errors import ConfigErrors, HardnegError
from hardneg.llm.decoder import DEFAULT_LORA_TARGETS, DecoderConfig, instruction_prompt

log = logging.getLogger("hardneg")

KINDS = ("retrieval", "classification", "clustering", "sts")
SAMPLERS = ("proportional", "round_robin")
BF16_CHOICES = ("auto", True, False)
WEIGHT_DTYPES = ("auto", "float32", "bfloat16", "float16")
STAGE_KEYS_NOT_TRAIN = ("data", "include_stage1_data")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# ---------------------------------------------------------------- training extras (not in TrainConfig)


@dataclass(frozen=True)
class LLMTrainExtras:
    """Trainer settings an LLM student needs beyond ``TrainConfig``.

    - ``gradient_checkpointing``: recompute each decoder layer in the backward pass (non-reentrant, so frozen
      base weights need no input-grad hack); activations drop from every layer's internals to one hidden state
      per layer and token.
    - ``bf16``: ``"auto"`` = bf16 autocast on a CUDA GPU that supports it, fp32 elsewhere (this CPU);
      ``true`` fails where unsupported; ``false`` = fp32.
    - ``weights_dtype``: dtype of the frozen base weights while training; ``"auto"`` = bfloat16 when bf16 is on
      (14.5 GB for Mistral-7B instead of 29 GB), else float32. LoRA adapters are always kept in float32.
    - ``optimizer``, ``lr_scheduler``: transformers ``optim`` / ``lr_scheduler_type`` names.
    - ``sampler``: how batches alternate between sources: ``proportional`` (every row once per epoch, sources
      drawn in proportion to their size) or ``round_robin`` (one batch per source in turn, stops with the
      smallest source).
    - ``attn_implementation``: ``None`` = the one stored in the model (transformers default: sdpa).
    - ``record_weight_hashes``: sha256 of the weights before LoRA and after merging (proves stage 2 starts from
      stage 1's output); costs one pass over the weights.
    """

    gradient_checkpointing: bool = True
    bf16: bool | str = "auto"
    weights_dtype: str = "auto"
    optimizer: str = "adamw_torch"
    lr_scheduler: str = "linear"
    sampler: str = "proportional"
    attn_implementation: str | None = None
    record_weight_hashes: bool = True

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
    from hardneg.llm.decoder import bf16_supported

    supported = bf16_supported()
    if extras.bf16 is True and not supported:
        raise HardnegError("bf16=true but this machine has no CUDA device with bfloat16 support",
                           where="train config", fix='set bf16 = "auto" (fp32 here) or false')
    on = supported if extras.bf16 == "auto" else bool(extras.bf16)
    reason = ("bf16 requested" if extras.bf16 is True else "bf16 disabled" if extras.bf16 is False
              else "auto: CUDA bf16 available" if supported else "auto: no CUDA device with bf16 (fp32)")
    dtype = extras.weights_dtype if extras.weights_dtype != "auto" else ("bfloat16" if on else "float32")
    return Precision(bf16=on, weights_dtype=dtype, reason=reason)


# ---------------------------------------------------------------- one stage


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


def _kind_batch_sampler(in_batch_negatives: bool):
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


def _add_lora(model: Any, cfg: Any) -> dict[str, Any]:
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


def _load_student(path: str, precision: Precision, extras: LLMTrainExtras, cfg: Any) -> Any:
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


def fit_stage(data: Sequence[StageData], cfg: Any, extras: LLMTrainExtras, out_dir: str | Path, *,
              progress: bool = True) -> StageResult:
    """Train ``cfg.student`` on several sources at once (one ``DatasetDict`` entry each) and save the merged model.

    ``cfg`` is a ``TrainConfig``: ``n_negatives`` columns per row (``short_rows`` for rows with fewer),
    ``in_batch_negatives`` applies to retrieval sources (non-retrieval sources never use them), LoRA if
    ``cfg.lora``. ``cfg.query_prompt`` is ignored: each source's instruction is its query prompt
    (``"{instruction}: "``), masked out of the pooling; ``cfg.doc_prompt`` (default none) prefixes the documents
    (and, being a prompt, is masked too). Output: a sentence-transformers folder at ``out_dir`` with
    ``train_config.json`` (including weight hashes before/after), ``loss_curve.json`` and ``loss_curve.png``.
    """
    import transformers
    from datasets import Dataset, DatasetDict, DatasetInfo
    from sentence_transformers.base.sampler import MultiDatasetBatchSamplers

    from hardneg.io import atomic_path
    from hardneg.llm.decoder import describe, weights_digest
    from hardneg.train.losses import build_loss
    from hardneg.train.trainer import (jsonable, loss_curve_of, EmbeddingTrainer, library_versions, make_collator, prepare_rows,
                                       run_trainer, save_student, training_arguments, write_records)

    out_dir = Path(out_dir)
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
    precision = resolve_precision(extras)

    datasets: dict[str, Any] = {}
    losses: dict[str, Any] = {}
    prompts: dict[str, dict[str, str]] = {}
    stats: dict[str, Any] = {}
    transformers.set_seed(cfg.seed)
    model = _load_student(cfg.student, precision, extras, cfg)
    initial = weights_digest(model) if extras.record_weight_hashes else None
    lora_info = _add_lora(model, cfg) if cfg.lora else None
    loss_by_kind = {
        "retrieval": build_loss(model, cfg),
        "other": build_loss(model, replace(cfg, in_batch_negatives=False)) if n > 0 else None,
    }
    for d in data:
        prep = prepare_rows(d.rows, n, cfg.short_rows, cfg.seed, where=f"data source {d.name!r}")
        if prep.n_rows_used == 0:
            raise HardnegError(f"data source {d.name!r}: no rows left ({prep.n_rows_in} in, {prep.n_rows_dropped} "
                               f"short of {n} negatives)", where="training rows",
                               fix="mine more negatives (e.g. topk(5)), or use short_rows = \"pad\"")
        datasets[d.name] = Dataset.from_dict(prep.columns, info=DatasetInfo(description=f"hardneg:{d.kind}"))
        losses[d.name] = loss_by_kind["retrieval" if d.kind == "retrieval" else "other"]
        p = instruction_prompt(d.instruction)
        prompts[d.name] = {**({"anchor": p} if p else {}),
                           **({c: cfg.doc_prompt for c in prep.columns if c != "anchor"} if cfg.doc_prompt else {})}
        p_len = model[0]._get_prompt_length(p) if p else 0
        if p_len and p_len >= cfg.query_max_length:
            raise HardnegError(f"data source {d.name!r}: the instruction alone is {p_len} tokens, so "
                               f"query_max_length={cfg.query_max_length} leaves no query token to pool",
                               where="train config", fix=f"raise query_max_length well above {p_len}")
        stats[d.name] = {"kind": d.kind, "source": d.source, "instruction": d.instruction, "query_prompt": p,
                         "prompt_tokens": p_len,
                         "loss": type(losses[d.name]).__name__, **prep.stats()}
    columns = list(next(iter(datasets.values())).column_names)
    collator = make_collator(model, cfg, columns, prompts)

    with atomic_path(out_dir, is_dir=True) as tmp:
        work = tmp / "logs"
        args = training_arguments(
            cfg, work, collator, progress=progress, checkpointing=extras.gradient_checkpointing, bf16=precision.bf16,
            optim=extras.optimizer,
            lr_scheduler_type=extras.lr_scheduler,
            batch_sampler=_kind_batch_sampler(cfg.in_batch_negatives),
            multi_dataset_batch_sampler=(MultiDatasetBatchSamplers.PROPORTIONAL if extras.sampler == "proportional"
                                         else MultiDatasetBatchSamplers.ROUND_ROBIN),
            eval_strategy="no")
        trainer = EmbeddingTrainer(model=model, args=args, train_dataset=DatasetDict(datasets), loss=losses,
                           data_collator=collator)
        result, seconds = run_trainer(trainer, progress)
        hf = model.transformers_model
        checkpointing = bool(getattr(hf, "is_activation_checkpointing", None)
                             if hasattr(type(hf), "is_activation_checkpointing")
                             else getattr(hf, "is_gradient_checkpointing", False))
        curve = loss_curve_of(trainer.state.log_history)
        save_student(model, cfg, tmp, work)
        final = weights_digest(model) if extras.record_weight_hashes else None
        record = {
            "config": cfg.to_dict(),
            "extras": extras.to_dict(),
            "student_path": cfg.student,
            "precision": dataclasses.asdict(precision),
            "gradient_checkpointing_active": checkpointing,
            "n_negatives": n,
            "sources": stats,
            "losses": {name: {"class": type(loss).__name__, **jsonable(loss.get_config_dict())}
                       for name, loss in losses.items()},
            "max_length": {"query": cfg.query_max_length, "document": cfg.doc_max_length},
            "lora": lora_info,
            "weights": {"initial_sha256": initial, "final_sha256": final},
            "model": describe(model),
            "result": {"steps": int(trainer.state.global_step), "epochs": trainer.state.epoch,
                       "train_loss": result.training_loss, "train_seconds": round(seconds, 3),
                       "seconds_per_step": round(seconds / max(1, trainer.state.global_step), 3)},
            "versions": library_versions(),
        }
        write_records(tmp, record, curve)
    return StageResult(model=model, out_dir=out_dir, record=record, curve=curve)


# ---------------------------------------------------------------- recipe config


@dataclass(frozen=True)
class DataSource:
    """A training source: ``mined`` (a mined.jsonl) or ``beir`` (a BEIR folder/name, mined with ``[mine]``).

    ``name`` defaults to the dataset folder name; ``instruction`` defaults, for retrieval sources, to the
    dataset descriptor's E5-Mistral task definition (``hardneg.data.descriptors``) and must be given for the
    others (``""`` = no instruction). ``max_rows``: keep a seeded random subset (Table 7 caps sources).
    """

    kind: str = "retrieval"
    mined: str | None = None
    beir: str | None = None
    split: str = "train"
    name: str | None = None
    instruction: str | None = None
    max_rows: int | None = None

    def __post_init__(self) -> None:
        p: list[str] = []
        if self.kind not in KINDS:
            p.append(f"kind={self.kind!r}: must be one of {', '.join(KINDS)}")
        if (self.mined is None) == (self.beir is None):
            p.append("give exactly one of mined = \"path/mined.jsonl\" or beir = \"path or name\"")
        for k in ("mined", "beir", "name", "instruction"):
            v = getattr(self, k)
            if v is not None and not isinstance(v, str):
                p.append(f"{k}={v!r}: must be a string")
        if self.beir is not None and self.kind != "retrieval":
            p.append(f"beir={self.beir!r}: only retrieval sources can be mined from a BEIR folder; give "
                     "non-retrieval data as a mined.jsonl of (query, positive, negatives)")
        if self.kind != "retrieval" and self.instruction is None:
            p.append(f"kind={self.kind!r} needs an instruction (\"\" for none), e.g. "
                     "\"Classify the intent of the given banking query\"")
        if not isinstance(self.split, str) or not self.split:
            p.append(f"split={self.split!r}: must be a split name")
        if self.max_rows is not None and (not _is_int(self.max_rows) or self.max_rows < 1):
            p.append(f"max_rows={self.max_rows!r}: must be an integer >= 1")
        if p:
            raise ConfigErrors(p, where="data source")

    @property
    def resolved_name(self) -> str:
        if self.name:
            return self.name
        src = self.beir if self.beir is not None else self.mined
        p = Path(str(src))
        # a mined file sits in <strategy>/mined.jsonl: name it after the folder above the strategy folder
        if p.name == "mined.jsonl" and p.parent.parent.name:
            return p.parent.parent.name
        return p.stem if p.suffix else p.name

    @property
    def resolved_instruction(self) -> str:
        if self.instruction is not None:
            return self.instruction
        from hardneg.data.descriptors import descriptor_for

        return descriptor_for(self.resolved_name).instruction


@dataclass(frozen=True)
class StageSpec:
    """One stage: its TrainConfig knobs (``train``), extras and data sources."""

    train: Any  # TrainConfig (student filled in at run time)
    extras: LLMTrainExtras
    data: tuple[DataSource, ...]
    include_stage1_data: bool = False

    def to_dict(self) -> dict[str, Any]:
        t = self.train.to_dict()
        t.pop("student", None)
        return {"train": t, "extras": self.extras.to_dict(), "data": [dataclasses.asdict(d) for d in self.data],
                "include_stage1_data": self.include_stage1_data}


@dataclass(frozen=True)
class MineSpec:
    teacher: Any  # EncoderSpec
    strategy: str = "percpos(0.95)+topk(5)"
    depth: int = 100
    seed: int = 0


@dataclass(frozen=True)
class EvalSpec:
    datasets: tuple[str, ...] = ()
    split: str = "test"
    models: tuple[str, ...] = ("base", "stage1", "stage2")
    max_seq_length: int | None = 512
    batch_size: int = 32
    depth: int = 1000
    instructions: dict[str, str] = field(default_factory=dict)  # dataset name -> instruction (else descriptor)
    splits: dict[str, str] = field(default_factory=dict)  # dataset name -> split (else ``split``)


@dataclass(frozen=True)
class RecipeConfig:
    model: DecoderConfig
    stage1: StageSpec
    stage2: StageSpec | None
    mine: MineSpec | None
    evaluate: EvalSpec
    out: str = "runs/nv-retriever-v1"
    cache: str | None = None
    seed: int = 0
    raw: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "recipe": {"out": self.out, "cache": self.cache, "seed": self.seed},
            "model": self.model.to_dict(),
            "stage1": self.stage1.to_dict(),
            "stage2": self.stage2.to_dict() if self.stage2 is not None else None,
            "mine": None if self.mine is None else {"teacher": self.mine.teacher.to_dict(),
                                                     "strategy": self.mine.strategy, "depth": self.mine.depth,
                                                     "seed": self.mine.seed},
            "evaluate": {**dataclasses.asdict(self.evaluate), "datasets": list(self.evaluate.datasets),
                         "models": list(self.evaluate.models)},
        }


_SECTIONS = ("recipe", "model", "lora", "train", "mine", "stage1", "stage2", "evaluate")
_LORA_KEYS = {"rank": "lora_rank", "alpha": "lora_alpha", "dropout": "lora_dropout",
              "target_modules": "lora_target_modules", "enabled": "lora"}


def _section(raw: dict[str, Any], name: str, problems: list[str]) -> dict[str, Any]:
    v = raw.get(name, {})
    if v is None:
        return {}
    if not isinstance(v, dict):
        problems.append(f"[{name}] must be a table")
        return {}
    return dict(v)


def _try(problems: list[str], prefix: str, fn: Any, *args: Any, **kw: Any) -> Any:
    try:
        return fn(*args, **kw)
    except ConfigErrors as exc:
        problems.extend(f"{prefix} {p}" for p in exc.problems)
    except HardnegError as exc:
        problems.append(f"{prefix} {exc.what}")
    except TypeError as exc:
        problems.append(f"{prefix} {exc}")
    return None


def _stage(name: str, shared: dict[str, Any], table: dict[str, Any], lora: dict[str, Any], seed: int,
           problems: list[str]) -> StageSpec | None:
    from hardneg.train.config import TrainConfig

    train_fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"student"}
    extra_fields = {f.name for f in dataclasses.fields(LLMTrainExtras)}
    merged = {**shared, **{k: v for k, v in table.items() if k not in STAGE_KEYS_NOT_TRAIN}}
    for k in sorted(set(merged) - train_fields - extra_fields):
        problems.append(f"[{name}] unknown key {k!r} (training keys: {', '.join(sorted(train_fields | extra_fields))})")
    if "query_prompt" in merged:
        problems.append(f"[{name}] query_prompt: the recipe prompts each source's queries with its own instruction "
                        "(\"{instruction}: \"); set instruction = ... on the [[stageN.data]] entry instead")
    tkw = {k: v for k, v in merged.items() if k in train_fields}
    tkw.setdefault("seed", seed)
    tkw = {**{"lora": True}, **lora, **tkw}
    train = _try(problems, f"[{name}]", TrainConfig, student="(set by the recipe)", **tkw)
    extras = _try(problems, f"[{name}]", LLMTrainExtras, **{k: v for k, v in merged.items() if k in extra_fields})
    data_raw = table.get("data", [])
    if not isinstance(data_raw, list) or not all(isinstance(d, dict) for d in data_raw):
        problems.append(f"[{name}] data must be a list of tables ([[{name}.data]])")
        data_raw = []
    data = []
    for i, d in enumerate(data_raw):
        ds = _try(problems, f"[{name}.data #{i + 1}]", DataSource, **d)
        if ds is not None:
            data.append(ds)
    include = table.get("include_stage1_data", name == "stage2")
    if not isinstance(include, bool):
        problems.append(f"[{name}] include_stage1_data={include!r}: must be true or false")
    if train is None or extras is None:
        return None
    return StageSpec(train=train, extras=extras, data=tuple(data),
                     include_stage1_data=bool(include) and name != "stage1")


def recipe_from_dict(raw: dict[str, Any], overrides: Sequence[str] = (), *, where: str = "recipe") -> RecipeConfig:
    """Validate a parsed recipe TOML (plus ``section.key=value`` overrides), reporting every problem at once."""
    from hardneg.encode.encoder import EncoderSpec
    from hardneg.experiments.config import parse_override
    from hardneg.mining.pipeline import parse_plan

    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    problems: list[str] = []
    for o in overrides:
        section, k, v = parse_override(o)
        if section not in _SECTIONS:
            problems.append(f"override {o!r}: unknown section {section!r} (valid: {', '.join(_SECTIONS)})")
            continue
        if not isinstance(raw.get(section, {}), dict):
            raw[section] = {}
        raw.setdefault(section, {})[k] = v
    for s in sorted(set(raw) - set(_SECTIONS)):
        problems.append(f"unknown section [{s}] (valid: {', '.join(_SECTIONS)})")

    rec = _section(raw, "recipe", problems)
    for k in sorted(set(rec) - {"out", "cache", "seed"}):
        problems.append(f"[recipe] unknown key {k!r} (valid: out, cache, seed)")
    out, cache, seed = rec.get("out", "runs/nv-retriever-v1"), rec.get("cache"), rec.get("seed", 0)
    if not isinstance(out, str) or not out:
        problems.append(f"[recipe] out={out!r}: must be a folder path")
    if cache is not None and (not isinstance(cache, str) or not cache):
        problems.append(f"[recipe] cache={cache!r}: must be a folder path")
    if not _is_int(seed) or seed < 0:
        problems.append(f"[recipe] seed={seed!r}: must be an integer >= 0")
        seed = 0

    model_t = _section(raw, "model", problems)
    known_model = {f.name for f in dataclasses.fields(DecoderConfig)}
    for k in sorted(set(model_t) - known_model):
        problems.append(f"[model] unknown key {k!r} (valid: {', '.join(sorted(known_model))})")
    model = _try(problems, "[model]", DecoderConfig, **{k: v for k, v in model_t.items() if k in known_model}) \
        if "base" in model_t else None
    if "base" not in model_t:
        problems.append("[model] base is required, e.g. base = \"mistralai/Mistral-7B-v0.1\"")

    lora_t = _section(raw, "lora", problems)
    for k in sorted(set(lora_t) - set(_LORA_KEYS)):
        problems.append(f"[lora] unknown key {k!r} (valid: {', '.join(_LORA_KEYS)})")
    lora = {_LORA_KEYS[k]: v for k, v in lora_t.items() if k in _LORA_KEYS}
    lora.setdefault("lora_target_modules", list(DEFAULT_LORA_TARGETS))

    shared = _section(raw, "train", problems)
    s1 = _stage("stage1", shared, _section(raw, "stage1", problems), lora, seed, problems)
    s2_t = _section(raw, "stage2", problems)
    s2 = _stage("stage2", shared, s2_t, lora, seed, problems) if s2_t else None
    if s1 is not None and not s1.data:
        problems.append("[stage1] needs at least one [[stage1.data]] source")
    if s2 is not None and not s2.data and not s2.include_stage1_data:
        problems.append("[stage2] has no data: add [[stage2.data]] or set include_stage1_data = true")

    mine = None
    mine_t = _section(raw, "mine", problems)
    needs_mine = any(d.beir is not None for s in (s1, s2) if s is not None for d in s.data)
    if mine_t:
        for k in sorted(set(mine_t) - {"teacher", "strategy", "depth", "seed"}):
            problems.append(f"[mine] unknown key {k!r} (valid: teacher, strategy, depth, seed)")
        teacher_t = mine_t.get("teacher", {"model": "minilm"})
        if isinstance(teacher_t, str):
            teacher_t = {"model": teacher_t}
        teacher = _try(problems, "[mine.teacher]", EncoderSpec.from_dict, teacher_t) \
            if isinstance(teacher_t, dict) else None
        strategy = mine_t.get("strategy", "percpos(0.95)+topk(5)")
        plan = _try(problems, "[mine]", parse_plan, strategy) if isinstance(strategy, str) else None
        if not isinstance(strategy, str):
            problems.append(f"[mine] strategy={strategy!r}: must be a strategy string")
        depth, mseed = mine_t.get("depth", 100), mine_t.get("seed", seed)
        if not _is_int(depth) or depth < 1:
            problems.append(f"[mine] depth={depth!r}: must be an integer >= 1")
        if not _is_int(mseed) or mseed < 0:
            problems.append(f"[mine] seed={mseed!r}: must be an integer >= 0")
        if teacher is not None and plan is not None:
            mine = MineSpec(teacher=teacher, strategy=str(plan), depth=depth, seed=mseed)
    elif needs_mine:
        problems.append("data sources given as beir = ... need a [mine] section (teacher, strategy, depth)")

    ev_t = _section(raw, "evaluate", problems)
    known_ev = {f.name for f in dataclasses.fields(EvalSpec)}
    for k in sorted(set(ev_t) - known_ev):
        problems.append(f"[evaluate] unknown key {k!r} (valid: {', '.join(sorted(known_ev))})")
    ev_kw = {k: v for k, v in ev_t.items() if k in known_ev}
    for k in ("datasets", "models"):
        if k in ev_kw:
            if not isinstance(ev_kw[k], list) or not all(isinstance(x, str) for x in ev_kw[k]):
                problems.append(f"[evaluate] {k}={ev_kw[k]!r}: must be a list of strings")
            ev_kw[k] = tuple(ev_kw[k]) if isinstance(ev_kw[k], list) else ()
    bad_models = [m for m in ev_kw.get("models", ()) if m not in ("base", "stage1", "stage2")]
    if bad_models:
        problems.append(f"[evaluate] models: unknown {bad_models} (choose from base, stage1, stage2)")
    for k in ("batch_size", "depth"):
        if k in ev_kw and (not _is_int(ev_kw[k]) or ev_kw[k] < 1):
            problems.append(f"[evaluate] {k}={ev_kw[k]!r}: must be an integer >= 1")
    msl = ev_kw.get("max_seq_length", 512)
    if msl is not None and (not _is_int(msl) or msl < 1):
        problems.append(f"[evaluate] max_seq_length={msl!r}: must be an integer >= 1")
    for k in ("instructions", "splits"):
        if k in ev_kw and (not isinstance(ev_kw[k], dict) or not all(isinstance(v, str) for v in ev_kw[k].values())):
            problems.append(f"[evaluate] {k} must be a table of dataset name = \"text\"")
    evaluate = EvalSpec(**ev_kw) if not problems else None

    if problems:
        raise ConfigErrors(problems, where=where)
    assert model is not None and s1 is not None and evaluate is not None
    return RecipeConfig(model=model, stage1=s1, stage2=s2, mine=mine, evaluate=evaluate, out=out, cache=cache,
                        seed=seed, raw=raw)


def load_recipe(path: str | Path, overrides: Sequence[str] = ()) -> RecipeConfig:
    """Read and validate a recipe TOML (e.g. ``configs/nv-retriever-v1.toml``) with ``section.key=value``
    overrides; relative paths inside it are taken as given (relative to the working directory)."""
    from hardneg.experiments.config import read_toml

    return recipe_from_dict(read_toml(path), overrides, where=str(path))


# ---------------------------------------------------------------- runner


def _rows_for(src: DataSource, cfg: RecipeConfig, out: Path, cache_dir: Path, progress: bool,
              timings: dict[str, float]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The source's rows and an identity for stage hashes (mined file content, or the mine stage's hash)."""
    import numpy as np

    from hardneg.data.mined import read_mined
    from hardneg.io import sha256_file

    if src.mined is not None:
        path = Path(src.mined)
        rows = read_mined(path)
        ident: dict[str, Any] = {"mined_sha256": sha256_file(path)}
    else:
        mine_dir, slug = _mine_source(src, cfg, out, cache_dir, progress, timings)
        rows = read_mined(mine_dir / slug / "mined.jsonl")
        ident = {"mine_stage": mine_dir.name}
    if src.max_rows is not None and len(rows) > src.max_rows:
        keep = np.sort(np.random.default_rng(cfg.seed).choice(len(rows), size=src.max_rows, replace=False))
        rows = [rows[int(i)] for i in keep]
    ident.update({"name": src.resolved_name, "kind": src.kind, "instruction": src.resolved_instruction,
                  "max_rows": src.max_rows})
    return rows, ident


def _mine_source(src: DataSource, cfg: RecipeConfig, out: Path, cache_dir: Path, progress: bool,
                 timings: dict[str, float]) -> tuple[Path, str]:
    from hardneg.data.load import load_dataset
    from hardneg.experiments.run import dataset_id
    from hardneg.io import atomic_path, stable_hash, write_json
    from hardneg.mining.pipeline import MineConfig, get_pools, mine_to_folder, parse_plan
    from hardneg.mining.teachers import teacher_fingerprint

    assert cfg.mine is not None and src.beir is not None
    plan = parse_plan(cfg.mine.strategy)
    ds = load_dataset(src.beir, src.split, cache_dir=cache_dir)
    # E5-Mistral-style teachers take the task instruction in their query prompt: "{instruction}" is filled in.
    teacher = replace(cfg.mine.teacher, query_prompt=cfg.mine.teacher.query_prompt.replace(
        "{instruction}", src.resolved_instruction))
    spec = {"teacher": teacher_fingerprint(teacher, cache_dir), "data": dataset_id(ds),
            "depth": cfg.mine.depth, "strategy": str(plan), "seed": cfg.mine.seed}
    mine_dir = out / "stages" / f"mine-{stable_hash(spec)}"
    if not mine_dir.is_dir():
        t0 = time.perf_counter()
        log.info("recipe: mining %s (%s) with %s", src.resolved_name, src.split, plan)
        pools = get_pools(teacher, ds, cfg.mine.depth, cache_dir, progress=progress)
        mcfg = MineConfig(teacher=teacher, strategies=(plan,), depth=cfg.mine.depth, seed=cfg.mine.seed)
        with atomic_path(mine_dir, is_dir=True) as tmp:
            mine_to_folder(pools, ds, mcfg, tmp)
            write_json(tmp / "spec.json", spec)
        timings[f"mine_{src.resolved_name}"] = round(time.perf_counter() - t0, 1)
    return mine_dir, plan.slug


def run_recipe(cfg: RecipeConfig, *, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) base build -> stage 1 -> stage 2 -> evaluation; write results.json and return it.

    Returns ``{"config", "stages": {base, stage1, stage2, eval_*}, "weights": {stage: {initial, final}},
    "metrics": {dataset: {model: metrics}}, "timings"}``.
    """
    from hardneg.encode.models import default_cache_dir
    from hardneg.io import claim_output

    cache_dir = Path(cfg.cache) if cfg.cache else default_cache_dir()
    with claim_output(cfg.out, "recipe", inputs=[cache_dir, cfg.model.base], flag="recipe.out") as out:
        return _run_recipe_in(cfg, out, cache_dir, progress)


def _run_recipe_in(cfg: RecipeConfig, out: Path, cache_dir: Path, progress: bool) -> dict[str, Any]:
    from hardneg.io import read_json, stable_hash, write_json
    from hardneg.llm.decoder import make_decoder_student

    write_json(out / "config.resolved.json", cfg.to_dict())
    timings: dict[str, float] = {}
    stages: dict[str, str] = {}

    # -- base embedder
    base_dir = out / "stages" / f"base-{stable_hash(cfg.model.to_dict())}"
    t0 = time.perf_counter()
    if not (base_dir / "modules.json").is_file():
        log.info("recipe: building the embedder from %s", cfg.model.base)
        make_decoder_student(cfg.model, base_dir)
        timings["base"] = round(time.perf_counter() - t0, 1)
    stages["base"] = base_dir.name

    # -- training data (rows per source), shared between stages
    def load_sources(spec: StageSpec) -> tuple[list[StageData], list[dict[str, Any]]]:
        data, idents = [], []
        for src in spec.data:
            rows, ident = _rows_for(src, cfg, out, cache_dir, progress, timings)
            data.append(StageData(name=src.resolved_name, kind=src.kind, rows=rows,
                                  instruction=src.resolved_instruction, source=str(src.mined or src.beir)))
            idents.append(ident)
        return data, idents

    def train_stage(label: str, spec: StageSpec, student: Path, data: list[StageData], idents: list[dict]) -> Path:
        stage_spec = {**{k: v for k, v in spec.to_dict().items() if k != "data"}, "student": student.name,
                      "sources": idents}
        stage_dir = out / "stages" / f"{label}-{stable_hash(stage_spec)}"
        t0 = time.perf_counter()
        if not (stage_dir / "train_config.json").is_file():
            log.info("recipe: %s on %d sources (%d rows)", label, len(data), sum(len(d.rows) for d in data))
            fit_stage(data, replace(spec.train, student=str(student)), spec.extras, stage_dir, progress=progress)
            timings[label] = round(time.perf_counter() - t0, 1)
        stages[label] = stage_dir.name
        return stage_dir

    s1_data, s1_ids = load_sources(cfg.stage1)
    s1_dir = train_stage("stage1", cfg.stage1, base_dir, s1_data, s1_ids)
    model_dirs = {"base": base_dir, "stage1": s1_dir}
    if cfg.stage2 is not None:
        s2_data, s2_ids = load_sources(cfg.stage2)
        if cfg.stage2.include_stage1_data:
            have = {d.name for d in s2_data}
            s2_data = [d for d in s1_data if d.name not in have] + s2_data
            s2_ids = [i for d, i in zip(s1_data, s1_ids) if d.name not in have] + s2_ids
        model_dirs["stage2"] = train_stage("stage2", cfg.stage2, s1_dir, s2_data, s2_ids)

    weights = {}
    for label in ("stage1", "stage2"):
        if label in model_dirs:
            w = read_json(model_dirs[label] / "train_config.json")["weights"]
            weights[label] = {"initial": w["initial_sha256"], "final": w["final_sha256"]}

    # -- evaluation
    metrics = _evaluate(cfg, model_dirs, out, cache_dir, progress, stages, timings)
    results = {"config": cfg.to_dict(), "stages": stages, "weights": weights, "metrics": metrics}
    write_json(out / "results.json", results)
    write_json(out / "timings.json", timings)
    return {**results, "timings": timings}


def _evaluate(cfg: RecipeConfig, model_dirs: dict[str, Path], out: Path, cache_dir: Path, progress: bool,
              stages: dict[str, str], timings: dict[str, float]) -> dict[str, dict[str, dict[str, float]]]:
    from hardneg.data.descriptors import descriptor_for
    from hardneg.data.load import load_dataset
    from hardneg.encode.encoder import EncoderSpec
    from hardneg.evaluate.pipeline import evaluate_model, write_eval
    from hardneg.experiments.run import dataset_id
    from hardneg.encode.encoder import folder_identity
    from hardneg.io import read_json, stable_hash

    ev = cfg.evaluate
    identities = {label: folder_identity(d, cache_dir) for label, d in model_dirs.items()}
    metrics: dict[str, dict[str, dict[str, float]]] = {}
    for data in ev.datasets:
        key = Path(data).name
        split = ev.splits.get(key, ev.split)
        ds = load_dataset(data, split, cache_dir=cache_dir)
        name = ds.name or key
        instruction = ev.instructions.get(name, descriptor_for(name).instruction)
        for label in ev.models:
            if label not in model_dirs:
                continue
            spec = EncoderSpec(model=str(model_dirs[label]), query_prompt=instruction_prompt(instruction),
                               doc_prompt=cfg.stage1.train.doc_prompt, max_seq_length=ev.max_seq_length,
                               batch_size=ev.batch_size)
            key = {"model": identities[label], "spec": {**spec.to_dict(), "model": None}, "data": dataset_id(ds),
                   "depth": ev.depth}
            eval_dir = out / "stages" / f"eval-{stable_hash(key)}"
            t0 = time.perf_counter()
            if not eval_dir.is_dir():
                log.info("recipe: evaluating %s on %s/%s", label, name, split)
                r = evaluate_model(spec, ds, cache_dir=cache_dir, depth=ev.depth, progress=progress)
                write_eval(r, eval_dir, {"model": label, "dataset": name, "split": split,
                                         "query_prompt": spec.query_prompt, "n_queries": len(ds.queries)})
                timings[f"evaluate_{label}_{name}"] = round(time.perf_counter() - t0, 1)
            m = read_json(eval_dir / "metrics.json")["metrics"]
            metrics.setdefault(name, {})[label] = {k: m[k] for k in sorted(m)}
            stages[f"eval_{label}_{name}"] = eval_dir.name
    return metrics


def summary_rows(results: dict[str, Any], metrics: Sequence[str] = ("ndcg@10", "recall@100", "mrr@10")
                 ) -> list[dict[str, Any]]:
    """``results["metrics"]`` flattened for a table: one row per (dataset, model) with the given metrics."""
    return [{"dataset": ds, "model": label, **{k: m.get(k) for k in metrics}}
            for ds, by_model in results["metrics"].items() for label, m in by_model.items()]
