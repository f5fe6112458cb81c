"""HashEncoder: a deterministic hashed bag-of-words encoder for tests and dry runs (``--teacher hash``)."""
from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Literal

import numpy as np

from hardneg.encode import precision as _precision
from hardneg.encode.spec import EncoderSpec, check_texts
from hardneg.encode.models import parse_hash_alias
from hardneg.errors import HardnegError
from hardneg.io import stable_hash

_WORD = re.compile(r"\w+", re.UNICODE)
FAKE_VERSION = 1  # bump when the hashing rule changes: old cache entries must stop matching


def words(text: str) -> list[str]:
    """Lowercase word tokens (``\\w+``) of ``text``."""
    return _WORD.findall(text.lower())


def _bucket(word: str, dim: int) -> tuple[int, float]:
    """blake2b(word) -> (bucket in [0, dim), sign +-1): the low bits pick the bucket, the top bit the sign."""
    v = int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")
    return v % dim, (-1.0 if v >> 63 else 1.0)


class HashEncoder:
    """Hashed bag of words: each word adds +-1 to one of ``dim`` buckets; L2-normalised if ``spec.normalize``.

    Precision goes through the same resolution as the real encoders (caps, probe, fingerprint); ``bf16`` is
    simulated by rounding the output vectors through bfloat16 (and back to float32), so tests of the plumbing
    need no model.
    """

    def __init__(self, spec: EncoderSpec) -> None:
        dim = parse_hash_alias(spec.model)
        if dim is None:
            raise HardnegError(f"HashEncoder needs model 'hash' or 'hash:DIM', got {spec.model!r}",
                               fix="use EncoderSpec(model='hash:64')")
        self.spec = spec
        self.dim = dim
        self.precision, self.precision_reason = _precision.resolve_for_encoder(
            spec.precision, lambda: self._fingerprint_at("fp32"), self._encode_at,
            same_prompts=spec.query_prompt == spec.doc_prompt)

    def fingerprint(self) -> str:
        """Hex identity of everything that shapes the output vectors."""
        return self._fingerprint_at(self.precision)

    def _fingerprint_at(self, precision: str) -> str:
        return stable_hash({"encoder": "hash", "version": FAKE_VERSION, "dim": self.dim,
                            **self.spec.output_settings(self.spec.max_seq_length, precision)}, n=32)

    def encode(self, texts: Sequence[str], kind: Literal["query", "doc"], *,
               progress: bool = True) -> np.ndarray:
        """Vectors [n, dim] float32; the prompt of ``kind`` is prepended; a text with no words gives zeros."""
        return self._encode_at(texts, kind, self.precision)

    def _encode_at(self, texts: Sequence[str], kind: str, precision: str) -> np.ndarray:
        prompt = self.spec.prompt(kind)  # type: ignore[arg-type]
        check_texts(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)  # [n, dim]
        for row, text in enumerate(texts):
            toks = words(prompt + text)
            if self.spec.max_seq_length is not None:
                toks = toks[: self.spec.max_seq_length]  # stands in for the tokenizer's truncation
            for w in toks:
                b, sign = _bucket(w, self.dim)
                out[row, b] += sign
        if self.spec.normalize:
            norms = np.linalg.norm(out, axis=1, keepdims=True)  # [n, 1]
            np.divide(out, norms, out=out, where=norms > 0)
        if precision == "bf16":
            import torch

            out = torch.from_numpy(out).to(torch.bfloat16).to(torch.float32).numpy()
        return out
