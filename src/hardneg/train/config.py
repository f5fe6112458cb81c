"""Training configuration: a frozen, validated value; every problem is reported at once."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from hardneg.errors import ConfigErrors

LossName = Literal["infonce", "cached_infonce"]
ShortRowsPolicy = Literal["drop", "pad"]

_LOSSES = ("infonce", "cached_infonce")
_SHORT_ROWS = ("drop", "pad")


@dataclass(frozen=True)
class TrainConfig:
    """How a student is fine-tuned on a mined set (see ``hardneg.train.trainer.train``).

    Semantics of the fields that are not plain trainer knobs:

    - ``n_negatives``: hard negatives per training row; ``None`` = the largest count any row has. The
      sentence-transformers losses need a fixed column count, so rows with fewer negatives follow
      ``short_rows``: ``"drop"`` (default) removes them; ``"pad"`` fills the missing slots with negatives
      drawn at random (seeded) from *other* rows' negatives, never a positive of the same query: a
      random, in-batch-like negative rather than a copy of a hard one. Rows with more than n keep their
      first n (rank order). ``0`` trains on (query, positive) pairs only.
    - ``temperature``: InfoNCE tau; the loss scale is ``1 / temperature``. sentence-transformers' default
      scale 20 is temperature 0.05.
    - ``in_batch_negatives``: ``True`` = softmax over the query's positive, its hard negatives and every
      other document in the batch (MultipleNegativesRankingLoss, the paper's "hard + in-batch");
      ``False`` = softmax over the query's own positive and hard negatives only (``losses.py``).
    - ``loss``: ``"cached_infonce"`` is the GradCache variant (same loss and gradients, memory bounded by
      ``mini_batch_size`` rows per forward), for large ``batch_size``.
    - ``warmup_steps``: when set, replaces ``warmup_ratio``.
    - ``query_max_length`` applies to anchors, ``doc_max_length`` to positives and negatives (tokens,
      prompt included).
    - ``lora_target_modules``: ``None`` = peft's default for the architecture (BERT: query, value).
    - ``eval_steps``: with eval rows, evaluate every n steps; ``None`` = once, after training.
    - ``gradient_checkpointing``: recompute activations in the backward pass (non-reentrant): large students.
      ``checkpoint_every_n_layers`` = n recomputes only every n-th transformer layer (transformers'
      ``every_n_layers``): less recompute, more memory; 1 = every layer.
    - ``bf16``: train with bf16 autocast; on a CUDA GPU the weights are loaded in bf16 (LoRA adapters kept in
      fp32), on a CPU with native bf16 (avx512_bf16 / amx_bf16) they stay fp32 (mixed precision, fp32 master
      weights). ``"auto"`` = wherever the hardware has native bf16 (GPU or CPU); ``True`` where it has none is an
      error; ``False`` forces fp32. The resolved value is recorded in train_config.json (``precision``).
    """

    student: str = "minilm"
    n_negatives: int | None = None
    short_rows: ShortRowsPolicy = "drop"
    in_batch_negatives: bool = True
    temperature: float = 0.05
    loss: LossName = "infonce"
    mini_batch_size: int = 32
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    warmup_steps: int | None = None
    epochs: float = 1.0
    max_steps: int | None = None
    batch_size: int = 32
    grad_accum: int = 1
    weight_decay: float = 0.01
    query_max_length: int = 64
    doc_max_length: int = 256
    query_prompt: str = ""
    doc_prompt: str = ""
    seed: int = 0
    lora: bool = False
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    lora_target_modules: tuple[str, ...] | None = None
    report_to: tuple[str, ...] = field(default=())
    eval_steps: int | None = None
    gradient_checkpointing: bool = False
    checkpoint_every_n_layers: int = 1
    bf16: bool | str = False
    mask_false_negatives: str = "none"  # none | id | text | score(m): see hardneg.train.losses.false_negative_mask

    def __post_init__(self) -> None:
        problems: list[str] = []
        # Canonical forms first (JSON gives lists and ints), so equal configs compare and hash equal.
        for name in ("lora_target_modules", "report_to"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        mask = canonical_mask(self.mask_false_negatives)
        if mask is not None:
            object.__setattr__(self, "mask_false_negatives", mask)
        for f in _FLOAT_FIELDS:
            value = getattr(self, f)
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2 ** 1023:
                object.__setattr__(self, f, float(value))  # larger ints stay ints: the range check reports them
        _check(self, problems)
        if problems:
            raise ConfigErrors(problems, where="train config")

    @property
    def scale(self) -> float:
        """The loss scale, 1 / temperature (sentence-transformers' ``scale``)."""
        return 1.0 / self.temperature

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples as lists)."""
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build from a dict; unknown keys and bad values are all reported in one error."""
        if not isinstance(d, dict):
            raise ConfigErrors([f"expected a table of settings, got {type(d).__name__}"], where="train config")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            problems = [f"unknown key {k!r}" for k in unknown]
            # Report value problems of the known keys too, not only the unknown names.
            try:
                cls(**{k: v for k, v in d.items() if k in known})
            except ConfigErrors as exc:
                problems += exc.problems
            except TypeError:
                pass
            raise ConfigErrors(problems + [f"valid keys: {', '.join(sorted(known))}"], where="train config")
        return cls(**d)


_FLOAT_FIELDS = ("temperature", "learning_rate", "warmup_ratio", "epochs", "weight_decay", "lora_dropout")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# Upper bounds: far above any real run, low enough that a typo (1e9 epochs, 10**12 steps) is an error before any
# work, not an endless run or an allocation that exhausts memory.
MAX_EPOCHS = 1000
MAX_STEPS = 100_000_000
MAX_BATCH = 1_000_000
MAX_COUNT = 100_000  # negatives per row, gradient accumulation, LoRA rank / alpha (as strategy counts)
MAX_LENGTH = 1_000_000  # tokens
MAX_SEED = 2 ** 32 - 1  # numpy's legacy seeding (transformers.set_seed) takes [0, 2**32)


def _shown(v: Any) -> str:
    """``repr`` for messages, cut when long; a huge integer is not printed (repr fails beyond 4300 digits)."""
    r = "a huge integer" if _is_int(v) and abs(v) >= 10 ** 30 else repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def canonical_mask(v: Any) -> str | None:
    """``mask_false_negatives`` in canonical form (``score(0.1)``), or None when invalid."""
    import math
    import re

    if not isinstance(v, str):
        return None
    t = v.strip().lower().replace(" ", "")
    if t in ("none", "id", "text"):
        return t
    m = re.fullmatch(r"score\(([^()]*)\)", t)
    if not m:
        return None
    try:
        x = float(m.group(1))
    except ValueError:
        return None
    return f"score({x!r})" if math.isfinite(x) and -2.0 <= x <= 2.0 else None


def _check(c: TrainConfig, problems: list[str]) -> None:
    """Append one message per invalid field."""

    def bad(name: str, msg: str) -> None:
        problems.append(f"{name}={_shown(getattr(c, name))}: {msg}")

    def pos_int(name: str, hi: int, *, allow_none: bool = False, allow_zero: bool = False) -> None:
        v = getattr(c, name)
        if v is None and allow_none:
            return
        lo = 0 if allow_zero else 1
        if not _is_int(v) or not lo <= v <= hi:
            bad(name, f"must be an integer >= {lo} and <= {hi:,}" + (" or null" if allow_none else ""))

    if not isinstance(c.student, str) or not c.student.strip():
        bad("student", "must be a model alias (e.g. 'minilm') or a sentence-transformers folder")
    pos_int("n_negatives", MAX_COUNT, allow_none=True, allow_zero=True)
    if c.short_rows not in _SHORT_ROWS:
        bad("short_rows", f"must be one of {', '.join(_SHORT_ROWS)}")
    if not isinstance(c.in_batch_negatives, bool):
        bad("in_batch_negatives", "must be true or false")
    elif not c.in_batch_negatives and c.n_negatives == 0:
        bad("n_negatives", "must be >= 1 when in_batch_negatives is false (the loss would have no negative)")
    if not _is_num(c.temperature) or not 0 < c.temperature <= 10:
        bad("temperature", "must be a number in (0, 10]; 0.05 equals sentence-transformers' scale 20")
    if c.loss not in _LOSSES:
        bad("loss", f"must be one of {', '.join(_LOSSES)}")
    pos_int("mini_batch_size", MAX_BATCH)
    if not isinstance(c.gradient_checkpointing, bool):
        bad("gradient_checkpointing", "must be true or false")
    pos_int("checkpoint_every_n_layers", 1_000)
    if c.bf16 not in (True, False, "auto"):
        bad("bf16", 'must be true, false or "auto" (on wherever the GPU or CPU has native bf16)')
    if not _is_num(c.learning_rate) or not 0 < c.learning_rate < 1:  # also rejects NaN and inf
        bad("learning_rate", "must be a finite number in (0, 1)")
    if not _is_num(c.warmup_ratio) or not 0 <= c.warmup_ratio < 1:
        bad("warmup_ratio", "must be a number in [0, 1)")
    pos_int("warmup_steps", MAX_STEPS, allow_none=True, allow_zero=True)
    if not _is_num(c.epochs) or not 0 < c.epochs <= MAX_EPOCHS:  # also rejects NaN and inf
        bad("epochs", f"must be a number > 0 and <= {MAX_EPOCHS:,}")
    pos_int("max_steps", MAX_STEPS, allow_none=True)
    pos_int("batch_size", MAX_BATCH)
    pos_int("grad_accum", MAX_COUNT)
    if not _is_num(c.weight_decay) or not 0 <= c.weight_decay < 1:
        bad("weight_decay", "must be a number in [0, 1)")
    pos_int("query_max_length", MAX_LENGTH)
    pos_int("doc_max_length", MAX_LENGTH)
    for name in ("query_prompt", "doc_prompt"):
        if not isinstance(getattr(c, name), str):
            bad(name, "must be a string ('' for none)")
    pos_int("seed", MAX_SEED, allow_zero=True)
    if not isinstance(c.lora, bool):
        bad("lora", "must be true or false")
    pos_int("lora_rank", MAX_COUNT)
    pos_int("lora_alpha", MAX_COUNT)
    if not _is_num(c.lora_dropout) or not 0 <= c.lora_dropout < 1:
        bad("lora_dropout", "must be a number in [0, 1)")
    tm = c.lora_target_modules
    if tm is not None and (not isinstance(tm, tuple) or not tm
                           or not all(isinstance(m, str) and m for m in tm)):
        bad("lora_target_modules", "must be null or a non-empty list of module names, e.g. ['query', 'value']")
    rt = c.report_to
    if not isinstance(rt, tuple) or not all(isinstance(r, str) and r for r in rt):
        bad("report_to", "must be a list of logger names, e.g. ['tensorboard'] ([] for none)")
    elif "none" in rt or "all" in rt:
        bad("report_to", "list the integrations by name; [] means none")
    pos_int("eval_steps", MAX_STEPS, allow_none=True)
    if canonical_mask(c.mask_false_negatives) is None:
        bad("mask_false_negatives", "must be none, id, text or score(m) with a margin m in [-2, 2], e.g. score(0.1)")
    elif c.mask_false_negatives != "none" and (c.in_batch_negatives is not True or c.loss != "infonce"):
        bad("mask_false_negatives", "masks in-batch negatives: needs in_batch_negatives = true and loss = infonce")
