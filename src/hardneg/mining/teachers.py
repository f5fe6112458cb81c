"""Teacher references: one encoder, a score fusion of encoders, or a list of teachers for ensembles.

    minilm                       one encoder (alias, folder or hub id)
    fusion(minilm,mpnet)         score = sum of the members' cosine scores (fusion(...,how=mean) for the mean);
                                 its pool is the union of the members' candidates rescored by every member
    minilm|mpnet                 several teachers, best first: the input of ensemble strategies,
                                 e.g. percpos(0.95)+topk(4)+ensemble(intra,no-dedup)

Every member shares the other encoder settings of the base spec (prompts, max length, dtype, ...).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from hardneg.encode.encoder import EncoderSpec, load_encoder
from hardneg.errors import HardnegError
from hardneg.io import stable_hash

_FUSION = re.compile(r"^fusion\((.*)\)$")


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


def member_specs(ref: TeacherRef, base: EncoderSpec) -> list[EncoderSpec]:
    return [replace(base, model=m) for m in ref.members]


def teacher_fingerprint(base: EncoderSpec, cache_dir: Path | None) -> str:
    """Identity of the teacher named by ``base.model`` (single, fusion or list) for cache and stage keys."""
    ref = parse_teacher(base.model)
    if ref.kind == "single":
        return load_encoder(base, cache_dir).fingerprint()
    fps = [load_encoder(s, cache_dir).fingerprint() for s in member_specs(ref, base)]
    return stable_hash({"kind": ref.kind, "how": ref.how, "members": fps}, n=32)
