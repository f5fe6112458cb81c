"""Decoder-LLM embedders (the NV-Retriever-v1 architecture) as plain sentence-transformers folders.

What ``build_decoder_embedder`` makes out of any causal LM (Mistral, Qwen2, Llama, Gemma, ...):

- **Bidirectional attention** (paper Table 8): ``config.is_causal = False``. In transformers 5 this is the
  supported switch: ``merge_with_config_defaults`` (the decorator on every ``*Model.forward``) passes it on as
  the ``is_causal`` kwarg of the attention functions (eager, sdpa, flash), and ``create_causal_mask`` /
  ``create_sliding_window_causal_mask`` then build a bidirectional (padding-only) mask. It is stored in
  ``config.json``, so the folder loads back bidirectional with plain ``SentenceTransformer(path)``: no custom
  module class, no ``trust_remote_code``. ``verify_bidirectional`` checks it with a forward pass.
- **Mean pooling over the last hidden states** (``Pooling(mode="mean")``), optional ``Normalize``.
- **Instruction tokens masked out of the pooling**: ``Pooling(include_prompt=False)``. The instruction is
  passed as the sentence-transformers *prompt* (``"{instruction}: "``, see ``instruction_prompt``); ST
  measures the prompt's token count (``Transformer._get_prompt_length``) in ``encode`` and in the training
  collator alike (both call ``model.preprocess(texts, prompt=...)``), so training and evaluation mask the same
  tokens. Documents get no prompt, so nothing is masked for them.
- **Exact instruction boundary**: ST tokenizes the prompt alone. With BPE tokenizers (Mistral/Llama
  SentencePiece-style ``▁``, Qwen/Llama-3 byte-level ``Ġ``) the trailing space of ``"...: "`` is then a token
  of its own, while in ``"...: query"`` it merges into the first query token, so ST would mask one query token
  too many. ``exact_prompt_boundary=True`` prepends a right-strip normalizer to the tokenizer (the only other
  effect: trailing whitespace of any input is dropped) and saves it as a generic ``TokenizersBackend`` so the
  normalizer survives reloading (model-specific tokenizer classes rebuild their normalizer in ``__init__``).
  ``prompt_boundary_report`` (``hardneg.llm.boundary``) measures the boundary on real texts.
- Tokenizer: a pad token is set if missing (eos, else unk) and padding is on the right; ``use_cache`` off.

Saved folder = ``model.save(...)`` (``modules.json``, ``config.json`` with ``is_causal: false``, weights,
tokenizer, ``1_Pooling/config.json`` with ``include_prompt: false``) plus ``hardneg_llm.json`` (how it was
built; informational). ``EncoderSpec(model=folder, query_prompt=instruction_prompt(...))`` mines and evaluates
with it unchanged.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hardneg.errors import ConfigErrors, HardnegError
from hardneg.hashing import update_field
from hardneg.llm.boundary import (  # noqa: F401  (re-exported: importable from here as before)
    BoundaryReport,
    prompt_boundary_report,
    true_prompt_boundary,
)
from hardneg.options import MISSING, opt

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger("hardneg")

MARKER_FILE = "hardneg_llm.json"
INSTRUCTION_SEPARATOR = ": "
# Every attention and MLP projection of Mistral / Llama / Qwen2 / Gemma (see docs/nv-retriever.md, "LoRA").
DEFAULT_LORA_TARGETS: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
DTYPES = ("auto", "float32", "bfloat16", "float16")
ATTN_IMPLEMENTATIONS = ("eager", "sdpa", "flash_attention_2", "flex_attention")


@dataclass(frozen=True)
class DecoderConfig:
    """How a causal LM becomes an embedder (NV-Retriever-v1 defaults; the recipe's ``[model]`` table)."""

    base: str = opt(MISSING, "Causal LM to build the embedder from: a folder or hub id (*ForCausalLM weights load "
                             "into the base model; the LM head is dropped), e.g. mistralai/Mistral-7B-v0.1.")
    bidirectional: bool = opt(True, "Replace causal by bidirectional attention (config.is_causal = false).")
    mask_instruction: bool = opt(True, "Exclude the query prompt's tokens from the mean pooling "
                                       "(include_prompt=false).")
    normalize: bool = opt(True, "Append an L2 Normalize module (cosine = dot product downstream).")
    max_seq_length: int = opt(512, "Inference truncation stored in the folder (training uses the query and "
                                   "document lengths of [train]).")
    dtype: str = opt("auto", "Weight dtype to load and save: auto (the checkpoint's own), float32, bfloat16 or "
                             "float16.")
    attn_implementation: str | None = opt(None, "eager, sdpa, flash_attention_2 or flex_attention [default: the "
                                                "transformers default, sdpa].")
    exact_prompt_boundary: bool = opt(True, "Right-strip normalizer so the masked prompt length is exact (module "
                                            "docstring).")
    trust_remote_code: bool = opt(False, "Allow the hub model's own Python code.")

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not isinstance(self.base, str) or not self.base.strip():
            problems.append(f"base={self.base!r}: must be a causal LM folder or hub id, e.g. "
                            "'mistralai/Mistral-7B-v0.1'")
        for name in ("bidirectional", "mask_instruction", "normalize", "exact_prompt_boundary", "trust_remote_code"):
            if not isinstance(getattr(self, name), bool):
                problems.append(f"{name}={getattr(self, name)!r}: must be true or false")
        m = self.max_seq_length
        if not isinstance(m, int) or isinstance(m, bool) or m < 1:
            problems.append(f"max_seq_length={m!r}: must be an integer >= 1")
        if self.dtype not in DTYPES:
            problems.append(f"dtype={self.dtype!r}: must be one of {', '.join(DTYPES)}")
        if self.attn_implementation is not None and self.attn_implementation not in ATTN_IMPLEMENTATIONS:
            problems.append(f"attn_implementation={self.attn_implementation!r}: must be one of "
                            f"{', '.join(ATTN_IMPLEMENTATIONS)} (or unset for the transformers default)")
        if problems:
            raise ConfigErrors(problems, where="model config")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------- small helpers


def instruction_prompt(instruction: str) -> str:
    """The NV-Retriever query prompt: ``"{instruction}: "`` (so the query reads ``"{instruction}: {query}"``).

    ``""`` stays ``""`` (no instruction). A trailing colon or whitespace in ``instruction`` is not doubled.
    """
    if not isinstance(instruction, str):
        raise HardnegError(f"instruction must be a string, got {type(instruction).__name__}",
                           fix='write instruction = "Given a question, retrieve passages that answer it"')
    core = instruction.strip().rstrip(":").rstrip()
    return f"{core}{INSTRUCTION_SEPARATOR}" if core else ""


def torch_dtype(name: str) -> Any:
    """``"float32"`` -> ``torch.float32`` etc.; ``"auto"`` stays ``"auto"``."""
    import torch

    return name if name == "auto" else getattr(torch, name)


def bf16_supported() -> bool:
    """True on a CUDA device with bfloat16 support (Ampere or newer); False on CPU (never auto-enabled there)."""
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def hf_model(model: Any) -> Any:
    """The transformers model inside a SentenceTransformer (or the argument itself)."""
    return getattr(model, "transformers_model", None) or model


def set_bidirectional(model: Any, on: bool = True) -> None:
    """Switch a decoder (or a SentenceTransformer around one) between bidirectional and causal attention."""
    hf_model(model).config.is_causal = not on


def is_bidirectional(model: Any) -> bool:
    """True if the model's config asks for bidirectional attention."""
    return getattr(hf_model(model).config, "is_causal", True) is False


def verify_bidirectional(model: Any, expect: bool = True) -> None:
    """Forward two 4-token inputs that differ only in the last token; the first token's state must change iff
    attention is bidirectional. Raises HardnegError if the architecture ignores ``config.is_causal``."""
    import torch

    hf = hf_model(model)
    vocab = int(getattr(hf.config, "vocab_size", 0) or 0)
    if vocab < 8:
        return
    device = next(hf.parameters()).device
    a = torch.tensor([[3, 4, 5, 6]], device=device)
    b = torch.tensor([[3, 4, 5, 7]], device=device)
    was_training = hf.training
    hf.eval()
    with torch.no_grad():
        ha = hf(input_ids=a, attention_mask=torch.ones_like(a)).last_hidden_state[0, 0].float()
        hb = hf(input_ids=b, attention_mask=torch.ones_like(b)).last_hidden_state[0, 0].float()
    hf.train(was_training)
    changed = not torch.allclose(ha, hb, rtol=0, atol=1e-6)
    if changed != expect:
        kind = type(hf).__name__
        raise HardnegError(
            f"{kind} ignores config.is_causal: attention stayed {'causal' if expect else 'bidirectional'}",
            fix="use an architecture whose forward is built on transformers 5 masking utilities (Mistral, Llama, "
                "Qwen2, Gemma...), or set bidirectional = false")


def lora_targets(model: Any, wanted: Sequence[str] = DEFAULT_LORA_TARGETS) -> tuple[str, ...]:
    """The names in ``wanted`` that exist as Linear layers of the model (so one list fits several families)."""
    import torch

    present = {name.rsplit(".", 1)[-1] for name, mod in hf_model(model).named_modules()
               if isinstance(mod, torch.nn.Linear)}
    return tuple(w for w in wanted if w in present)


def weights_digest(model: Any) -> str:
    """sha256 over every tensor of the model's state dict (names, dtypes, shapes, bytes), in name order."""
    import torch

    h = hashlib.sha256()
    state = hf_model(model).state_dict()
    for name in sorted(state):
        t = state[name].detach()
        # Every field length-prefixed: a "|" in a name or a byte run cannot shift a boundary.
        for part in (name, str(t.dtype), str(tuple(t.shape))):
            update_field(h, part)
        t = t.contiguous().cpu()
        if t.dtype in (torch.bfloat16, torch.float16):
            t = t.view(torch.int16)
        update_field(h, t.numpy().tobytes())
    return h.hexdigest()


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report while loading a causal LM into its base model (the dropped LM head is
    listed as an UNEXPECTED key, which is intended here)."""
    from transformers.utils import logging as hf_logging

    old = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(old)


# ---------------------------------------------------------------- tokenizer


def _exact_boundary_tokenizer(tok: Any) -> Any:
    """A ``TokenizersBackend`` equal to ``tok`` except that trailing whitespace is stripped before tokenizing."""
    from tokenizers import normalizers
    from transformers import PreTrainedTokenizerFast

    backend = copy.deepcopy(tok.backend_tokenizer)
    strip = normalizers.Strip(left=False, right=True)
    old = backend.normalizer
    backend.normalizer = normalizers.Sequence([strip] if old is None else [strip, old])
    specials = {k: getattr(tok, k) for k in ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token",
                                             "cls_token", "mask_token") if getattr(tok, k, None) is not None}
    new = PreTrainedTokenizerFast(tokenizer_object=backend, padding_side=tok.padding_side,
                                  model_max_length=tok.model_max_length, **specials)
    # Same ids for ordinary text (no trailing whitespace): a cheap guard against a lossy conversion.
    probe = ["Given a question, retrieve passages: what is it", "plain text 123", "x"]
    if [tok(p)["input_ids"] for p in probe] != [new(p)["input_ids"] for p in probe]:
        raise HardnegError("the tokenizer changed while adding the exact-prompt-boundary normalizer",
                           fix="set exact_prompt_boundary = false (ST then masks the trailing-space token of the "
                               "prompt, i.e. possibly the first query token)")
    return new


def prepare_tokenizer(tok: Any, *, exact_prompt_boundary: bool, max_seq_length: int) -> Any:
    """Pad token (eos, else unk), right padding, truncation length, optional exact prompt boundary."""
    if not getattr(tok, "is_fast", False):
        raise HardnegError(f"tokenizer {type(tok).__name__} is not a fast (tokenizers) tokenizer",
                           fix="use a model that ships tokenizer.json")
    if tok.pad_token is None:
        fill = tok.eos_token or tok.unk_token
        if fill is None:
            raise HardnegError("the tokenizer has no pad, eos or unk token to pad with",
                               fix="add a pad token to the base model's tokenizer")
        tok.pad_token = fill
    tok.padding_side = "right"
    tok.model_max_length = max_seq_length
    return _exact_boundary_tokenizer(tok) if exact_prompt_boundary else tok


# ---------------------------------------------------------------- build / save


def build_decoder_embedder(cfg: DecoderConfig, *, device: str | None = None, verify: bool = True
                           ) -> SentenceTransformer:
    """Causal LM -> SentenceTransformer [Transformer(bidirectional), Pooling(mean, prompt excluded), Normalize]."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    model_kwargs: dict[str, Any] = {"dtype": torch_dtype(cfg.dtype)}
    if cfg.attn_implementation:
        model_kwargs["attn_implementation"] = cfg.attn_implementation
    try:
        with quiet_transformers():
            module = Transformer(cfg.base, model_kwargs=model_kwargs,
                                 config_kwargs={"is_causal": not cfg.bidirectional, "use_cache": False,
                                                "trust_remote_code": cfg.trust_remote_code},
                                 processor_kwargs={"trust_remote_code": cfg.trust_remote_code},
                                 max_seq_length=cfg.max_seq_length)
    except OSError as exc:
        raise HardnegError(f"cannot load the base model {cfg.base!r}: {str(exc).splitlines()[0]}",
                           where="model config", fix="pass a local causal-LM folder (config.json, weights, "
                                                     "tokenizer) or a hub id you can download") from None
    hf = module.model
    limit = getattr(hf.config, "max_position_embeddings", None)
    if isinstance(limit, int) and cfg.max_seq_length > limit:
        raise HardnegError(f"max_seq_length={cfg.max_seq_length} exceeds the model's {limit} positions",
                           where="model config", fix=f"set max_seq_length <= {limit}")
    set_bidirectional(hf, cfg.bidirectional)
    hf.config.use_cache = False  # an embedder never decodes; a KV cache would only cost memory
    module.processor = prepare_tokenizer(module.tokenizer, exact_prompt_boundary=cfg.exact_prompt_boundary,
                                         max_seq_length=cfg.max_seq_length)
    if hf.config.pad_token_id is None:
        hf.config.pad_token_id = module.tokenizer.pad_token_id
    modules: list[Any] = [module, Pooling(module.get_embedding_dimension(), "mean",
                                          include_prompt=not cfg.mask_instruction)]
    if cfg.normalize:
        modules.append(Normalize())
    model = SentenceTransformer(modules=modules, device=device)
    if verify:
        verify_bidirectional(model, expect=cfg.bidirectional)
    return model


def save_embedder(model: SentenceTransformer, out_dir: str | Path, cfg: DecoderConfig | None = None) -> Path:
    """Write ``model`` as a sentence-transformers folder (atomically) plus ``hardneg_llm.json``."""
    from hardneg.io import atomic_path, write_json

    out_dir = Path(out_dir)
    with atomic_path(out_dir, is_dir=True) as tmp:
        model.save(str(tmp), safe_serialization=True, create_model_card=False)
        write_json(tmp / MARKER_FILE, describe(model, cfg))
    return out_dir


def make_decoder_student(cfg: DecoderConfig, out_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Build the embedder of ``cfg`` and save it at ``out_dir``; an existing folder built from the same config is
    reused (so ``hardneg run`` / the recipe can name it as the student)."""
    out_dir = Path(out_dir)
    marker = out_dir / MARKER_FILE
    if not overwrite and marker.is_file():
        try:
            if json.loads(marker.read_text(encoding="utf-8")).get("decoder_config") == cfg.to_dict():
                return out_dir
        except ValueError:
            pass
    return save_embedder(build_decoder_embedder(cfg), out_dir, cfg)


def describe(model: SentenceTransformer, cfg: DecoderConfig | None = None) -> dict[str, Any]:
    """What the folder is: architecture, attention, pooling, tokenizer boundary fix (for ``hardneg_llm.json``)."""
    from sentence_transformers.sentence_transformer.modules import Pooling

    hf = hf_model(model)
    pooling = next((m for m in model if isinstance(m, Pooling)), None)
    tok = model.tokenizer
    return {
        "format": "sentence-transformers folder; load with SentenceTransformer(path) or hardneg EncoderSpec",
        "decoder_config": cfg.to_dict() if cfg is not None else None,
        "architecture": type(hf).__name__,
        "bidirectional": is_bidirectional(hf),
        "pooling": pooling.pooling_mode if pooling is not None else None,
        "instruction_masked": pooling is not None and not pooling.include_prompt,
        "normalized": any(type(m).__name__ == "Normalize" for m in model),
        "dtype": str(next(hf.parameters()).dtype).replace("torch.", ""),
        "tokenizer": {"class": type(tok).__name__, "pad_token": tok.pad_token, "padding_side": tok.padding_side},
        "query_prompt_rule": f"{{instruction}}{INSTRUCTION_SEPARATOR}",
    }
