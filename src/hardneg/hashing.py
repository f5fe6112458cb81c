"""Unambiguous content hashes: every field is length-prefixed, so no field content can forge a boundary.

A separator join (``"\\x1f".join(...)``) is not enough: ids ``("a\\x1fb",)`` with texts ``("c",)`` and ids
``("a",)`` with texts ``("b\\x1fc",)`` join to the same string. With an 8-byte length before each field the byte
stream decodes back to exactly one field sequence.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any


def update_field(h: Any, field: str | bytes) -> None:
    """Feed one field to hashlib object ``h``: its byte length (8 bytes, little-endian), then its bytes."""
    b = field.encode("utf-8") if isinstance(field, str) else field
    h.update(len(b).to_bytes(8, "little"))
    h.update(b)


def sha256_fields(fields: Iterable[str | bytes]) -> str:
    """Hex sha256 of a sequence of fields, each length-prefixed (see ``update_field``)."""
    h = hashlib.sha256()
    for f in fields:
        update_field(h, f)
    return h.hexdigest()


def sha256_pairs(ids: Sequence[str], texts: Sequence[str]) -> str:
    """Hex sha256 over (id, text) pairs: the pair count (8 bytes, little-endian), then id, text, id, text, ...
    each length-prefixed. The embedding cache's content key and the corpus / queries fingerprints."""
    h = hashlib.sha256()
    h.update(len(ids).to_bytes(8, "little"))
    for i, t in zip(ids, texts, strict=True):
        update_field(h, i)
        update_field(h, t)
    return h.hexdigest()


def h64(*parts: object) -> int:
    """A 64-bit blake2b of the parts' strings, each length-prefixed: seeded, order-free keys (which pairs an
    injection picks, which positives thinning keeps)."""
    h = hashlib.blake2b(digest_size=8)
    for p in parts:
        update_field(h, str(p))
    return int.from_bytes(h.digest(), "little")
