"""Encoding: model resolution, encoders (sentence-transformers, ONNX int8, hashed fake), the embedding cache and
where encoders run (``EncodeBackend``)."""
from hardneg.encode.backend import EncodeBackend
from hardneg.encode.cache import cache_key, content_sha256, encode_cached, ensure_cached, open_cached
from hardneg.encode.encoder import Encoder, EncoderSpec, STEncoder, encoder_precision, load_encoder
from hardneg.encode.fake import HashEncoder
from hardneg.encode.models import default_cache_dir, resolve_model
from hardneg.encode.precision import PRECISIONS, DeviceCaps, cpu_caps, resolve_precision

__all__ = [
    "PRECISIONS", "DeviceCaps", "EncodeBackend", "Encoder", "EncoderSpec", "HashEncoder", "STEncoder", "cache_key",
    "content_sha256", "cpu_caps", "default_cache_dir", "encode_cached", "encoder_precision", "ensure_cached",
    "load_encoder", "open_cached", "resolve_model", "resolve_precision",
]
