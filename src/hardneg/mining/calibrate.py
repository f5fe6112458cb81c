"""``hardneg calibrate``: sweep one filter's threshold on a cached candidate pool and tabulate what it keeps.

For each threshold x of ``--filter`` (strategy ``FILTER(x)+topk(n)``), over the pool's (query, positive) rows:

- ``kept_per_row``      mean candidates surviving the filter (of the pool's depth)
- ``rows_full``         share of rows with >= n survivors (n negatives)
- ``rows_empty``        share of rows with no survivor
- ``hardest_q50``       median teacher score of the hardest kept negative (rows with one)
- ``trap_recall``       on a ``hardneg inject`` dataset: share of the traps in the pool that ``FILTER(x)+topk(n)`` mines
                        (``hardneg.mining.trap``), with ``real_kept`` (share of the first n non-trap candidates kept)

The rows of ``FILTER(auto,coverage=C)+topk(n)`` for C = 0.9, 0.95, 0.99 are added (marked ``auto``) where reachable.
Grids: percpos 0.80..1.00 step 0.01; marginpos 0.00..0.20 step 0.01; posnbr 0.50..1.00 step 0.025; abs from the 5th
to the 99th percentile of the pool's candidate scores in 20 steps (rounded to 0.001).
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from hardneg.errors import HardnegError
from hardneg.io import write_json, write_text
from hardneg.markdown import md_table
from hardneg.mining.select import PoolExtras, apply_strategy
from hardneg.mining.strategy import parse_strategy
from hardneg.types import CandidatePool

FILTERS = ("percpos", "marginpos", "abs", "posnbr")
COVERAGES = (0.9, 0.95, 0.99)


def threshold_grid(kind: str, pool: CandidatePool) -> list[float]:
    if kind == "percpos":
        return [round(0.80 + 0.01 * i, 2) for i in range(21)]
    if kind == "posnbr":  # near-copies sit far above ordinary neighbours: a wider range (docs/false-negatives.md)
        return [round(0.50 + 0.025 * i, 3) for i in range(21)]
    if kind == "marginpos":
        return [round(0.01 * i, 2) for i in range(21)]
    s = pool.cand_score[pool.cand_idx >= 0].astype(np.float64)
    if s.size == 0:
        return [0.0]
    lo, hi = np.percentile(s, [5, 99])
    return sorted({round(float(x), 3) for x in np.linspace(lo, hi, 20)})


def sweep(pool: CandidatePool, kind: str, n: int, *, extras: PoolExtras | None = None, dataset=None, manifest=None,
          grid: list[float] | None = None, ref: str = "min") -> list[dict[str, Any]]:
    """One dict per threshold (module docstring), threshold ascending, then the auto rows. ``ref``: the positive
    reference of percpos / marginpos (min, max, mean or row; see the strategy grammar)."""
    if kind not in FILTERS:
        raise HardnegError(f"unknown filter {kind}", where="--filter", fix=f"choose from {', '.join(FILTERS)}")
    if n < 1:
        raise HardnegError(f"n must be >= 1, got {n}", where="--n", fix="use e.g. --n 4")
    from hardneg.mining.select import filter_mask, row_layout

    row_q, row_pos = row_layout(pool)
    score = pool.cand_score[row_q].astype(np.float64)
    valid = pool.cand_idx[row_q] >= 0
    if ref != "min" and kind not in ("percpos", "marginpos"):
        raise HardnegError(f"ref={ref} applies to percpos and marginpos, not {kind}", where="--ref",
                           fix="drop --ref for this filter")
    r = "" if ref == "min" else f",ref={ref}"
    strategies = [(f"{kind}({x!r}{r})+topk({n})", False) for x in (grid or threshold_grid(kind, pool))]
    for c in COVERAGES:
        strategies.append((f"{kind}(auto,coverage={c}{r})+topk({n})", True))
    out = []
    for text, auto in strategies:
        st = parse_strategy(text)
        try:
            mined = apply_strategy(pool, st, extras=extras)
        except HardnegError:
            if auto:
                continue  # coverage unreachable: no row
            raise
        applied = parse_strategy(mined.strategy)
        keep = valid & filter_mask(applied.filters[0], score, valid, pool, row_q, row_pos, extras)
        kept = keep.sum(axis=1)
        hardest = mined.neg_score[:, 0][mined.n_neg > 0].astype(np.float64)
        rec = {"strategy": str(st), "resolved": mined.strategy, "auto": auto,
               "threshold": float(getattr(applied.filters[0], {"percpos": "p", "marginpos": "m", "abs": "t",
                                                               "posnbr": "tau"}[kind])),
               "kept_per_row": round(float(kept.mean()), 4) if kept.size else 0.0,
               "rows_full": round(float((kept >= n).mean()), 4) if kept.size else 0.0,
               "rows_empty": round(float((kept == 0).mean()), 4) if kept.size else 0.0,
               "hardest_q50": round(float(np.median(hardest)), 4) if hardest.size else None}
        if manifest is not None and dataset is not None:
            from hardneg.mining.trap import trap_rates

            t = trap_rates(mined, dataset, manifest)
            rec["trap_recall"] = None if t["trap_recall"] is None else round(t["trap_recall"], 4)
            rec["real_kept"] = None if t["real_kept"] is None else round(t["real_kept"], 4)
        out.append(rec)
    return out


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


COLUMNS = ("strategy", "resolved", "threshold", "kept_per_row", "rows_full", "rows_empty", "hardest_q50",
           "trap_recall", "real_kept")


def calibrate_markdown(rows: list[dict], *, title: str = "") -> str:
    traps = any("trap_recall" in r for r in rows)
    head = ["strategy", "kept/row", "rows >= n", "rows empty", "hardest neg q50"] + (
        ["trap recall", "real negs kept"] if traps else [])
    body = []
    for r in rows:
        cov = r["strategy"].split("coverage=")[1].split(")")[0] if r["auto"] else ""
        name = f"`{r['resolved']}`" + (f" (auto {cov})" if r["auto"] else "")
        body.append([name, f"{r['kept_per_row']:.2f}", _pct(r["rows_full"]), _pct(r["rows_empty"]),
                     "n/a" if r["hardest_q50"] is None else f"{r['hardest_q50']:.3f}"]
                    + ([_pct(r.get("trap_recall")), _pct(r.get("real_kept"))] if traps else []))
    return (f"{title}\n\n" if title else "") + "\n".join(md_table(head, body)) + "\n"


def _csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(COLUMNS) + ["auto"], extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k) for k in list(COLUMNS) + ["auto"]})
    return buf.getvalue()


def _png(rows: list[dict], path: Path, kind: str, n: int, ref: str = "min") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = [r for r in rows if not r["auto"]]
    x = [r["threshold"] for r in grid]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.plot(x, [r["rows_full"] for r in grid], "o-", label=f"rows with >= {n} negatives")
    ax.plot(x, [r["rows_empty"] for r in grid], "s-", label="rows empty")
    if any(r.get("trap_recall") is not None for r in grid):
        ax.plot(x, [r.get("trap_recall") or 0.0 for r in grid], "^-", label="trap recall")
        ax.plot(x, [r.get("real_kept") or 0.0 for r in grid], "v-", label="real hard negatives kept")
    beyond = []  # auto thresholds outside the grid are named in the title (a line there would squash the curves)
    for r in rows:
        if r["auto"]:
            if x and min(x) <= r["threshold"] <= max(x):
                ax.axvline(r["threshold"], color="grey", ls=":", lw=1)
            else:
                beyond.append(f"{r['threshold']:g}")
    ax.set_xlabel(f"{kind} threshold")
    ax.set_ylabel("share")
    ax.set_ylim(-0.02, 1.02)
    ax2 = ax.twinx()
    ax2.plot(x, [r["kept_per_row"] for r in grid], "k--", lw=1, label="kept per row")
    ax2.set_ylabel("candidates kept per row")
    ax.legend(loc="best", fontsize=8)
    r_txt = "" if ref == "min" else f", ref={ref}"
    ax.set_title(f"calibrate {kind} (n = {n}{r_txt}); dotted: auto coverage 0.9 / 0.95 / 0.99"
                 + (f"\nauto beyond the grid: {', '.join(beyond)}" if beyond else ""))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run_calibrate(data: str | Path, teacher, kind: str, out: str | Path, *, n: int = 4, split: str = "train",
                  depth: int = 100, cache_dir: Path | None = None, progress: bool = True, ref: str = "min") -> dict:
    """Sweep ``kind`` on the (cached) pool of ``teacher`` (a Teacher, a teacher string or an EncoderSpec) on
    ``data``; write calibrate.md/.csv/.json/.png under ``out`` (claimed by the caller).
    Returns {"rows": [...], "markdown": str, "files": [...]}."""
    from hardneg.data.inject import manifest_for
    from hardneg.data.load import load_dataset
    from hardneg.mining.pipeline import get_pool
    from hardneg.mining.teachers import as_teacher

    if kind not in FILTERS:
        raise HardnegError(f"unknown filter {kind}", where="--filter", fix=f"choose from {', '.join(FILTERS)}")
    dataset = load_dataset(data, split, cache_dir=cache_dir)
    teacher = as_teacher(teacher)
    pool = get_pool(teacher, dataset, depth, cache_dir, progress=progress)
    extras = None
    if kind == "posnbr":
        from hardneg.mining.neighbours import pool_extras

        extras = pool_extras(pool, dataset, cache_dir, need={"pos_cos"})
    manifest = manifest_for(data, split)
    rows = sweep(pool, kind, n, extras=extras, dataset=dataset, manifest=manifest, ref=ref)
    out = Path(out)
    md = calibrate_markdown(rows, title=f"calibrate `{kind}` (ref={ref}) on {dataset.name}/{split}, teacher {teacher}, "
                                        f"n = {n}, depth {pool.depth}, {int(pool.pos_ptr[-1]):,} rows")
    write_text(out / "calibrate.md", md)
    write_text(out / "calibrate.csv", _csv(rows))
    write_json(out / "calibrate.json", {"data": str(data), "split": split, "teacher": str(teacher), "filter": kind,
                                        "n": n, "ref": ref, "depth": pool.depth, "rows": rows})
    _png(rows, out / "calibrate.png", kind, n, ref)
    return {"rows": rows, "markdown": md, "files": ["calibrate.md", "calibrate.csv", "calibrate.json", "calibrate.png"]}
