"""What to encode with (``EncoderSpec``: a frozen, validated value) and what an encoder provides (``Encoder``).

No model code here: the backends (``encoder.py`` for sentence-transformers, ``fake.py``, ``onnx.py``) import this
module, never the other way round.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from hardneg.encode import precision as _precision
from hardneg.encode.models import ALIASES, MINILM_INT8, parse_hash_alias
from hardneg.errors import HardnegError

Kind = Literal["query", "doc"]
KINDS: tuple[str, ...] = ("query", "doc")
DTYPES: tuple[str, ...] = ("float32", "float16")
BACKENDS: tuple[str, ...] = ("torch", "onnx")
Precision = Literal["auto", "fp32", "bf16", "int8"]


@dataclass(frozen=True)
class EncoderSpec:
    """How to encode: model, prompts, truncation, batching, normalisation, storage dtype, backend, precision.

    ``precision`` is the compute precision (``dtype`` is only the storage dtype of cached vectors): ``"fp32"``,
    ``"bf16"`` (autocast; needs native bf16), ``"auto"`` (bf16 where native and the fidelity probe passes, else
    fp32) or ``"int8"`` (not available on this install); see ``hardneg.encode.precision``.
    """

    model: str
    query_prompt: str = ""
    doc_prompt: str = ""
    max_seq_length: int | None = None  # None = the model's default
    batch_size: int = 32
    normalize: bool = True
    dtype: Literal["float32", "float16"] = "float32"  # storage dtype of cached embeddings
    backend: Literal["torch", "onnx"] = "torch"
    trust_remote_code: bool = False
    precision: Precision = "fp32"  # requested compute precision; the encoder resolves "auto"

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise HardnegError(f"encoder model must be a non-empty string, got {self.model!r}",
                               fix=f"pass a local folder, a hub id or an alias ({', '.join(ALIASES)})")
        for name in ("query_prompt", "doc_prompt"):
            if not isinstance(getattr(self, name), str):
                raise HardnegError(f"encoder {name} must be a string, got {getattr(self, name)!r}",
                                   fix=f'set {name} = "" for no prompt')
        if self.max_seq_length is not None and not (_is_pos_int(self.max_seq_length)
                                                    and self.max_seq_length <= MAX_SEQ_LENGTH):
            raise HardnegError(f"encoder max_seq_length must be an integer from 1 to {MAX_SEQ_LENGTH:,}, got "
                               f"{str(self.max_seq_length)[:20]}",
                               fix="use e.g. max_seq_length = 256, or leave it unset for the model default")
        if not (_is_pos_int(self.batch_size) and self.batch_size <= MAX_BATCH_SIZE):
            raise HardnegError(f"encoder batch_size must be an integer from 1 to {MAX_BATCH_SIZE:,}, got "
                               f"{str(self.batch_size)[:20]}", fix="use e.g. batch_size = 32")
        for name in ("normalize", "trust_remote_code"):
            if not isinstance(getattr(self, name), bool):
                raise HardnegError(f"encoder {name} must be true or false, got {getattr(self, name)!r}",
                                   fix=f"set {name} = true or {name} = false")
        if self.dtype not in DTYPES:
            raise HardnegError(f"encoder dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}",
                               fix='use dtype = "float16" to halve the cache size, else "float32"')
        if self.backend not in BACKENDS:
            raise HardnegError(f"encoder backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}",
                               fix='use backend = "torch" (or "onnx" with model "minilm-int8")')
        if self.model == MINILM_INT8 and self.backend != "onnx":
            object.__setattr__(self, "backend", "onnx")  # canonical form: this alias only exists as ONNX
        if self.backend == "onnx" and self.model != MINILM_INT8:
            raise HardnegError(f"backend 'onnx' is only available for model '{MINILM_INT8}', got {self.model!r}",
                               fix=f'use backend = "torch", or model = "{MINILM_INT8}"')
        if self.trust_remote_code and parse_hash_alias(self.model) is not None:
            object.__setattr__(self, "trust_remote_code", False)  # no code to trust: keep one canonical form
        _precision.check_precision(self.precision)
        if self.backend == "onnx" and self.precision == "bf16":
            raise HardnegError(f"precision 'bf16' applies to the torch backend; model {self.model!r} runs its own "
                               "int8 ONNX graph", fix='use precision = "fp32" (or "auto") with this model, or '
                                                      'model = "minilm" with precision = "bf16"')

    def output_settings(self, max_seq_length: int | None, precision: str) -> dict[str, Any]:
        """The settings besides the weights that change the vectors (part of every encoder's fingerprint;
        ``max_seq_length`` and ``precision`` are the ones the encoder resolved). fp32 adds no key, so fp32
        fingerprints (and cache keys) are those of the versions before ``precision`` existed."""
        out = {"normalize": self.normalize, "max_seq_length": max_seq_length, "query_prompt": self.query_prompt,
               "doc_prompt": self.doc_prompt, "dtype": self.dtype, "backend": self.backend}
        if precision not in _precision.RESOLVED:
            raise ValueError(f"output_settings needs a resolved precision (fp32 or bf16), got {precision!r}")
        if precision != "fp32":
            out["precision"] = precision
        return out

    def prompt(self, kind: Kind) -> str:
        """The prompt prepended to texts of ``kind``."""
        if kind == "query":
            return self.query_prompt
        if kind == "doc":
            return self.doc_prompt
        raise HardnegError(f"kind must be 'query' or 'doc', got {kind!r}", fix="pass kind='query' or kind='doc'")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict of every field; ``precision`` only when it is not the default fp32, so
        the records and keys built from it stay those of the versions before the field existed."""
        out = asdict(self)
        if out["precision"] == "fp32":
            del out["precision"]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EncoderSpec:
        """Build a spec from a dict, rejecting unknown keys."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise HardnegError(f"unknown encoder setting(s): {', '.join(unknown)}",
                               fix=f"use only: {', '.join(sorted(known))}")
        return cls(**data)


MAX_SEQ_LENGTH = 1_000_000  # beyond any model's positions; checked against the model's own limit when loaded
MAX_BATCH_SIZE = 1_000_000  # a batch beyond this only exhausts memory


def _is_pos_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


@runtime_checkable
class Encoder(Protocol):
    """What every backend provides: a spec, an output dim, a fingerprint and ``encode``.

    hardneg's encoders also have ``precision`` (resolved: ``"fp32"`` or ``"bf16"``) and ``precision_reason``;
    read them with ``encoder_precision`` (it copes with wrappers and outside encoders that lack them).
    """

    spec: EncoderSpec
    dim: int

    def fingerprint(self) -> str:
        """Hex string that changes whenever the output embeddings could change."""
        ...

    def encode(self, texts: Sequence[str], kind: Kind, *, progress: bool = True) -> np.ndarray:
        """float32 [n, dim] C-contiguous; the prompt of ``kind`` is prepended."""
        ...


def encoder_precision(encoder: object) -> str:
    """The resolved compute precision of an encoder, for output records. An encoder without a ``precision``
    attribute (a wrapper, a remote encoder) counts as ``"fp32"`` when its spec asks for fp32, else ``"unknown"``
    (its fingerprint still holds the resolved precision)."""
    p = getattr(encoder, "precision", None)
    if isinstance(p, str):
        return p
    spec = getattr(encoder, "spec", None)
    return "fp32" if getattr(spec, "precision", "fp32") == "fp32" else "unknown"


def check_texts(texts: Sequence[str]) -> None:
    """Raise a HardnegError naming the first non-string text."""
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise HardnegError(f"text at row {i} is {type(t).__name__}, not a string",
                               fix="replace missing texts by empty strings before encoding")
