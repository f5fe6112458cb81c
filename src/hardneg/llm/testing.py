"""Tiny offline causal LMs for tests and demos: random 2-layer decoders with small trained tokenizers.

``make_tiny_causal_lm`` writes a folder shaped like a hub checkpoint of a base LLM (``*ForCausalLM`` weights,
``config.json``, tokenizer files), so ``DecoderConfig(base=folder)`` exercises the real loading path.
Tokenizer kinds mimic the real families: ``"metaspace"`` = Mistral/Llama-2 (SentencePiece-style BPE with
``▁``, byte fallback, BOS added, no pad token, class ``LlamaTokenizer``), ``"bytelevel"`` = Qwen2
(GPT-2-style byte-level BPE, no BOS, class ``Qwen2Tokenizer``), ``"wordlevel"`` = one token per word.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from hardneg.testing import WORDS

Arch = Literal["mistral", "qwen2", "llama", "gemma"]
TokKind = Literal["metaspace", "bytelevel", "wordlevel"]

_EXTRA = ("given a scientific claim retrieve documents that support or refute the question passages answer "
          "query web search relevant find classify intent of banking sentence similar semantically "
          "doc title text").split()


def _corpus() -> list[str]:
    words = list(WORDS) + list(_EXTRA)
    lines = [" ".join(words[i:i + 7]) + ": " + " ".join(words[i + 3:i + 11]) for i in range(len(words))]
    lines.append("abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,:;!?'\"()-_/")
    return lines * 2


def _train_bpe(kind: TokKind, vocab_size: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    if kind == "metaspace":
        tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
        # split=True while training keeps pieces inside words, as SentencePiece does.
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
        specials = ["<unk>", "<s>", "</s>"]
        alphabet: list[str] = []
    else:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        specials = ["<|endoftext|>"]
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, initial_alphabet=alphabet,
                                  show_progress=False)
    tok.train_from_iterator(_corpus(), trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return model["vocab"], merges  # type: ignore[return-value]


def make_tiny_tokenizer(kind: TokKind = "metaspace"):  # -> PreTrainedTokenizerBase
    """A small tokenizer of the given family (see module docstring)."""
    if kind == "metaspace":
        from transformers import LlamaTokenizer

        vocab, merges = _train_bpe(kind, 400)
        return LlamaTokenizer(vocab=vocab, merges=merges, add_bos_token=True)
    if kind == "bytelevel":
        from transformers import Qwen2Tokenizer

        vocab, merges = _train_bpe(kind, 500)
        return Qwen2Tokenizer(vocab=vocab, merges=merges)
    if kind == "wordlevel":
        from tokenizers import Tokenizer, models, pre_tokenizers, processors
        from transformers import PreTrainedTokenizerFast

        words = sorted({w for line in _corpus() for w in line.replace(":", " : ").split()})
        vocab = {t: i for i, t in enumerate(["<unk>", "<s>", "</s>", "<pad>", ":", *[w for w in words if w != ":"]])}
        tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
        return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                       pad_token="<pad>")
    raise ValueError(f"unknown tokenizer kind {kind!r}")


def tiny_config(arch: Arch, vocab_size: int, *, hidden: int = 32, layers: int = 2, positions: int = 512,
                bos_token_id: int | None = None, eos_token_id: int | None = None):
    """A 2-layer, hidden-32 config of ``arch`` (4 heads, 2 KV heads: grouped-query attention as in Mistral)."""
    from transformers import GemmaConfig, LlamaConfig, MistralConfig, Qwen2Config

    cls = {"mistral": MistralConfig, "qwen2": Qwen2Config, "llama": LlamaConfig, "gemma": GemmaConfig}[arch]
    kw = dict(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=positions,
              bos_token_id=bos_token_id, eos_token_id=eos_token_id, tie_word_embeddings=False)
    if arch == "gemma":
        kw["head_dim"] = hidden // 4
    return cls(**kw)


def make_tiny_causal_lm(folder: Path, *, arch: Arch = "mistral", tokenizer: TokKind = "metaspace",
                        seed: int = 0) -> Path:
    """Save a random tiny ``*ForCausalLM`` and its tokenizer at ``folder`` (a stand-in for a base LLM checkpoint)."""
    import torch
    from transformers import AutoModelForCausalLM

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok = make_tiny_tokenizer(tokenizer)
    torch.manual_seed(seed)
    config = tiny_config(arch, len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
