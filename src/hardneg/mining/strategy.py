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

Counts (N, n, k) are whole numbers of at most 100,000.

False-negative filters, treatments and samplers (docs/false-negatives.md, section 5):

- ``posnbr(tau)``   drop a candidate whose document cosine to any positive of its query is >= tau (the teacher's
                    cached document embeddings; tau in [-1, 1]).
- ``dedup``         drop a candidate whose normalised text (lowercased, punctuation removed, whitespace collapsed)
                    equals a positive's or a higher-ranked candidate's.
- ``percpos(auto,coverage=0.95)``  (also ``marginpos``, ``abs``, ``posnbr``) the strictest threshold on a 0.001 grid
                    that leaves >= n negatives in that share of rows, resolved per teacher pool; the stats record the
                    resolved strategy (``resolved``).
- ``drop(J)``, ``relabel(J[,k=10])``, ``drop-query(J[,m=1,k=10])``  treatments of the candidates a judge J (filters
                    joined by ``+``) would remove: drop them; or drop them and make those among the first k candidates
                    extra positives of the row (extra output rows marked ``relabeled``); or drop every row of a query
                    with more than m of them among its first k candidates. ``teacher=T`` judges with another
                    encoder's scores, e.g. ``relabel(percpos(0.98),teacher=mpnet)+topk(4)``.
- ``simans(k,n,a,b)``  sample n of the first k survivors without replacement, P ~ exp(-a (s - s_pos - b)^2)
                    (SimANS, Zhou et al. 2022; s_pos the row's positive score).

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

from hardneg.errors import HardnegError
from hardneg.mining.grammar import (AUTO_KINDS, DEFAULT_TREAT_K, FILTER_ORDER, MAX_COUNT, POS_REFS, SELECTORS,
                                    THRESHOLD_FIELD, TREATMENTS, Abs, Dedup, Filter, MarginPos, NoNegatives, PercPos,
                                    PosNbr, PosRef, Sampled, Selector, Shift, SimANS, Strategy, Top1Sampled, TopK,
                                    Treat, is_auto)

__all__ = ["AUTO_KINDS", "DEFAULT_TREAT_K", "FILTER_ORDER", "MAX_COUNT", "POS_REFS", "SELECTORS", "THRESHOLD_FIELD",
           "TREATMENTS", "Abs", "Dedup", "Filter", "MarginPos", "NoNegatives", "PercPos", "PosNbr", "PosRef", "Sampled",
           "Selector", "Shift", "SimANS", "Strategy", "Top1Sampled", "TopK", "Treat", "is_auto", "HELP", "TREAT_HELP",
           "as_strategy", "parse_strategy"]

_TOKEN = re.compile(r"^([a-z0-9_-]+)\s*(?:\((.*)\))?$")
HELP = ("write filters then one selector joined by '+', e.g. percpos(0.95)+topk(4), shift(10)+topk(4), "
        "abs(0.7)+topk(4), marginpos(0.05)+sampled(10,4), percpos(0.95)+top1+sampled(10,4), none")


def _short(v: str, n: int = 40) -> str:
    """Text as quoted in an error: long ones cut, so the message stays readable."""
    return v if len(v) <= n else v[:n - 3] + "..."


def _split_outside_parens(s: str, sep: str) -> list[str]:
    """``s`` split at ``sep`` where no parenthesis is open, parts stripped: the '+' of a strategy (a treatment's
    judge stays whole), the ',' of a treatment's arguments (a judge such as percpos(0.9,ref=row) stays whole)."""
    parts, depth, cur = [], 0, []
    for ch in s:
        depth += ch == "("
        depth -= ch == ")"
        if ch == sep and depth == 0:
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

    def integer(self, i: int, label: str, lo: int, hi: int = MAX_COUNT) -> int:
        v = self.pos[i]
        if not re.fullmatch(r"[+-]?\d+", v):
            self.fail(f"{label} must be a whole number, got '{_short(v)}'")
        digits = v.lstrip("+-").lstrip("0")
        if len(digits) > len(str(hi)):  # before int(): thousands of digits would exceed int()'s limit
            if v.startswith("-"):
                self.fail(f"{label} must be >= {lo}, got a {len(digits)}-digit negative number")
            self.fail(f"{label} must be <= {hi:,}, got a {len(digits)}-digit number", f"use {label} <= {hi:,}")
        x = int(v)
        if x < lo:
            self.fail(f"{label} must be >= {lo}, got {x}")
        if x > hi:
            self.fail(f"{label} must be <= {hi:,}, got {x:,}", f"use {label} <= {hi:,}")
        return x

    def real(self, v: str, label: str, lo: float | None = None, lo_open: bool = False, hi: float | None = None) -> float:
        try:
            x = float(v)
        except ValueError:
            self.fail(f"{label} must be a number, got '{_short(v)}'")
        if not math.isfinite(x):
            self.fail(f"{label} must be finite, got '{_short(v)}'")
        if lo is not None and (x < lo or (lo_open and x == lo)):
            self.fail(f"{label} must be {'>' if lo_open else '>='} {lo}, got {_short(v)}")
        if hi is not None and x > hi:
            self.fail(f"{label} must be <= {hi}, got {_short(v)}")
        return x

    def ref(self) -> PosRef:
        r = self.kw.get("ref", "min")
        if r not in POS_REFS:
            self.fail(f"ref must be one of {', '.join(POS_REFS)}, got '{r}'", "write ref=min, ref=max, ref=mean or ref=row")
        return r  # type: ignore[return-value]

    def temperature(self, i: int) -> float:
        v = self.kw.get("temperature", self.pos[i] if len(self.pos) > i else "1")
        return self.real(v, "temperature", lo=0.0, lo_open=True)


TREAT_HELP = ("write drop(JUDGE), relabel(JUDGE[,k=10]) or drop-query(JUDGE[,m=1,k=10]) with JUDGE one or more "
              "filters joined by '+' (optionally teacher=T, the judge's teacher), e.g. relabel(percpos(0.98))+topk(4)")


def _parse_treatment(name: str, argtext: str, src: str) -> Treat:
    parts = _split_outside_parens(argtext, ",")
    judge_text, opts = parts[0], parts[1:]
    if not judge_text:
        raise HardnegError(f'bad strategy "{src}": {name} needs a judge (filters)', fix=TREAT_HELP)
    judge: list = []
    for tok in _split_outside_parens(judge_text, "+"):
        f = _parse_token(tok, src)
        if isinstance(f, (Shift, Treat)) or isinstance(f, SELECTORS) or is_auto(f):
            raise HardnegError(f'bad strategy "{src}": {name}: the judge takes value filters only (abs, marginpos, '
                               f'percpos, posnbr, dedup with fixed thresholds), got "{f}"', fix=TREAT_HELP)
        judge.append(f)
    kinds = [type(f) for f in judge]
    if len(set(kinds)) != len(kinds):
        raise HardnegError(f'bad strategy "{src}": {name}: a judge filter appears twice', fix=TREAT_HELP)
    judge.sort(key=lambda f: FILTER_ORDER.index(type(f)))
    allowed = {"drop": ("teacher",), "relabel": ("k", "teacher"), "drop-query": ("m", "k", "teacher")}[name]
    a = _Args("", name, src, allowed)
    for o in opts:
        if "=" not in o:
            a.fail(f"unexpected argument '{_short(o)}'", TREAT_HELP)
        key, v = (x.strip() for x in o.split("=", 1))
        key = key.lower()
        if key not in allowed:
            a.fail(f"unknown option '{key}'", f"{name} takes {', '.join(allowed) or 'no options'}")
        a.kw[key] = v
    a.pos = [a.kw.get("k", str(DEFAULT_TREAT_K)), a.kw.get("m", "1")]
    k, m = a.integer(0, "k", 1), a.integer(1, "m", 0)
    teacher = a.kw.get("teacher")
    if teacher is not None:
        from hardneg.mining.teachers import parse_teacher

        ref = parse_teacher(teacher) if teacher else None
        if ref is None or ref.kind != "single":
            a.fail(f"teacher must be one encoder (alias, folder or hub id), got '{_short(teacher)}'", TREAT_HELP)
        teacher = str(ref)
    return Treat(name, tuple(judge), k=k, m=m, teacher=teacher)


def _threshold(a: _Args, label: str, **bounds) -> tuple[float | None, float | None]:
    """A filter threshold, or ``auto`` with ``coverage`` (default 0.95): (value, coverage)."""
    if a.pos and a.pos[0] == "auto":
        cov = a.real(a.kw.get("coverage", "0.95"), "coverage", lo=0.0, lo_open=True, hi=1.0)
        return None, cov
    if "coverage" in a.kw:
        a.fail("coverage only goes with auto", f"write {a.name}(auto,coverage={a.kw['coverage']})")
    return a.real(a.pos[0], label, **bounds), None


def _parse_token(tok: str, src: str) -> Filter | Selector:
    m = _TOKEN.match(tok.strip().lower())
    if not m:
        raise HardnegError(f'bad strategy "{src}": cannot read "{_short(tok)}"', fix=HELP)
    name, argtext = m.group(1), m.group(2)
    if argtext is None and name not in ("none", "dedup"):
        raise HardnegError(f'bad strategy "{src}": "{name}" needs arguments in parentheses', fix=HELP)
    if name in TREATMENTS:
        orig = tok.strip()  # a judge teacher keeps its case (hub ids); the rest is read lowercased
        if len(orig) == len(orig.lower()):
            argtext = orig[m.start(2):m.end(2)]
        return _parse_treatment(name, argtext, src)
    kws = {"marginpos": ("ref", "coverage"), "percpos": ("ref", "coverage"), "abs": ("coverage",),
           "posnbr": ("coverage",), "sampled": ("temperature",)}.get(name, ())
    a = _Args(argtext or "", name, src, kws)
    if name == "shift":
        a.count(1, 1, "shift(N)")
        return Shift(a.integer(0, "N", 0))
    if name == "abs":
        a.count(1, 1, "abs(threshold) or abs(auto,coverage=C)")
        t, cov = _threshold(a, "threshold")
        return Abs(t, cov)
    if name == "marginpos":
        a.count(1, 1, "marginpos(margin) or marginpos(auto,coverage=C)")
        v, cov = _threshold(a, "margin", lo=0.0)
        return MarginPos(v, a.ref(), cov)
    if name == "percpos":
        a.count(1, 1, "percpos(p) or percpos(auto,coverage=C)")
        v, cov = _threshold(a, "p", lo=0.0, lo_open=True, hi=10.0)
        return PercPos(v, a.ref(), cov)
    if name == "posnbr":
        a.count(1, 1, "posnbr(tau) or posnbr(auto,coverage=C)")
        v, cov = _threshold(a, "tau", lo=-1.0, hi=1.0)
        return PosNbr(v, cov)
    if name == "dedup":
        if argtext:
            a.fail("takes no arguments", "write dedup")
        return Dedup()
    if name in ("topk", "naive"):
        a.count(1, 1, f"{name}(n)")
        return TopK(a.integer(0, "n", 1))
    if name == "sampled":
        a.count(2, 3, "sampled(k,n) or sampled(k,n,temperature)")
        k, n = a.integer(0, "k", 1), a.integer(1, "n", 1)
        if n > k:
            a.fail(f"n ({n}) must be <= k ({k})")
        return Sampled(k, n, a.temperature(2))
    if name == "simans":
        a.count(4, 4, "simans(k,n,a,b)")
        k, n = a.integer(0, "k", 1), a.integer(1, "n", 1)
        if n > k:
            a.fail(f"n ({n}) must be <= k ({k})")
        return SimANS(k, n, a.real(a.pos[2], "a", lo=0.0), a.real(a.pos[3], "b"))
    if name == "none":
        if argtext:
            a.fail("takes no arguments", "write none")
        return NoNegatives()
    raise HardnegError(f'bad strategy "{src}": unknown method "{name}"', fix=HELP)


def parse_strategy(text: str) -> Strategy:
    """Parse a strategy string into its canonical value (see the module docstring for the rules)."""
    full = text.strip()
    if not full:
        raise HardnegError("empty strategy", fix=HELP)
    src = _short(full, 120)  # as quoted in errors
    toks = _split_outside_parens(full, "+")
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
        if not isinstance(f, FILTER_ORDER):
            raise HardnegError(f'bad strategy "{src}": "{f}" is a selector; only the last part may be one',
                               fix="write the filters first and one selector last, e.g. shift(10)+topk(4)")
    if not isinstance(selector, SELECTORS):
        raise HardnegError(f'bad strategy "{src}": it must end with a selector (topk(n), sampled(k,n), '
                           f'top1+sampled(k,n), simans(k,n,a,b) or none)', fix=f"e.g. {src}+topk(4)")
    kinds = [type(f) for f in filters]
    for kind in set(kinds):
        if kinds.count(kind) > 1:
            raise HardnegError(f'bad strategy "{src}": {kind.__name__.lower()} appears twice', fix="use each filter once")
    if isinstance(selector, NoNegatives) and filters:
        raise HardnegError(f'bad strategy "{src}": "none" takes no filters', fix="write none")
    autos = [f for f in filters if is_auto(f)]
    if len(autos) > 1:
        raise HardnegError(f'bad strategy "{src}": only one filter may be auto, got {len(autos)}',
                           fix="give the other thresholds as numbers")
    filters.sort(key=lambda f: FILTER_ORDER.index(type(f)))
    return Strategy(tuple(filters), selector)


def as_strategy(s: Strategy | str) -> Strategy:
    """A strategy value as is, a string parsed."""
    return s if isinstance(s, Strategy) else parse_strategy(s)
