"""The figures of ``hardneg report``: the threshold sweeps and sampled top-k (Figs. 1-2) and the score
distributions of naive top-k against PercPos (Fig. 4)."""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from hardneg.report.common import savefig
from hardneg.report.methods import sampling_references


def plot_sweeps(rows: list[dict], out: Path) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    specs = [("Top-K shifted by N", "shift N", r"N=(\d+)"), ("TopK-Abs", "absolute threshold", r"^([\d.]+)$"),
             ("TopK-MarginPos", "margin", r"^([\d.]+)$"), ("TopK-PercPos", "percentage of positive score", r"^([\d.]+)%$")]
    teachers = sorted({r["teacher"] for r in rows})
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6), sharey=True)
    for ax, (method, xlabel, rx) in zip(axes, specs):
        for t in teachers:
            pts = []
            for r in rows:
                m = re.match(rx, r["config"]) if r["teacher"] == t and r["method"] == method else None
                if m and "test ndcg@10" in r:
                    pts.append((float(m.group(1)), *r["test ndcg@10"]))
            naive = [r for r in rows if r["teacher"] == t and r["strategy"] == "topk(4)" and "test ndcg@10" in r]
            if naive:
                ax.axhline(naive[0]["test ndcg@10"][0], ls="--", lw=1, color="gray", label=f"naive ({t})")
            if pts:
                pts.sort()
                x, y, sd = zip(*pts)
                ax.errorbar(x, y, yerr=[0 if math.isnan(s) else s for s in sd], marker="o", capsize=3, label=t,
                            color=f"C{teachers.index(t)}")  # one colour per teacher across the panels
        ax.set_title(method)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test nDCG@10 (mean ± sd over seeds)")
    legend = {lab: h for ax in axes for h, lab in zip(*ax.get_legend_handles_labels())}  # every panel's teachers
    axes[-1].legend(legend.values(), legend.keys(), fontsize=7)
    fig.tight_layout()
    savefig(fig, out / "fig1_sweeps.png")
    plt.close(fig)
    written.append("fig1_sweeps.png")

    samp = [r for r in rows if r["method"] in ("Sampled Top-k", "Top-1 + sampled Top-k") and "test ndcg@10" in r]
    if samp:
        k_of = lambda r: float(r["config"].split("=")[1])  # noqa: E731  config "k=10"
        fig, ax = plt.subplots(figsize=(5, 3.6))
        for (t, method) in sorted({(r["teacher"], r["method"]) for r in samp}):
            pts = sorted((k_of(r), *r["test ndcg@10"]) for r in samp if r["teacher"] == t and r["method"] == method)
            x, y, sd = zip(*pts)
            ax.errorbar(x, y, yerr=[0 if math.isnan(s) else s for s in sd], marker="o", capsize=3, label=f"{method} ({t})")
        for label, (y, sd) in sampling_references(rows):
            line = ax.axhline(y, ls="--", lw=1, color="grey", label=label)
            if not math.isnan(sd):
                ax.axhspan(y - sd, y + sd, color=line.get_color(), alpha=0.12, lw=0)
        ax.set_xticks(sorted({k_of(r) for r in samp}))
        ax.set_xlabel("k (sample 4 of the top-k survivors)")
        ax.set_ylabel("test nDCG@10")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        savefig(fig, out / "fig2_sampled.png")
        plt.close(fig)
        written.append("fig2_sampled.png")
    return written


def plot_scores(records: list[dict], out: Path, a: str = "topk(4)", b: str = "percpos(0.95)+topk(4)") -> list[str]:
    """The paper's Fig. 4: positive vs top-1 negative scores, and their difference, naive vs PercPos."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stats = {}
    for r in records:
        if r["point"]["strategy"] in (a, b):
            stats.setdefault(r["point"]["strategy"], r["mining"])
    if len(stats) < 2:
        return []
    edges = np.asarray(stats[a]["hist"]["edges"])
    centers = (edges[:-1] + edges[1:]) / 2
    width = edges[1] - edges[0]
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    panels = [("(a) positive vs top-1 negative score", [("pos", a, "positive"), ("top1_neg", a, f"top-1 neg, {a}"),
                                                         ("top1_neg", b, f"top-1 neg, {b}")]),
              ("(b) positive − top-1 negative", [("pos_minus_top1_neg", a, a), ("pos_minus_top1_neg", b, b)])]
    for ax, (title, series) in zip(axes[:2], panels):
        for key, strat, label in series:
            ax.bar(centers, stats[strat]["hist"][key], width=width, alpha=0.5, label=label)
        ax.set_title(title)
        ax.legend(fontsize=7)
    ax = axes[2]
    for strat in (a, b):
        s = stats[strat]
        ax.bar([strat], [s["top1_neg_above_pos"]], alpha=0.7)
    ax.set_title("(c) rows: top-1 negative > positive")
    ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    savefig(fig, out / "fig4_scores.png")
    plt.close(fig)
    return ["fig4_scores.png"]
