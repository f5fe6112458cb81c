"""Strategies in the paper's terms: the method a strategy belongs to and its parameter text, the order of
rows in every table, and the sampled strategies' unsampled references (Fig. 2)."""
from __future__ import annotations

import re
from dataclasses import replace

from hardneg.mining.ensemble import split_ensemble
from hardneg.mining.strategy import (Abs, MarginPos, PercPos, Sampled, Shift, SimANS, Top1Sampled, TopK,
                                     parse_strategy)

METHOD_NAMES = [("none", "In-batch negatives only"), ("topk", "Naive Top-K"), ("shift", "Top-K shifted by N"),
                ("abs", "TopK-Abs"), ("marginpos", "TopK-MarginPos"), ("percpos", "TopK-PercPos"),
                ("sampled", "Sampled Top-k"), ("top1sampled", "Top-1 + sampled Top-k"),
                ("posnbr", "TopK-PosNbr (neighbour of a positive)"), ("dedup", "TopK-Dedup"),
                ("simans", "SimANS"), ("drop", "Judge + drop"), ("relabel", "Judge + relabel (RLHN-style)"),
                ("drop-query", "Judge + drop query"), ("ensemble", "Teacher ensemble")]


def method_of(strategy: str) -> tuple[str, str]:
    """(method key, parameter text) in the paper's terms: the last filter names the method, sampling adds to it."""
    base, ens = split_ensemble(strategy)
    if ens is not None:
        return "ensemble", str(ens)[len("ensemble("):-1] + f" on {base}"
    st = parse_strategy(strategy)
    sel = st.selector
    if isinstance(sel, Top1Sampled):
        return "top1sampled", f"k={sel.k}"
    if isinstance(sel, Sampled):
        return "sampled", f"k={sel.k}"
    if isinstance(sel, SimANS):
        return "simans", str(sel)[len("simans("):-1]
    if not isinstance(sel, TopK):
        return "none", ""
    if not st.filters:
        return "topk", ""
    f = st.filters[-1]
    fmt = {Shift: lambda: f"N={f.n}", Abs: lambda: f"{f.t:g}", MarginPos: lambda: f"{f.m:g}",
           PercPos: lambda: f"{f.p * 100:g}%"}.get(type(f))
    if fmt is None or any(getattr(f, a, 0) is None for a in ("t", "m", "p")):  # later families, auto thresholds
        text = str(f)
        key = text.split("(", 1)[0]
        return key, text[len(key) + 1:-1] if "(" in text else ""
    param = fmt()
    if getattr(f, "ref", "min") != "min":
        param += f" ref={f.ref}"
    return type(f).__name__.lower(), param


def unsampled(strategy: str) -> str | None:
    """The same filters keeping the top n instead of sampling n of the top k (Fig. 2's reference): for
    ``percpos(0.95)+top1+sampled(10,4)`` it is ``percpos(0.95)+topk(4)``; None for a strategy that does not sample."""
    if split_ensemble(strategy)[1] is not None:
        return None
    st = parse_strategy(strategy)
    return str(replace(st, selector=TopK(st.selector.n))) if st.is_sampled else None


def sampling_pairs(rows: list[dict]) -> list[tuple[dict, dict]]:
    """(sampled row, reference row) for every row that samples and whose (teacher, student) also ran the same
    filter keeping its top n. Grid strategies are stored in canonical form (``hardneg ablate`` writes
    ``str(parse_plan(...))``), the form ``unsampled`` returns."""
    by = {(r["teacher"], r["student"], r["strategy"]): r for r in rows}
    return [(r, by[k]) for r in rows if (k := (r["teacher"], r["student"], unsampled(r["strategy"]))) in by]


def sampling_references(rows: list[dict]) -> list[tuple[str, tuple[float, float]]]:
    """Fig. 2's reference lines: each row some sampled row is compared with, as (label, test nDCG@10 (mean, sd))."""
    refs = {id(ref) for _, ref in sampling_pairs(rows)}
    return [(f"{r['strategy']}, no sampling ({r['teacher']})", r["test ndcg@10"]) for r in rows
            if id(r) in refs and "test ndcg@10" in r]


def sort_key(k: tuple[str, str, str]) -> tuple:
    teacher, student, strategy = k
    m, param = method_of(strategy)
    order = [x for x, _ in METHOD_NAMES].index(m)
    num = [float(x) for x in re.findall(r"[-+]?\d*\.?\d+", param)] or [0.0]
    return teacher, student, order, num, strategy
