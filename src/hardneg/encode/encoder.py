"""The sentence-transformers backend and ``load_encoder`` (the spec and the Encoder protocol: ``spec.py``).

An encoder turns texts into float32 vectors [n, dim] and has a ``fingerprint()`` that changes whenever its
output could change; the embedding cache (``cache.py``) keys on it. ``encoder.precision`` is the compute precision
it resolved (``"fp32"`` or ``"bf16"``, see ``precision.py``); it is part of the fingerprint unless it is fp32.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hardneg.encode import backend as _backend
from hardneg.encode import precision as _precision
from hardneg.encode.fake import HashEncoder
from hardneg.encode.models import ALIASES, memo_sha256, parse_hash_alias, resolve_model
from hardneg.encode.spec import (KINDS, Encoder, EncoderSpec, Kind, Precision, check_texts,  # noqa: F401 (re-exports)
                                 encoder_precision)
from hardneg.errors import HardnegError
from hardneg.io import sha256_bytes, stable_hash

log = logging.getLogger("hardneg")

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".onnx")
CONFIG_SUFFIXES = (".json", ".txt", ".model")  # configs, tokenizer files, sentencepiece models
# Records that hardneg's trainer writes beside a model (wall times, paths): they never change its embeddings.
NOT_MODEL_FILES = {"README.md", "train_config.json", "loss_curve.json", "stage_config.json"}


def load_encoder(spec: EncoderSpec, cache_dir: Path | None = None) -> Encoder:
    """The encoder a spec names, where it runs: the factory installed by ``backend.encoder_factory`` (e.g. Ray
    actors, ``hardneg.scale.encoding``) if any, else ``local_encoder`` in this process."""
    factory = _backend.FACTORY.get()
    return factory(spec, cache_dir) if factory is not None else local_encoder(spec, cache_dir)


def local_encoder(spec: EncoderSpec, cache_dir: Path | None = None) -> Encoder:
    """Build the encoder a spec names: ``hash[:DIM]`` -> HashEncoder, ``minilm-int8`` -> ONNX, else ST."""
    if parse_hash_alias(spec.model) is not None:
        return HashEncoder(spec)
    if spec.backend == "onnx":
        from hardneg.encode.onnx import OnnxEncoder  # lazy: onnxruntime is optional
        return OnnxEncoder(spec)
    return STEncoder(spec, cache_dir=cache_dir)


# -- model folder identity ------------------------------------------------------------------------------------

def _module_dirs(folder: Path) -> list[Path]:
    """The model root plus every module folder listed in modules.json (where weights and configs live)."""
    dirs = [folder]
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return dirs
    for m in modules if isinstance(modules, list) else []:
        sub = m.get("path") if isinstance(m, dict) else None
        if sub and (folder / sub).is_dir():
            dirs.append(folder / sub)
    return dirs


def _pooling_configs(folder: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for d in _module_dirs(folder)[1:]:
        cfg = d / "config.json"
        if cfg.is_file():
            try:
                out[d.name] = json.loads(cfg.read_text(encoding="utf-8"))
            except ValueError:
                out[d.name] = sha256_bytes(cfg.read_bytes())
    return out


def folder_identity(folder: Path, cache_dir: Path | None = None) -> dict[str, Any]:
    """Content identity of a model folder: sha256 of weights, modules.json, pooling and tokenizer/config files.

    Only the root and the module folders named in modules.json count (not e.g. ``onnx/`` or ``openvino/``
    variants the torch backend never reads). Weight hashes are memoised by (abs path, size, mtime).
    """
    weights: dict[str, str] = {}
    configs: dict[str, str] = {}
    for d in _module_dirs(folder):
        for f in sorted(d.iterdir()):
            if not f.is_file() or f.name.startswith("."):
                continue
            rel = f.relative_to(folder).as_posix()
            if f.suffix in WEIGHT_SUFFIXES:
                weights[rel] = memo_sha256(f, cache_dir)
            elif f.suffix in CONFIG_SUFFIXES and f.name not in NOT_MODEL_FILES:
                configs[rel] = sha256_bytes(f.read_bytes())
    if not weights:
        raise HardnegError("no weight files (*.safetensors, *.bin, *.onnx) in the model folder", where=folder,
                           fix="pass a folder saved by sentence-transformers or transformers")
    modules_json = folder / "modules.json"
    modules = json.loads(modules_json.read_text(encoding="utf-8")) if modules_json.is_file() else None
    return {"weights": weights, "modules": modules, "pooling": _pooling_configs(folder), "configs": configs}


def _hub_snapshot(model_id: str) -> Path | None:
    """The local snapshot folder sentence-transformers loaded ``model_id`` from, if it is in the HF cache."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    cache = os.environ.get("SENTENCE_TRANSFORMERS_HOME")
    # sentence-transformers prefixes bare names with its organisation ("all-MiniLM-L6-v2").
    candidates = [model_id] + ([f"sentence-transformers/{model_id}"] if "/" not in model_id else [])
    for repo in candidates:
        for fname in ("modules.json", "config.json"):
            hit = try_to_load_from_cache(repo, fname, cache_dir=cache)
            if isinstance(hit, str):
                return Path(hit).parent
    return None


def _hub_revision(model_id: str) -> str | None:
    try:
        from huggingface_hub import HfApi
        return HfApi().model_info(model_id).sha
    except Exception:  # offline or unknown: the caller documents the weaker identity
        return None


# -- sentence-transformers backend ----------------------------------------------------------------------------

class STEncoder:
    """sentence-transformers backend (torch; CUDA if available, else CPU).

    Fingerprint: for a local folder (aliases included), the sha256 of its weight files plus modules.json,
    pooling and tokenizer/config files. For a hub id, the same over the snapshot folder in the local Hugging
    Face cache that sentence-transformers loaded; if that folder cannot be found, the hub id plus the commit
    sha from ``huggingface_hub`` (online only; offline the id alone, with a warning: a changed model under the
    same id would then reuse stale cached embeddings).

    Precision: ``bf16`` runs ``model.encode`` under ``torch.autocast(device, dtype=torch.bfloat16)`` with fp32
    weights (2.3-2.4x fp32 docs/s on MiniLM on an AVX-512 BF16 CPU, cosine to fp32 >= 0.99997); the output is
    float32 either way. ``self.precision`` is the resolved one (``auto`` runs the probe at construction).
    """

    def __init__(self, spec: EncoderSpec, cache_dir: Path | None = None) -> None:
        self.spec = spec
        self._cache_dir = cache_dir
        self.source = resolve_model(spec.model, cache_dir)
        self.is_local = Path(self.source).is_dir()
        self.model = self._load()
        self._set_max_seq_length()
        dim = self.model.get_embedding_dimension()
        if not dim:
            raise HardnegError(f"cannot tell the embedding size of model {spec.model!r}", where=self.source,
                               fix="use a sentence-transformers model with a Pooling module")
        self.dim: int = int(dim)
        self._identity: dict[str, Any] | None = None
        self._fingerprints: dict[str, str] = {}  # resolved precision -> fingerprint
        self.precision, self.precision_reason = _precision.resolve_for_encoder(
            spec.precision, lambda: self._fingerprint_at("fp32"), self._probe_encode,
            same_prompts=spec.query_prompt == spec.doc_prompt)

    def _load(self) -> Any:
        import torch
        from sentence_transformers import SentenceTransformer

        device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            return SentenceTransformer(self.source, device=device, trust_remote_code=self.spec.trust_remote_code)
        except Exception as exc:  # ST raises OSError, ValueError, HF errors...: all mean "cannot load this"
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            if self.is_local:
                raise HardnegError(f"cannot load the model folder ({reason})", where=self.source,
                                   fix="check that it was saved by sentence-transformers (modules.json) or "
                                       "transformers (config.json + weights)") from exc
            offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
            what = (f"model id {self.source!r} could not be loaded offline ({reason})" if offline
                    else f"model id {self.source!r} could not be loaded ({reason})")
            raise HardnegError(what, fix=f"pass a local model folder or an alias ({', '.join(ALIASES)})") \
                from exc

    def _set_max_seq_length(self) -> None:
        want = self.spec.max_seq_length
        if want is None:
            return
        limit = getattr(getattr(self.model.transformers_model, "config", None), "max_position_embeddings", None)
        if isinstance(limit, int) and want > limit:
            raise HardnegError(f"max_seq_length {want} exceeds the model's {limit} positions",
                               where=self.source, fix=f"use max_seq_length <= {limit}")
        self.model.max_seq_length = want

    @property
    def max_seq_length(self) -> int | None:
        """The truncation length actually in effect."""
        return self.model.max_seq_length

    def _weights_identity(self) -> dict[str, Any]:
        if self.is_local:
            return folder_identity(Path(self.source), self._cache_dir)
        snap = _hub_snapshot(self.source)
        if snap is not None:
            return folder_identity(snap, self._cache_dir)
        rev = _hub_revision(self.source)
        if rev is None:
            log.warning("cannot identify the weights of %r (no local snapshot, no hub access): cached "
                        "embeddings are keyed by its name only", self.source)
        return {"hub_id": self.source, "revision": rev}

    def fingerprint(self) -> str:
        """Hex identity of weights, modules/pooling/tokenizer files, normalisation, truncation, prompts, dtype,
        and the resolved precision when it is not fp32."""
        return self._fingerprint_at(self.precision)

    def _fingerprint_at(self, precision: str) -> str:
        if precision not in self._fingerprints:
            if self._identity is None:
                self._identity = self._weights_identity()
            self._fingerprints[precision] = stable_hash(
                {"encoder": "sentence-transformers", "model": self._identity,
                 **self.spec.output_settings(self.max_seq_length, precision)}, n=32)
        return self._fingerprints[precision]

    def encode(self, texts: Sequence[str], kind: Kind, *, progress: bool = True) -> np.ndarray:
        """float32 [n, dim] C-contiguous; the spec's prompt for ``kind`` is prepended by sentence-transformers."""
        return self._encode_at(texts, kind, self.precision, progress=progress)

    def _probe_encode(self, texts: Sequence[str], kind: str, precision: str) -> np.ndarray:
        # Batches of 8: the probe's short queries are then not padded to its longest passages (half the time).
        return self._encode_at(texts, kind, precision, batch_size=min(8, self.spec.batch_size))

    def _encode_at(self, texts: Sequence[str], kind: str, precision: str, *, progress: bool = False,
                   batch_size: int | None = None) -> np.ndarray:
        prompt = self.spec.prompt(kind)  # type: ignore[arg-type]
        check_texts(texts)
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        # prompt="" (not None) on purpose: it also disables a model's default_prompt_name, so the spec is the
        # whole truth about prompts.
        with _autocast(self.model.device.type, precision):
            emb = self.model.encode(list(texts), prompt=prompt, batch_size=batch_size or self.spec.batch_size,
                                    show_progress_bar=progress, convert_to_numpy=True,
                                    normalize_embeddings=self.spec.normalize)
        return np.ascontiguousarray(emb, dtype=np.float32)  # [n, dim]


def _autocast(device_type: str, precision: str) -> Any:
    """bf16: ``torch.autocast`` (matmuls in bf16, LayerNorm/softmax/pooling in fp32); fp32: no context at all."""
    if precision == "fp32":
        return contextlib.nullcontext()
    import torch

    return torch.autocast(device_type, dtype=torch.bfloat16)

