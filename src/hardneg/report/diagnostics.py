"""``hardneg diagnose`` output: the diagnostics of ``hardneg.mining.diagnostics`` as ``diagnostics.json``,
``diagnostics.md`` and one score-distribution figure per teacher (the paper's Fig. 4)."""
from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hardneg.io import atomic_path, ensure_dir, write_json, write_text
from hardneg.markdown import md_table
from hardneg.mining.diagnostics import KINDS, diagnose
from hardneg.mining.strategy import Strategy
from hardneg.types import CandidatePool, Dataset

ROUND = 6


def plot_score_distributions(data: dict, path: str | Path, *, title: str | None = None) -> Path:
    """Three step-histogram panels (positive, top-1 negative, positive - top-1) as a PNG, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {"pos": "positive score", "top1_neg": "top-1 negative score",
              "pos_minus_top1": "positive - top-1 negative"}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, kind in zip(axes, data["kinds"]):
        edges = np.asarray(data["edges"][kind])
        for name, s in data["sets"].items():
            ax.stairs(s["hist"][kind], edges, label=name)
        if kind == "pos_minus_top1":
            ax.axvline(0.0, color="grey", lw=0.8, ls="--")
        ax.set_xlabel(labels.get(kind, kind))
        ax.set_ylabel("rows")
    axes[0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return path


# -- driver and output ------------------------------------------------------------------------------------------

def _slug(s: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", s.lower()).strip("-") or "x"


def run_diagnostics(dataset: Dataset, pools: Mapping[str, CandidatePool], strategies: Sequence[Strategy | str], *,
                    seed: int = 0, n_overlap: int = 4, q_embs: Mapping[str, np.ndarray] | None = None,
                    near_dup_threshold: float = 0.95, examples: int = 10, out: str | Path | None = None,
                    plot: bool = True) -> dict:
    """``hardneg diagnose``: ``diagnose`` (every diagnostic for every teacher x strategy), written to ``out`` when
    given (with a score figure per teacher unless ``plot`` is False)."""
    result = diagnose(dataset, pools, strategies, seed=seed, n_overlap=n_overlap, q_embs=q_embs,
                      near_dup_threshold=near_dup_threshold, examples=examples)
    if out is not None:
        folder = ensure_dir(out)
        if plot:
            result["plots"] = {}
            for t in result["teachers"]:
                name = f"scores-{_slug(t)}.png"
                plot_score_distributions(result["score_distributions"][t], folder / name, title=f"teacher {t}")
                result["plots"][t] = name
        write_diagnostics(result, folder)
    return result


def _clean(x: Any) -> Any:
    """JSON-safe, stable: floats rounded to 6 digits (NaN/inf -> null), numpy scalars -> Python, tuples -> lists."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return [_clean(v) for v in x.tolist()]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        f = float(x)
        return round(f, ROUND) if math.isfinite(f) else None
    return x


def _f(x: Any, pct: bool = False, nd: int = 3) -> str:
    if x is None:
        return "–"
    return f"{100 * x:.1f}%" if pct else f"{x:.{nd}f}"


def render_markdown(result: dict) -> str:
    """A human summary of ``run_diagnostics``' result."""
    ds = result.get("dataset", {})
    lines = [f"# Diagnostics: {ds.get('name', '?')} ({ds.get('split', '?')})", "",
             f"Teachers: {', '.join(result.get('teachers', []))}. Seed {result.get('seed')}.", ""]
    hp = result.get("hidden_positive", {})
    if hp:
        lines += ["## Hidden-positive probe", "",
                  "One labelled positive of every query with >= 2 positives is hidden (it becomes an ordinary "
                  "candidate); a strategy that mines it as a negative has picked a known false negative. Lower is "
                  "better, but read it with `rows empty` and `negs/row`: a strategy that mines nothing catches "
                  "nothing.", ""]
        for t, h in hp.items():
            lines += [f"### {t}", "",
                      f"{h['queries_probed']} of {h['queries_total']} queries probed; hidden positive within the "
                      f"top-{h['depth']} candidates for {h['hidden_in_pool']}; its median raw rank "
                      f"{_f(h['hidden_rank']['median'], nd=1)}.", ""]
            lines += md_table(["strategy", "rows", "caught", "catch rate", "query catch rate", "mean slot",
                               "median rank", "rows empty", "negs/row"],
                              [[f"`{s}`", v["rows"], v["rows_caught"], _f(v["catch_rate"], True),
                                _f(v["query_catch_rate"], True), _f(v.get("catch_slot", {}).get("mean"), nd=2),
                                _f(v.get("catch_rank", {}).get("median"), nd=1), v.get("rows_empty", 0),
                                _f(v.get("negatives_per_row"), nd=2)] for s, v in h["strategies"].items()])
            lines.append("")
    ov = result.get("overlap")
    if ov:
        lines += ["## Teacher overlap (mean Jaccard of top-n negatives per row)", ""]
        for s, o in ov.items():
            lines += [f"`{s}`, n = {o['n']}:", ""]
            lines += md_table(["teacher a", "teacher b", "mean Jaccard", "rows"],
                              [[p["a"], p["b"], _f(p["mean_jaccard"]), p["rows"]] for p in o["pairs"]])
            lines.append("")
    nd = result.get("near_duplicates", {})
    if nd:
        lines += ["## Negatives that are positives of a near-duplicate query", ""]
        lines += md_table(["teacher", "strategy", "near-dup query pairs", "negatives", "flagged", "rate"],
                          [[t, f"`{s}`", v["query_pairs"], v["negatives_total"], v["negatives_flagged"],
                            _f(v["flagged_rate"], True)] for t, per in nd.items() for s, v in per.items()])
        lines.append("")
    sd = result.get("score_distributions", {})
    if sd:
        lines += ["## Score distributions (paper Fig. 4)", ""]
        body = []
        for t, d in sd.items():
            for s, v in d["sets"].items():
                med = {k: (v["quantiles"][k] or {}).get("q50") for k in KINDS}
                body.append([t, f"`{s}`", v["rows"], _f(med["pos"]), _f(med["top1_neg"]), _f(med["pos_minus_top1"]),
                             v["top1_neg_above_pos"]])
        lines += md_table(["teacher", "strategy", "rows", "median pos", "median top-1 neg", "median pos - top-1",
                           "top-1 > pos"], body)
        lines.append("")
        for t, name in result.get("plots", {}).items():
            lines += [f"![{t}]({name})", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_diagnostics(result: dict, folder: str | Path) -> None:
    """``diagnostics.json`` (sorted keys, floats rounded to 1e-6) and ``diagnostics.md``, each written atomically."""
    folder = ensure_dir(folder)
    clean = _clean(result)
    write_json(folder / "diagnostics.json", clean)
    write_text(folder / "diagnostics.md", render_markdown(clean))
