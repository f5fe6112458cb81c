"""The strategy grammar's values: filters, selectors, treatments and ``Strategy``, frozen, each with its canonical
string (``str()``). The rules are in ``hardneg.mining.strategy``'s docstring, which also parses the strings."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Union

PosRef = Literal["min", "max", "mean", "row"]
POS_REFS = ("min", "max", "mean", "row")
# Upper bound of every count (shift N, topk n, sampled k and n): far above any useful value, low enough that a
# typo such as topk(1000000000) is an error instead of [rows, n] arrays that exhaust memory.
MAX_COUNT = 100_000


def _num(x: float) -> str:
    return repr(float(x))  # shortest round-tripping form: 0.95 -> "0.95"


def _thr(x: float | None, coverage: float | None) -> str:
    """A threshold argument: a number, or ``auto,coverage=C``."""
    return f"auto,coverage={_num(coverage)}" if x is None else _num(x)


def _ref(ref: str) -> str:
    """The ``ref=`` option as written in the canonical form (omitted at its default, min)."""
    return "" if ref == "min" else ",ref=" + ref


def _sampling(k: int, n: int, temperature: float) -> str:
    """The arguments of sampled / top1+sampled (temperature omitted at its default, 1)."""
    return f"{k},{n}" + ("" if temperature == 1.0 else f",{_num(temperature)}")


@dataclass(frozen=True)
class Shift:
    n: int

    def __str__(self) -> str:
        return f"shift({self.n})"


@dataclass(frozen=True)
class Abs:
    t: float | None  # None: auto (resolved per pool to the strictest value that reaches ``coverage``)
    coverage: float | None = None

    def __str__(self) -> str:
        return f"abs({_thr(self.t, self.coverage)})"


@dataclass(frozen=True)
class MarginPos:
    m: float | None
    ref: PosRef = "min"
    coverage: float | None = None

    def __str__(self) -> str:
        return f"marginpos({_thr(self.m, self.coverage)}{_ref(self.ref)})"


@dataclass(frozen=True)
class PercPos:
    p: float | None
    ref: PosRef = "min"
    coverage: float | None = None

    def __str__(self) -> str:
        return f"percpos({_thr(self.p, self.coverage)}{_ref(self.ref)})"


@dataclass(frozen=True)
class PosNbr:
    """Drop a candidate whose document-document cosine to any positive of its query is >= tau."""

    tau: float | None
    coverage: float | None = None

    def __str__(self) -> str:
        return f"posnbr({_thr(self.tau, self.coverage)})"


@dataclass(frozen=True)
class Dedup:
    """Drop a candidate whose normalised text equals a positive's or a higher-ranked candidate's."""

    def __str__(self) -> str:
        return "dedup"


TREATMENTS = ("drop", "relabel", "drop-query")
DEFAULT_TREAT_K = 10


@dataclass(frozen=True)
class Treat:
    """A treatment of the candidates a judge (filters) would remove: drop, relabel as positives, or drop the query.

    ``k``: relabel / drop-query look at the first k pool candidates; ``m``: drop-query drops a query with more
    than m flagged among them.
    """

    kind: str
    judge: tuple  # tuple[Filter, ...] without treatments, shift or auto thresholds
    k: int = DEFAULT_TREAT_K
    m: int = 1
    teacher: str | None = None  # the judge's teacher (its scores replace the pool's); None: the mining teacher

    def __str__(self) -> str:
        j = "+".join(str(f) for f in self.judge)
        t = "" if self.teacher is None else f",teacher={self.teacher}"
        if self.kind == "drop":
            return f"drop({j}{t})"
        if self.kind == "relabel":
            return f"relabel({j}{'' if self.k == DEFAULT_TREAT_K else f',k={self.k}'}{t})"
        return f"drop-query({j},m={self.m},k={self.k}{t})"

    def is_auto(self) -> bool:
        return False


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
        return f"sampled({_sampling(self.k, self.n, self.temperature)})"


@dataclass(frozen=True)
class Top1Sampled:
    k: int
    n: int
    temperature: float = 1.0

    def __str__(self) -> str:
        return f"top1+sampled({_sampling(self.k, self.n, self.temperature)})"


@dataclass(frozen=True)
class SimANS:
    """SimANS sampler (Zhou et al. 2022): n of the first k survivors, P ~ exp(-a (s - s_pos - b)^2)."""

    k: int
    n: int
    a: float
    b: float

    def __str__(self) -> str:
        return f"simans({self.k},{self.n},{_num(self.a)},{_num(self.b)})"


@dataclass(frozen=True)
class NoNegatives:
    def __str__(self) -> str:
        return "none"

    n = 0


Filter = Union[Shift, Abs, MarginPos, PercPos, PosNbr, Dedup, Treat]
Selector = Union[TopK, Sampled, Top1Sampled, SimANS, NoNegatives]
# canonical order; value filters commute, shift is by raw rank; a treatment comes last (it sees the survivors)
FILTER_ORDER = (Shift, Abs, MarginPos, PercPos, PosNbr, Dedup, Treat)
SELECTORS = (TopK, Sampled, Top1Sampled, SimANS, NoNegatives)
AUTO_KINDS = (Abs, MarginPos, PercPos, PosNbr)


THRESHOLD_FIELD = {Abs: "t", MarginPos: "m", PercPos: "p", PosNbr: "tau"}


def is_auto(f) -> bool:
    return isinstance(f, AUTO_KINDS) and f.coverage is not None


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
        return isinstance(self.selector, (Sampled, Top1Sampled, SimANS))

    @property
    def auto(self) -> Filter | None:
        """The filter whose threshold is resolved per pool (``...(auto,coverage=C)``), or None."""
        return next((f for f in self.filters if is_auto(f)), None)

    @property
    def treatment(self) -> Treat | None:
        return next((f for f in self.filters if isinstance(f, Treat)), None)

    def needs(self) -> set[str]:
        """Per-pool arrays beyond the pool this strategy reads: ``pos_cos`` (posnbr), ``dup`` (dedup)."""
        fs = list(self.filters) + [g for f in self.filters if isinstance(f, Treat) for g in f.judge]
        judges = {f"judge:{f.teacher}" for f in self.filters if isinstance(f, Treat) and f.teacher is not None}
        return ({"pos_cos"} if any(isinstance(f, PosNbr) for f in fs) else set()) | (
            {"dup"} if any(isinstance(f, Dedup) for f in fs) else set()) | judges

    @property
    def slug(self) -> str:
        """A file-name-safe form of the canonical string (only ``[a-z0-9._-]``)."""
        s = str(self)
        for a, b in (("top1+sampled", "top1sampled"), ("+", "_"), ("(", "-"), (")", ""), (",", "-"),
                     ("=", "-")):  # drop-query keeps its hyphen
            s = s.replace(a, b)
        return re.sub(r"[^a-z0-9._-]", "-", s.lower())  # a judge teacher may be a hub id (no-op for the rest)
