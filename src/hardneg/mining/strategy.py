"""Mining strategies as frozen, validated values with a canonical string form.

A strategy is zero or more *filters* followed by one *selector*, joined by ``+``::

    percpos(0.95)+topk(4)        shift(10)+topk(4)        abs(0.7)+sampled(10,4)
    marginpos(0.05,ref=row)+topk(4)        percpos(0.95)+top1+sampled(10,4)        none

Rules (the paper's); candidates are the teacher's ranking with every positive
removed, in score order (ties: corpus row ascending):

- ``shift(N)``      drop the first N non-positive candidates by raw rank (before any other filter), as in
                    the paper (positives are never candidates, so they do not count towards N).
- ``abs(t)``        drop candidates with score > t.
- ``marginpos(m)``  keep a candidate only if score < pos_ref - m.
- ``percpos(p)``    keep a candidate only if score < pos_ref - |pos_ref| * (1 - p)  (= pos_ref * p when
                    pos_ref >= 0, the paper's rule; the sign-safe form keeps p < 1 stricter for negative scores).
- ``topk(n)`` / ``naive(n)``   the first n survivors.
- ``sampled(k,n[,temperature])``  sample n of the first k survivors without replacement, probabilities
                    softmax(score / temperature) (default temperature 1: the paper's softmax over scores).
- ``top1+sampled(k,n[,temperature])``  keep the first survivor, sample n-1 from survivors 2..k as above.
- ``none``          no hard negatives (in-batch negatives only, a training baseline).

Teacher ensembles (with several --teacher, best first) append ``+ensemble(...)`` to a strategy:

- ``ensemble(cross)``            each (query, positive) row takes all its negatives from one teacher drawn at
                                 random (seeded, per row).
- ``ensemble(intra,no-dedup)``   slot i takes the next negative of teacher i mod T (n = T: each teacher's top-1);
                                 duplicates are kept (the paper's best).
- ``ensemble(intra,dedup)``      as above, but a duplicate is replaced by that teacher's next unique negative.

``pos_ref`` for a query with several positives: ``ref=min`` (default: the weakest positive, as NVIDIA's
NeMo-Curator miner and sentence-transformers do), ``max``, ``mean``, or ``row`` (the positive of the output row,
the paper's one-positive-per-sample reading).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal, Union

from hardneg.errors import HardnegError

PosRef = Literal["min", "max", "mean", "row"]
POS_REFS = ("min", "max", "mean", "row")


def _num(x: float) -> str:
    return repr(float(x))  # shortest round-tripping form: 0.95 -> "0.95"


@dataclass(frozen=True)
class Shift:
    n: int

    def __str__(self) -> str:
        return f"shift({self.n})"


@dataclass(frozen=True)
class Abs:
    t: float

    def __str__(self) -> str:
        return f"abs({_num(self.t)})"


@dataclass(frozen=True)
class MarginPos:
    m: float
    ref: PosRef = "min"

    def __str__(self) -> str:
        return f"marginpos({_num(self.m)}{'' if self.ref == 'min' else ',ref=' + self.ref})"


@dataclass(frozen=True)
class PercPos:
    p: float
    ref: PosRef = "min"

    def __str__(self) -> str:
        return f"percpos({_num(self.p)}{'' if self.ref == 'min' else ',ref=' + self.ref})"


@dataclass(frozen=True)
class TopK:
    n: int

    def __str__(self) -> str:
        return f"topk({self.n})"


@dataclass(frozen=True)
class Sampled:
    k: int
    n: int
    temperature: float = 1.0

    def __str__(self) -> str:
        t = "" if self.temperature == 1.0 else f",{_num(self.temperature)}"
        return f"sampled({self.k},{self.n}{t})"


@dataclass(frozen=True)
class Top1Sampled:
    k: int
    n: int
    temperature: float = 1.0

    def __str__(self) -> str:
        t = "" if self.temperature == 1.0 else f",{_num(self.temperature)}"
        return f"top1+sampled({self.k},{self.n}{t})"


@dataclass(frozen=True)
class NoNegatives:
    def __str__(self) -> str:
        return "none"

    n = 0


Filter = Union[Shift, Abs, MarginPos, PercPos]
Selector = Union[TopK, Sampled, Top1Sampled, NoNegatives]
_FILTER_ORDER = (Shift, Abs, MarginPos, PercPos)  # canonical order; value filters commute, shift is by raw rank


@dataclass(frozen=True)
class Strategy:
    """Filters (applied to the positive-free candidate list) then a selector; ``str()`` is canonical."""

    filters: tuple[Filter, ...]
    selector: Selector

    def __str__(self) -> str:
        return "+".join([str(f) for f in self.filters] + [str(self.selector)])

    @property
    def n(self) -> int:
        """Number of negatives a full row gets."""
        return self.selector.n

    @property
    def is_sampled(self) -> bool:
        return isinstance(self.selector, (Sampled, Top1Sampled))

    @property
    def slug(self) -> str:
        """A file-name-safe form of the canonical string (only ``[a-z0-9._-]``)."""
        s = str(self)
        for a, b in (("top1+sampled", "top1sampled"), ("+", "_"), ("(", "-"), (")", ""), (",", "-"),
                     ("=", "-")):
            s = s.replace(a, b)
        return s


_TOKEN = re.compile(r"^([a-z0-9_]+)\s*(?:\((.*)\))?$")
HELP = ("write filters then one selector joined by '+', e.g. percpos(0.95)+topk(4), shift(10)+topk(4), "
        "abs(0.7)+topk(4), marginpos(0.05)+sampled(10,4), percpos(0.95)+top1+sampled(10,4), none")


def _split_top(s: str) -> list[str]:
    parts, depth, cur = [], 0, []
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "+" and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur).strip())
    return parts


class _Args:
    """Positional and keyword arguments of one token, with typed, range-checked access."""

    def __init__(self, text: str, name: str, src: str, allowed_kw: tuple[str, ...]) -> None:
        self.name, self.src = name, src
        self.pos: list[str] = []
        self.kw: dict[str, str] = {}
        if text.strip():
            for raw in text.split(","):
                a = raw.strip()
                if "=" in a:
                    k, v = (x.strip() for x in a.split("=", 1))
                    if k not in allowed_kw:
                        self.fail(f"unknown option '{k}'", f"{name} takes {', '.join(allowed_kw) or 'no options'}")
                    self.kw[k] = v
                elif self.kw:
                    self.fail("positional argument after an option", "put options (key=value) last")
                elif not a:
                    self.fail("empty argument", "remove the extra comma")
                else:
                    self.pos.append(a)

    def fail(self, what: str, fix: str = HELP) -> None:
        raise HardnegError(f'bad strategy "{self.src}": {self.name}: {what}', fix=fix)

    def count(self, lo: int, hi: int, usage: str) -> None:
        if not lo <= len(self.pos) <= hi:
            self.fail(f"expected {usage}", f"write {usage}")

    def integer(self, i: int, label: str, lo: int) -> int:
        v = self.pos[i]
        if not re.fullmatch(r"[+-]?\d+", v):
            self.fail(f"{label} must be a whole number, got '{v}'")
        x = int(v)
        if x < lo:
            self.fail(f"{label} must be >= {lo}, got {x}")
        return x

    def real(self, v: str, label: str, lo: float | None = None, lo_open: bool = False, hi: float | None = None) -> float:
        try:
            x = float(v)
        except ValueError:
            self.fail(f"{label} must be a number, got '{v}'")
        if not math.isfinite(x):
            self.fail(f"{label} must be finite, got '{v}'")
        if lo is not None and (x < lo or (lo_open and x == lo)):
            self.fail(f"{label} must be {'>' if lo_open else '>='} {lo}, got {v}")
        if hi is not None and x > hi:
            self.fail(f"{label} must be <= {hi}, got {v}")
        return x

    def ref(self) -> PosRef:
        r = self.kw.get("ref", "min")
        if r not in POS_REFS:
            self.fail(f"ref must be one of {', '.join(POS_REFS)}, got '{r}'", "write ref=min, ref=max, ref=mean or ref=row")
        return r  # type: ignore[return-value]

    def temperature(self, i: int) -> float:
        v = self.kw.get("temperature", self.pos[i] if len(self.pos) > i else "1")
        return self.real(v, "temperature", lo=0.0, lo_open=True)


def _parse_token(tok: str, src: str) -> Filter | Selector:
    m = _TOKEN.match(tok.strip().lower())
    if not m:
        raise HardnegError(f'bad strategy "{src}": cannot read "{tok}"', fix=HELP)
    name, argtext = m.group(1), m.group(2)
    if argtext is None and name != "none":
        raise HardnegError(f'bad strategy "{src}": "{name}" needs arguments in parentheses', fix=HELP)
    kws = {"marginpos": ("ref",), "percpos": ("ref",), "sampled": ("temperature",)}.get(name, ())
    a = _Args(argtext or "", name, src, kws)
    if name == "shift":
        a.count(1, 1, "shift(N)")
        return Shift(a.integer(0, "N", 0))
    if name == "abs":
        a.count(1, 1, "abs(threshold)")
        return Abs(a.real(a.pos[0], "threshold"))
    if name == "marginpos":
        a.count(1, 1, "marginpos(margin)")
        return MarginPos(a.real(a.pos[0], "margin", lo=0.0), a.ref())
    if name == "percpos":
        a.count(1, 1, "percpos(p)")
        return PercPos(a.real(a.pos[0], "p", lo=0.0, lo_open=True, hi=10.0), a.ref())
    if name in ("topk", "naive"):
        a.count(1, 1, f"{name}(n)")
        return TopK(a.integer(0, "n", 1))
    if name == "sampled":
        a.count(2, 3, "sampled(k,n) or sampled(k,n,temperature)")
        k, n = a.integer(0, "k", 1), a.integer(1, "n", 1)
        if n > k:
            a.fail(f"n ({n}) must be <= k ({k})")
        return Sampled(k, n, a.temperature(2))
    if name == "none":
        if argtext:
            a.fail("takes no arguments", "write none")
        return NoNegatives()
    raise HardnegError(f'bad strategy "{src}": unknown method "{name}"', fix=HELP)


def parse_strategy(text: str) -> Strategy:
    """Parse a strategy string into its canonical value (see the module docstring for the rules)."""
    src = text.strip()
    if not src:
        raise HardnegError("empty strategy", fix=HELP)
    toks = _split_top(src)
    if any(not t for t in toks):
        raise HardnegError(f'bad strategy "{src}": empty part around "+"', fix=HELP)
    items: list[Filter | Selector] = []
    i = 0
    while i < len(toks):
        if toks[i].lower() == "top1":
            if i + 1 >= len(toks) or not toks[i + 1].lower().startswith("sampled"):
                raise HardnegError(f'bad strategy "{src}": "top1" must be followed by "+sampled(k,n)"', fix=HELP)
            s = _parse_token(toks[i + 1], src)
            assert isinstance(s, Sampled)
            if s.n < 1:
                raise HardnegError(f'bad strategy "{src}": top1+sampled needs n >= 1', fix=HELP)
            items.append(Top1Sampled(s.k, s.n, s.temperature))
            i += 2
        else:
            items.append(_parse_token(toks[i], src))
            i += 1
    *filters, selector = items
    for f in filters:
        if not isinstance(f, _FILTER_ORDER):
            raise HardnegError(f'bad strategy "{src}": "{f}" is a selector; only the last part may be one',
                               fix="write the filters first and one selector last, e.g. shift(10)+topk(4)")
    if not isinstance(selector, (TopK, Sampled, Top1Sampled, NoNegatives)):
        raise HardnegError(f'bad strategy "{src}": it must end with a selector (topk(n), sampled(k,n), '
                           f'top1+sampled(k,n) or none)', fix=f"e.g. {src}+topk(4)")
    kinds = [type(f) for f in filters]
    for kind in set(kinds):
        if kinds.count(kind) > 1:
            raise HardnegError(f'bad strategy "{src}": {kind.__name__.lower()} appears twice', fix="use each filter once")
    if isinstance(selector, NoNegatives) and filters:
        raise HardnegError(f'bad strategy "{src}": "none" takes no filters', fix="write none")
    filters.sort(key=lambda f: _FILTER_ORDER.index(type(f)))
    return Strategy(tuple(filters), selector)
