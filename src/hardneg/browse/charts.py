"""The score charts of a browse page (the paper's Fig. 4 per set): histograms of the positive and the top-1
negative scores on shared bins, and of positive minus top-1 negative, plus the medians of the summary."""
from __future__ import annotations

BINS = 40


def hist(values: list[float], edges: list[float]) -> list[int]:
    counts = [0] * (len(edges) - 1)
    if not counts:
        return counts
    lo, hi = edges[0], edges[-1]
    width = (hi - lo) / len(counts) or 1.0
    for v in values:
        i = int((v - lo) / width)
        counts[min(max(i, 0), len(counts) - 1)] += 1
    return counts


def chart_edges(values: list[float], *, symmetric: bool = False) -> list[float]:
    if not values:
        return [0.0, 1.0]
    lo, hi = min(values), max(values)
    if symmetric:
        m = max(abs(lo), abs(hi)) or 1.0
        lo, hi = -m, m
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    pad = (hi - lo) * 0.01
    lo, hi = lo - (0 if symmetric else pad), hi + (0 if symmetric else pad)
    step = (hi - lo) / BINS
    return [round(lo + i * step, 6) for i in range(BINS + 1)]


def quantile(sorted_vals: list[float], q: float) -> float | None:
    if not sorted_vals:
        return None
    pos = q * (len(sorted_vals) - 1)
    i = int(pos)
    j = min(i + 1, len(sorted_vals) - 1)
    return round(sorted_vals[i] + (sorted_vals[j] - sorted_vals[i]) * (pos - i), 6)




def charts(values: list[tuple[list[float], list[float], list[float]]]) -> dict:
    """Per set (positive scores, top-1 negative scores, differences) -> the page's ``charts`` entry."""
    edges = chart_edges([v for pv, tv, _ in values for v in (*pv, *tv)])
    diff_edges = chart_edges([v for _, _, dv in values for v in dv], symmetric=True)
    return {"edges": edges, "diff_edges": diff_edges,
            "sets": [{"pos": hist(pv, edges), "top1": hist(tv, edges), "diff": hist(dv, diff_edges)}
                     for pv, tv, dv in values]}
