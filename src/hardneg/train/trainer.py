"""Fine-tune a sentence-transformers student on mined rows: a thin layer over SentenceTransformerTrainer.

Choices worth knowing (details in ``TrainConfig``):

- Rows become columns ``anchor, positive, negative_1..n`` (``hardneg.train.rows``); rows short of n negatives
  are dropped or padded (``short_rows``), and the counts go to ``train_config.json`` (``hardneg.train.records``).
- One training loop, ``fit_model``: ``fit`` builds a ``TrainingSetup`` (dataset, loss, collator, record) from
  mined rows; the LLM recipe (``hardneg.llm.stage.fit_stage``) builds one of several sources and calls it too.
- Query vs document length: the anchor column is tokenized with ``max_length=query_max_length`` and the
  document columns with ``doc_max_length``, through the data collator's per-task ``max_length`` (columns
  mapped to tasks "query"/"document"). Truncation is by the model tokenizer at batch time, so nothing is
  decoded or re-encoded; the saved model keeps its own inference ``max_seq_length``.
- Batches: ``BatchSamplers.NO_DUPLICATES`` with in-batch negatives (no text shared inside a batch, so no
  in-batch false negative by duplication); the plain sampler without (rows do not interact). Gradient
  accumulation does not widen the in-batch pool: use ``loss="cached_infonce"`` with a larger batch for that.
- LoRA (peft): adapters are injected with ``model.add_adapter`` (base weights frozen) and merged into the
  base weights before saving, so the output folder is a plain sentence-transformers model.
- Output: written into a temporary sibling folder and renamed onto ``out_dir`` at the end; no checkpoints
  (a killed run leaves nothing and is simply re-run).
"""
from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import transformers
from datasets import Dataset
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.sampler import BatchSamplers
from sentence_transformers.sentence_transformer import (
    SentenceTransformerDataCollator,
    SentenceTransformerTrainer,
    SentenceTransformerTrainingArguments,
)
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from hardneg.encode.models import resolve_model
from hardneg.errors import HardnegError
from hardneg.io import atomic_path
from hardneg.train.config import TrainConfig
from hardneg.train.records import library_versions, loss_curve_of, write_records
from hardneg.train.rows import PreparedRows, prepare_rows, resolve_n_negatives, validate_rows
from hardneg.train.losses import build_loss

# ---------------------------------------------------------------- model, LoRA, records


def load_student(cfg: TrainConfig) -> tuple[SentenceTransformer, str]:
    """Load the student named by ``cfg.student`` and check the max lengths fit its position table."""
    path = resolve_model(cfg.student)
    if path.startswith("hash:") or (Path(path) / "model.onnx").exists():
        raise HardnegError(f"student {cfg.student!r} is not a trainable sentence-transformers model",
                           where="train config", fix="use 'minilm', 'mpnet' or a sentence-transformers folder")
    try:
        dtype = getattr(torch, resolve_bf16(cfg)["weights_dtype"])  # bf16 weights on a GPU; a CPU keeps fp32
        model = SentenceTransformer(path, model_kwargs={"dtype": dtype})
    except OSError as exc:  # a hub id without network, or a folder that is not a model
        raise HardnegError(f"cannot load student {cfg.student!r}: {exc}", where="train config",
                           fix="use 'minilm' or the path of a sentence-transformers model folder") from None
    hf = model.transformers_model
    limit = getattr(getattr(hf, "config", None), "max_position_embeddings", None)
    if limit is not None:
        for name in ("query_max_length", "doc_max_length"):
            if getattr(cfg, name) > limit:
                raise HardnegError(f"{name}={getattr(cfg, name)} exceeds the student's {limit} positions",
                                   where="train config", fix=f"set {name} <= {limit}")
    return model, path


def resolve_bf16(cfg: TrainConfig) -> dict[str, Any]:
    """How ``cfg`` trains on this machine, for the trainer and train_config.json: ``{"bf16", "weights_dtype",
    "device", "reason"}``. bf16 needs native bf16: a CUDA GPU with bf16 (weights loaded in bf16, as before) or a
    CPU with avx512_bf16 / amx_bf16 (autocast, fp32 master weights: measured 1.57x fp32 per step on MiniLM).
    ``True`` without it is an error, ``"auto"`` takes it where it exists, ``False`` is fp32."""
    from hardneg.encode import precision as hw  # through the module: tests monkeypatch hw.cpu_caps

    if cfg.bf16 is False:
        return {"bf16": False, "weights_dtype": "float32", "device": "cuda" if torch.cuda.is_available() else "cpu",
                "reason": "bf16=false: fp32"}
    caps = hw.cpu_caps()
    if not caps.native_bf16:
        if cfg.bf16 is True:
            raise HardnegError(f"bf16=true but this machine has no native bf16 ({caps.describe()}; needs a GPU with "
                               "bf16 or a CPU with avx512_bf16/amx_bf16)", where="train config",
                               fix='use bf16 = "auto" (fp32 here) or false')
        return {"bf16": False, "weights_dtype": "float32", "device": caps.device,
                "reason": f"auto: fp32, no native bf16 on {caps.describe()}"}
    how = "bf16 weights" if caps.device == "cuda" else "autocast, fp32 master weights"
    return {"bf16": True, "weights_dtype": "bfloat16" if caps.device == "cuda" else "float32", "device": caps.device,
            "reason": f"{'auto' if cfg.bf16 == 'auto' else 'bf16=true'}: bf16 ({how}), native on {caps.describe()}"}


def use_bf16(cfg: TrainConfig) -> bool:
    """Whether to train in bf16: ``True`` demands native bf16 (GPU or CPU), ``"auto"`` uses it where available."""
    return bool(resolve_bf16(cfg)["bf16"])


def add_lora(model: SentenceTransformer, cfg: TrainConfig, targets: Sequence[str] | None = None) -> dict[str, Any]:
    """Inject LoRA adapters (base weights frozen) on ``targets`` (None: ``cfg.lora_target_modules``, and when that
    is None too, peft's default for the architecture); returns what was done, for train_config.json."""
    try:
        from peft import LoraConfig
    except ImportError:
        raise HardnegError("lora=true needs the peft package", where="train config",
                           fix='pip install "peft>=0.11"  (or: pip install "hardneg[lora]")') from None
    if targets is None and cfg.lora_target_modules:
        targets = cfg.lora_target_modules
    target = list(targets) if targets is not None else None  # None: peft picks by architecture
    try:
        model.add_adapter(LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                     target_modules=target, bias="none"))
    except ValueError as exc:  # e.g. target modules not found in the model
        raise HardnegError(f"cannot add LoRA adapters: {exc}", where="train config",
                           fix="set lora_target_modules to Linear module names of the student, e.g. "
                               "['query', 'value'] for BERT, ['q_proj', 'v_proj'] for Llama-style decoders") from None
    for p in model.parameters():  # adapters train in fp32 even on a bf16 base
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()
    peft_cfg = model.transformers_model.peft_config["default"]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"target_modules": sorted(peft_cfg.target_modules), "rank": cfg.lora_rank, "alpha": cfg.lora_alpha,
            "dropout": cfg.lora_dropout, "trainable_params": trainable, "total_params": total, "merged": True}


def merge_lora(model: SentenceTransformer) -> None:
    """Fold LoRA adapters into the base weights (W += B A * alpha/r) and remove every peft trace."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    hf = model.transformers_model
    for name, module in list(hf.named_modules()):
        if isinstance(module, BaseTunerLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            parent = hf.get_submodule(parent_name) if parent_name else hf
            setattr(parent, child, module.get_base_layer())
    # Otherwise save_pretrained would write only an adapter file.
    hf._hf_peft_config_loaded = False
    if hasattr(hf, "peft_config"):
        del hf.peft_config
    for p in model.parameters():
        p.requires_grad_(True)


class EmbeddingTrainer(SentenceTransformerTrainer):
    """The sentence-transformers trainer without model-card tracking (no card is written; it embeds examples)."""

    def add_model_card_callback(self, default_args_dict: dict[str, Any]) -> None:
        pass


def _dataset(prep: PreparedRows, cfg: TrainConfig | None = None) -> Dataset:
    # Column order matters: the losses read anchor, positive, then the negatives.
    if cfg is not None and cfg.mask_false_negatives == "id":  # id hashes for the masked loss (collator: "label")
        from hardneg.train.losses import id_labels

        return Dataset.from_dict({**prep.columns, "label": id_labels([list(x) for x in prep.ids])})
    return Dataset.from_dict(prep.columns)


@dataclass
class TrainResult:
    """What ``fit`` produced: the trained in-memory model (LoRA merged), its folder and the records written."""

    model: SentenceTransformer
    out_dir: Path
    record: dict[str, Any]  # the content of train_config.json
    curve: dict[str, list[dict[str, float]]]  # the content of loss_curve.json


def train(rows: Sequence[dict[str, Any]], cfg: TrainConfig, out_dir: Path, *, progress: bool = True,
          eval_rows: Sequence[dict[str, Any]] | None = None) -> Path:
    """Fine-tune ``cfg.student`` with InfoNCE on mined rows; write a sentence-transformers folder at ``out_dir``.

    Loss (paper eq. 1) with scale 1/temperature over the positive, the row's hard negatives and, if
    ``cfg.in_batch_negatives``, every other document of the batch. Besides the model, the folder holds
    ``train_config.json``, ``loss_curve.json`` and ``loss_curve.png``. Returns ``out_dir``.
    """
    return fit(rows, cfg, out_dir, progress=progress, eval_rows=eval_rows).out_dir


def make_collator(model: SentenceTransformer, cfg: TrainConfig, columns: Sequence[str],
                  prompts: dict[str, Any] | None = None) -> SentenceTransformerDataCollator:
    """Collator that tokenizes anchors at ``query_max_length`` and documents at ``doc_max_length``, with prompts
    (``cfg``'s query/doc prompts by default; a multi-source stage passes its own, keyed by dataset name)."""
    # Columns are mapped to the tasks "query"/"document"; the collator's max_length is keyed by task, and the
    # Transformer module drops the task key before the forward pass (it only selects the length).
    task_of = {c: ("query" if c == "anchor" else "document") for c in columns}
    return SentenceTransformerDataCollator(
        preprocess_fn=model.preprocess, router_mapping=task_of,
        prompts=_prompts(cfg, columns) if prompts is None else prompts,
        max_length={"query": cfg.query_max_length, "document": cfg.doc_max_length})


def training_arguments(cfg: TrainConfig, work: Path, collator: SentenceTransformerDataCollator, *, progress: bool,
                       checkpointing: bool, bf16: bool, **extra: Any) -> SentenceTransformerTrainingArguments:
    """The trainer arguments every hardneg training shares: ``cfg``'s schedule and seeds, a log entry per step,
    no checkpoints (the stage folder is written once, atomically), no fp16; ``extra`` adds or overrides."""
    common = dict(
        output_dir=str(work),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps if cfg.max_steps is not None else -1,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate,
        # transformers 5: a float < 1 is a ratio of the total steps, an int >= 1 a step count.
        warmup_steps=cfg.warmup_steps if cfg.warmup_steps is not None else cfg.warmup_ratio,
        weight_decay=cfg.weight_decay,
        seed=cfg.seed,
        data_seed=cfg.seed,
        prompts=collator.prompts,
        router_mapping=collator.router_mapping,
        logging_strategy="steps",
        logging_steps=1,
        save_strategy="no",
        report_to=list(cfg.report_to) if cfg.report_to else "none",
        disable_tqdm=not progress,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),  # pinning only helps a GPU
        fp16=False,
        bf16=bf16,
        use_cpu=bf16 and not torch.cuda.is_available(),  # transformers allows bf16 on CPU (autocast) only so
        activation_checkpointing=checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False, "every_n_layers": cfg.checkpoint_every_n_layers}
        if checkpointing else None,
    )
    return SentenceTransformerTrainingArguments(**{**common, **extra})


def run_trainer(trainer: SentenceTransformerTrainer, progress: bool) -> tuple[Any, float]:
    """Train (without the per-step printouts when ``progress`` is off); returns (the trainer's result, seconds)."""
    if not progress:
        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
    t0 = time.perf_counter()
    result = trainer.train()
    return result, time.perf_counter() - t0


def save_student(model: SentenceTransformer, cfg: TrainConfig, tmp: Path, work: Path) -> None:
    """Merge LoRA into the weights, drop the trainer's work folder (kept when a tracker reports to it) and save
    the model as a sentence-transformers folder at ``tmp`` (no model card: it would embed training examples)."""
    if cfg.lora:
        merge_lora(model)
    if not cfg.report_to:
        shutil.rmtree(work, ignore_errors=True)
    model.save(str(tmp), safe_serialization=True, create_model_card=False)


def _prompts(cfg: TrainConfig, columns: Sequence[str]) -> dict[str, str] | None:
    prompts = {c: (cfg.query_prompt if c == "anchor" else cfg.doc_prompt) for c in columns}
    return {c: p for c, p in prompts.items() if p} or None


def fit(rows: Sequence[dict[str, Any]], cfg: TrainConfig, out_dir: Path, *, progress: bool = True,
        eval_rows: Sequence[dict[str, Any]] | None = None) -> TrainResult:
    """Like ``train`` but also returns the in-memory model and the records (for tests and notebooks)."""
    validate_rows(rows, "training rows")
    n = resolve_n_negatives(rows, cfg.n_negatives)
    prep = prepare_rows(rows, n, cfg.short_rows, cfg.seed)
    if prep.n_rows_used == 0:
        raise HardnegError(f"no training rows left: {prep.n_rows_in} rows in, {prep.n_rows_dropped} dropped as "
                           f"short of {n} negatives", where="training rows",
                           fix="lower n_negatives, use short_rows='pad', or mine deeper")
    if n == 0 and not cfg.in_batch_negatives:
        raise HardnegError("the rows have no negatives and in_batch_negatives is false: nothing to contrast",
                           where="training rows", fix="mine negatives or set in_batch_negatives=true")
    eval_prep = None
    if eval_rows is not None:
        eval_prep = prepare_rows(eval_rows, n, cfg.short_rows, cfg.seed, where="eval rows")
        if eval_prep.n_rows_used == 0:
            raise HardnegError("no eval rows left after the short-row policy", where="eval rows",
                               fix="pass eval rows with enough negatives, or none")

    transformers.set_seed(cfg.seed)  # LoRA initialisation draws from the global RNG
    model, student_path = load_student(cfg)
    lora_info = add_lora(model, cfg) if cfg.lora else None
    loss = build_loss(model, cfg)
    record = {
        "config": cfg.to_dict(),
        "student_path": student_path,
        "data": prep.stats(),
        "eval_data": eval_prep.stats() if eval_prep is not None else None,
        "loss": {"class": type(loss).__name__, **jsonable(loss.get_config_dict())},
        "max_length": {"query": cfg.query_max_length, "document": cfg.doc_max_length,
                       "how": "tokenizer max_length per column (anchor=query, positive/negatives=document)"},
        "lora": lora_info,
        "precision": resolve_bf16(cfg),
    }
    setup = TrainingSetup(
        train_dataset=_dataset(prep, cfg), loss=loss, collator=make_collator(model, cfg, list(prep.columns)),
        record=record, bf16=use_bf16(cfg), checkpointing=cfg.gradient_checkpointing,
        eval_dataset=_dataset(eval_prep, cfg) if eval_prep is not None else None,
        args={"per_device_eval_batch_size": cfg.batch_size,
              "batch_sampler": BatchSamplers.NO_DUPLICATES if cfg.in_batch_negatives else BatchSamplers.BATCH_SAMPLER,
              "eval_strategy": "steps" if eval_prep is not None and cfg.eval_steps else "no",
              "eval_steps": cfg.eval_steps if eval_prep is not None else None})
    return fit_model(model, cfg, out_dir, setup, progress=progress)


@dataclass
class TrainingSetup:
    """What ``fit_model`` trains a loaded student on, built by the caller around that student.

    - ``train_dataset``: one ``Dataset`` (columns anchor, positive, negative_1..n), or a ``DatasetDict`` of several
      sources, in which case the trainer's multi-dataset sampler draws every batch from a single source;
    - ``loss``: one loss, or ``{source name: loss}`` for a ``DatasetDict``;
    - ``collator``: ``make_collator`` (per-column prompts and max lengths);
    - ``record``: the first entries of ``train_config.json`` (``fit_model`` appends ``result`` and ``versions``);
    - ``bf16``, ``checkpointing``: bf16 autocast and gradient checkpointing in the trainer;
    - ``eval_dataset``: evaluated every ``cfg.eval_steps`` when ``args`` asks for it, else once at the end;
    - ``args``: adds to or overrides ``training_arguments`` (``batch_sampler``, ``optim``, ``eval_strategy``...).
    """

    train_dataset: Any
    loss: Any
    collator: SentenceTransformerDataCollator
    record: dict[str, Any]
    bf16: bool = False
    checkpointing: bool = False
    eval_dataset: Dataset | None = None
    args: dict[str, Any] = field(default_factory=dict)


def fit_model(model: SentenceTransformer, cfg: TrainConfig, out_dir: str | Path, setup: TrainingSetup, *,
              progress: bool = True, on_saved: Callable[[SentenceTransformer], dict[str, Any]] | None = None
              ) -> TrainResult:
    """Train a loaded ``model`` on ``setup`` with ``cfg``'s schedule; write it (LoRA merged) at ``out_dir``.

    The one training loop of hardneg: ``fit`` (mined rows, one loss) and ``hardneg.llm``'s ``fit_stage``
    (several sources, a loss each) build their ``TrainingSetup`` and call it. The folder is written atomically
    (``hardneg.io.atomic_path``): the sentence-transformers model, ``train_config.json`` (``setup.record`` plus
    ``result``: steps, epochs, loss, seconds; and ``versions``), ``loss_curve.json`` and ``loss_curve.png``.
    ``on_saved(model)``, called once the model is saved, returns record entries to add or fill in (e.g. a
    digest of the final weights); a key already in ``setup.record`` keeps its place.
    """
    out_dir = Path(out_dir)
    with atomic_path(out_dir, is_dir=True) as tmp:
        work = tmp / "logs"
        args = training_arguments(cfg, work, setup.collator, progress=progress, checkpointing=setup.checkpointing,
                                  bf16=setup.bf16, **setup.args)
        trainer = EmbeddingTrainer(model=model, args=args, train_dataset=setup.train_dataset,
                                   eval_dataset=setup.eval_dataset, loss=setup.loss, data_collator=setup.collator)
        result, seconds = run_trainer(trainer, progress)
        if setup.eval_dataset is not None and not cfg.eval_steps:
            trainer.evaluate()
        curve = loss_curve_of(trainer.state.log_history)
        save_student(model, cfg, tmp, work)
        steps = int(trainer.state.global_step)
        stats = getattr(setup.loss, "training_stats", None)  # e.g. how often in-batch masking fired
        record = {**setup.record, **(on_saved(model) if on_saved is not None else {}),
                  **({"masking": stats()} if callable(stats) else {}),
                  "result": {"steps": steps, "epochs": trainer.state.epoch, "train_loss": result.training_loss,
                             "train_seconds": round(seconds, 3), "seconds_per_step": round(seconds / max(1, steps), 3)},
                  "versions": library_versions()}
        write_records(tmp, record, curve)
    return TrainResult(model=model, out_dir=out_dir, record=record, curve=curve)


def jsonable(d: dict[str, Any]) -> dict[str, Any]:
    """A loss's config as JSON values: tuples become lists, anything else non-scalar its ``str``."""
    return {k: (list(v) if isinstance(v, tuple) else v if isinstance(v, (str, int, float, bool, type(None)))
                else str(v)) for k, v in d.items()}
