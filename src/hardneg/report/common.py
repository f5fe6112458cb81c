"""Helpers every report shares: reading results.jsonl, mean ± sd cells, the paired test over seeds and its
text, the median cell of a mining-statistics quantile dict, and byte-stable PNGs."""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from hardneg.data.jsonl import loads_json
from hardneg.errors import HardnegError
from hardneg.evaluate.metrics import paired_test
from hardneg.io import write_bytes

RECORD_KEYS = ("key", "point", "metrics")


def read_results(path: str | Path) -> list[dict]:
    """Records of results.jsonl (a torn last line from a killed run is skipped); anything else is refused."""
    p = Path(path)
    if not p.is_file():
        raise HardnegError("results file not found", where=p, fix="pass the results.jsonl written by `hardneg ablate`")
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise HardnegError("bytes that are not UTF-8", where=p, fix="pass the results.jsonl written by "
                                                                     "`hardneg ablate`") from None
    out = []
    for i, line in enumerate(lines, 1):
        try:
            rec = loads_json(line, where=p, line=i, fix="remove the line and rerun the ablation")
        except HardnegError:
            if i != len(lines):
                raise
            continue  # the torn last line of a killed run
        if not isinstance(rec, dict) or any(k not in rec for k in RECORD_KEYS):
            raise HardnegError(f"not an ablation record (needs {', '.join(RECORD_KEYS)})", where=p, line=i,
                               fix="pass the results.jsonl written by `hardneg ablate`, not a mined or other file")
        out.append(rec)
    if not out:
        raise HardnegError("no results yet", where=p, fix="run `hardneg ablate` first")
    return out


def fmt_cell(mean: float, sd: float | None) -> str:
    return f"{mean:.4f}" if sd is None or math.isnan(sd) else f"{mean:.4f} ± {sd:.4f}"


def mean_sd(xs: list[float]) -> tuple[float, float]:
    a = np.asarray(xs, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else float("nan")


def _per_query_mean(recs: list[dict], split: str, metric: str, qids: list[str] | None = None) -> dict[str, float]:
    """Per-query metric of the fine-tuned model averaged over the records (seeds)."""
    pq = [r["per_query"][split]["finetuned"] for r in recs]
    keys = qids if qids is not None else sorted(pq[0])
    return {q: float(np.mean([p[q][metric] for p in pq])) for q in keys}


def paired_over_seeds(a: list[dict], b: list[dict], qids: list[str] | None = None) -> dict[str, Any] | None:
    """Paired randomisation test of test nDCG@10, ``b`` vs ``a`` (records of two cells), over the seeds both ran:
    per-query values averaged over those seeds, 10,000 sign flips, seed 0. None if they share no seed."""
    seeds = sorted({r["point"]["seed"] for r in a} & {r["point"]["seed"] for r in b})
    if not seeds:
        return None
    ra = [r for r in a if r["point"]["seed"] in seeds]
    rb = [r for r in b if r["point"]["seed"] in seeds]
    t = paired_test(_per_query_mean(ra, "test", "ndcg@10", qids), _per_query_mean(rb, "test", "ndcg@10", qids),
                    n_resamples=10000, seed=0)
    return {"diff": t["mean_diff"], "p": t["p_value"], "ci": [t["ci_low"], t["ci_high"]], "seeds": seeds}


def cell(row: dict, k: str) -> str:
    v = row.get(k)
    return "" if v is None else fmt_cell(*v)


def sig_mark(row: dict, k: str) -> str:
    return sig_text(row.get(k))


def sig_text(v: dict | None) -> str:
    """A paired test result as ``+0.0123 (p=0.045)*``; empty for None."""
    if not v:
        return ""
    star = "*" if v["p"] < 0.05 else ""
    return f"{v['diff']:+.4f} (p={v['p']:.3f}){star}"


def q50_text(quantiles: dict | None) -> str:
    """The median of a mining-statistics quantile dict; "–" when there was nothing to measure."""
    return "–" if not quantiles or quantiles.get("q50") is None else f"{quantiles['q50']:.3f}"


def savefig(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})  # no version stamp: byte-stable
    write_bytes(path, buf.getvalue())
