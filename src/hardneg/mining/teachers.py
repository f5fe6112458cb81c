"""Teacher references: one encoder, a score fusion of encoders, or a list of teachers for ensembles.

    minilm                       one encoder (alias, folder or hub id)
    fusion(minilm,mpnet)         score = sum of the members' cosine scores (fusion(...,how=mean) for the mean);
                                 its pool is the union of the members' candidates rescored by every member
    minilm|mpnet                 several teachers, best first: the input of ensemble strategies,
                                 e.g. percpos(0.95)+topk(4)+ensemble(intra,no-dedup)

Every member shares the other encoder settings of the base spec (prompts, max length, dtype, ...).

A mining teacher asked for precision ``auto`` runs in fp32 (logged once per model): mining keeps the top of a
ranking and cuts at thresholds, and bf16 scores (error ~1e-3) swap near-tied candidates. Measured on SciFact with
MiniLM (``benchmarks/README.md``, "precision"): a bf16 teacher mined the same ``topk(4)`` rows as fp32 for 93.7% of
rows and 70-82% under positive-aware filters, below the 95% guard, while a pool is built once per teacher and cached.
``precision = "bf16"`` still mines in bf16 when asked for by name.

A teacher is parsed once, where it enters (the verbs, ``hardneg run`` / ``ablate`` stages, the recipe, the
sentence-transformers shim), into a ``Teacher`` value that the mining code carries; ``as_teacher`` turns the plain
string or ``EncoderSpec`` that public functions also accept into one.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from hardneg.encode.encoder import EncoderSpec, load_encoder
from hardneg.errors import HardnegError
from hardneg.io import stable_hash

_FUSION = re.compile(r"^fusion\((.*)\)$")
log = logging.getLogger("hardneg")


@dataclass(frozen=True)
class TeacherRef:
    kind: str                      # "single" | "fusion" | "list"
    members: tuple[str, ...]
    how: str = "sum"

    def __str__(self) -> str:
        if self.kind == "single":
            return self.members[0]
        if self.kind == "list":
            return "|".join(self.members)
        return f"fusion({','.join(self.members)}{'' if self.how == 'sum' else ',how=' + self.how})"

    @property
    def slug(self) -> str:
        # Only [A-Za-z0-9._-] and never a leading dot: a teacher name cannot become ".." or a hidden file.
        s = re.sub(r"[^A-Za-z0-9._-]+", "-", str(self)).strip("-").lstrip(".") or "teacher"
        return s if len(s) <= 60 else s[:40] + "-" + stable_hash(str(self), n=8)


def parse_teacher(text: str) -> TeacherRef:
    """Parse a teacher string (see the module docstring)."""
    t = text.strip()
    if not t:
        raise HardnegError("empty teacher", fix="pass an alias (minilm, mpnet), a folder, a hub id, or fusion(a,b)")
    if "|" in t:
        parts = tuple(p.strip() for p in t.split("|"))
        if any(not p or "|" in p for p in parts) or len(parts) < 2 or len(set(parts)) != len(parts):
            raise HardnegError(f'bad teacher list "{t}"', fix="write distinct teachers joined by |, e.g. minilm|mpnet")
        return TeacherRef("list", tuple(str(parse_teacher(p)) for p in parts))
    m = _FUSION.match(t)
    if m:
        args = [a.strip() for a in m.group(1).split(",")]
        how = "sum"
        if args and args[-1].startswith("how="):
            how = args.pop()[4:]
        if how not in ("sum", "mean") or len(args) < 2 or any(not a for a in args) or len(set(args)) != len(args):
            raise HardnegError(f'bad fusion teacher "{t}"', fix="write fusion(minilm,mpnet) or fusion(minilm,mpnet,how=mean)")
        return TeacherRef("fusion", tuple(args), how)
    if t.startswith("fusion"):
        raise HardnegError(f'bad fusion teacher "{t}"', fix="write fusion(minilm,mpnet)")
    return TeacherRef("single", (t,))


@dataclass(frozen=True)
class Teacher:
    """A parsed teacher and the encoder settings its models share.

    ``base.model`` is the canonical teacher string (so ``to_dict()`` is the ``[teacher]`` table the configs and
    cache metadata always held); encoders are only ever loaded from ``members()``, each holding one model."""

    ref: TeacherRef
    base: EncoderSpec

    def __post_init__(self) -> None:
        if not isinstance(self.ref, TeacherRef) or not isinstance(self.base, EncoderSpec) \
                or self.base.model != str(self.ref):
            raise HardnegError(f"a Teacher needs a TeacherRef and an EncoderSpec whose model is its string, got "
                               f"{type(self.ref).__name__} and {type(self.base).__name__}", where="Teacher",
                               fix="build it with as_teacher(...) or make_teacher(...)")
        if self.base.precision == "auto":  # the mining guard (module docstring): exact scores for a ranking
            _note_auto(str(self.ref))
            object.__setattr__(self, "base", replace(self.base, precision="fp32"))

    def __str__(self) -> str:
        return str(self.ref)

    @property
    def kind(self) -> str:
        return self.ref.kind

    @property
    def how(self) -> str:
        return self.ref.how

    @property
    def slug(self) -> str:
        return self.ref.slug

    def parts(self) -> list[Teacher]:
        """The teachers of a list ``a|b`` (each one encoder or a fusion), best first; ``[self]`` otherwise."""
        if self.kind != "list":
            return [self]
        return [Teacher(parse_teacher(m), replace(self.base, model=m)) for m in self.ref.members]

    def members(self) -> list[EncoderSpec]:
        """One encoder spec per model, in order (a list: every model of every part, each once)."""
        if self.kind == "single":
            return [self.base]
        if self.kind == "fusion":
            return [replace(self.base, model=m) for m in self.ref.members]
        return list(dict.fromkeys(s for p in self.parts() for s in p.members()))

    def to_dict(self) -> dict:
        return self.base.to_dict()


@lru_cache(maxsize=None)
def _note_auto(teacher: str) -> None:
    log.info("teacher %s: precision auto -> fp32 for mining (bf16 kept 93.7%% of mined rows identical, guard 95%%; "
             "set precision = \"bf16\" to mine in bf16 anyway)", teacher)


def as_teacher(x: Teacher | EncoderSpec | str) -> Teacher:
    """The ``Teacher`` of a teacher string, an ``EncoderSpec`` whose model is one, or a ``Teacher`` (unchanged)."""
    if isinstance(x, Teacher):
        return x
    if isinstance(x, str):
        ref = parse_teacher(x)
        return Teacher(ref, EncoderSpec(model=str(ref)))
    if isinstance(x, EncoderSpec):
        ref = parse_teacher(x.model)
        return Teacher(ref, x if x.model == str(ref) else replace(x, model=str(ref)))
    raise HardnegError(f"a teacher must be a string, an EncoderSpec or a Teacher, got {type(x).__name__}",
                       where="teacher", fix='pass e.g. "minilm", "fusion(minilm,mpnet)" or EncoderSpec("minilm")')


def make_teacher(texts: str | list[str] | tuple[str, ...], **settings) -> Teacher:
    """The ``Teacher`` of one teacher string, or of several (a list, best first), with encoder ``settings``
    (``EncoderSpec`` keyword arguments: prompts, max length, precision, ...)."""
    parts = [texts] if isinstance(texts, str) else list(texts) if isinstance(texts, (list, tuple)) else [None]
    if not parts or not all(isinstance(t, str) for t in parts):
        raise HardnegError(f"teachers must be strings, got {type(texts).__name__}", where="teacher",
                           fix='pass e.g. "minilm", "fusion(minilm,mpnet)" or ["minilm", "mpnet"]')
    ref = parse_teacher("|".join(str(parse_teacher(t)) for t in parts))
    return Teacher(ref, EncoderSpec(model=str(ref), **settings))


def teacher_fingerprint(teacher: Teacher | EncoderSpec | str, cache_dir: Path | None) -> str:
    """Identity of a teacher (single, fusion or list) for cache and stage keys."""
    t = as_teacher(teacher)
    if t.kind == "single":
        return load_encoder(t.base, cache_dir).fingerprint()
    if t.kind == "fusion":
        fps = [load_encoder(s, cache_dir).fingerprint() for s in t.members()]
    else:
        fps = [teacher_fingerprint(p, cache_dir) for p in t.parts()]
    return stable_hash({"kind": t.kind, "how": t.how, "members": fps}, n=32)
