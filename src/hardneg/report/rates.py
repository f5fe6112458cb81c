"""``hardneg fn-report``: the controlled false-negative study across injection rates, in one table and figure.

Input: one ``results.jsonl`` (from ``hardneg ablate``) per injection rate, e.g. rate 0 = the plain SciFact
ablation and 0.3 / 0.6 = the ablations on ``hardneg inject`` copies. Only the strategies, and the one (teacher,
student) pair, that every rate has run are compared (the rate-0 study usually has more). Outputs, byte-stable
for the same inputs:

- ``table.md`` / ``table.csv``: per strategy and rate, test nDCG@10 (mean ± sd over seeds), the paired test
  against naive ``topk(4)`` (or ``--baseline``) at the same rate, and the paired test against the same
  strategy at the smallest rate (usually 0: how the student degrades as false negatives rise); the mining-side
  trap rates of every strategy and rate;
- ``fig_rates.png``: test nDCG@10 vs injection rate per strategy (error bars: sd over seeds), next to the trap
  recall (share of the retrieved injected copies the strategy selects as negatives) vs rate.

Paired tests: per-query test nDCG@10 averaged over the seeds both sides share, two-sided randomisation test
over queries (10,000 sign flips, seed 0). Test queries and qrels are the same at every rate (injection touches
the training corpus only, and evaluation drops injected documents), so queries pair across rates.
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from hardneg.errors import HardnegError
from hardneg.io import claim_output, write_text
from hardneg.markdown import md_table
from hardneg.report.common import fmt_cell, mean_sd, paired_over_seeds, read_results, savefig, sig_mark
from hardneg.report.methods import sort_key

TRAP_KEYS = ("trap_recall", "rows_with_trap", "trap_share_all", "real_kept")


def parse_rate_args(items: list[str]) -> list[tuple[float, Path]]:
    """``RATE=RESULTS`` strings -> sorted (rate, path) pairs; rates are fractions in [0, 1], each given once."""
    out: dict[float, Path] = {}
    for item in items:
        rate_s, sep, path = item.partition("=")
        try:
            rate = float(rate_s)
        except ValueError:
            rate = math.nan
        if not sep or not path or not 0 <= rate <= 1:
            raise HardnegError(f"--rate {item!r} is not RATE=RESULTS with RATE in [0, 1]",
                               fix="e.g. --rate 0=runs/ablate/results.jsonl --rate 0.3=runs/fn-r30/results.jsonl")
        if rate in out:
            raise HardnegError(f"rate {rate:g} is given twice", fix="pass each injection rate once")
        out[rate] = Path(path).expanduser()
    if len(out) < 2:
        raise HardnegError("need results for at least two injection rates", fix="pass --rate twice or more")
    return sorted(out.items())


def _combo(r: dict) -> tuple[str, str]:
    return r["point"]["teacher"], r["point"]["student"]


def _study_combo(series: list[tuple[float, list[dict]]]) -> tuple[str, str]:
    """The one (teacher, student) that every rate has run (a rate-0 study may hold teacher studies too)."""
    common = set.intersection(*({_combo(r) for r in recs} for _, recs in series))
    if len(common) != 1:
        what = "no (teacher, student) was run at every rate" if not common else \
            f"several (teacher, student) pairs were run at every rate: {sorted(common)}"
        raise HardnegError(what, fix="run the false-negative study with one teacher and one student at every rate")
    return common.pop()


def _group(records: list[dict], combo: tuple[str, str]) -> dict[str, list[dict]]:
    """strategy -> records (one per seed) of the study's teacher and student."""
    out: dict[str, list[dict]] = {}
    for r in records:
        if _combo(r) == combo:
            out.setdefault(r["point"]["strategy"], []).append(r)
    return {s: sorted(v, key=lambda r: r["point"]["seed"]) for s, v in out.items()}


def summarise_rates(series: list[tuple[float, list[dict]]], baseline: str = "topk(4)") -> list[dict]:
    """One row per (strategy, rate) for the strategies, teacher and student present at every rate."""
    combo = _study_combo(series)
    groups = [(rate, _group(recs, combo)) for rate, recs in series]
    strategies = sorted(set.intersection(*(set(g) for _, g in groups)), key=lambda s: sort_key(("", "", s)))
    if not strategies:
        raise HardnegError("no strategy was run at every injection rate",
                           fix="run the same [grid] strategies in each rate's ablation")
    rate0, g0 = groups[0]
    rows = []
    for s in strategies:
        for rate, g in groups:
            recs = g[s]
            row: dict[str, Any] = {"strategy": s, "rate": rate, "seeds": [r["point"]["seed"] for r in recs],
                                   "test ndcg@10": mean_sd([r["metrics"]["test"]["finetuned"]["ndcg@10"] for r in recs])}
            if s != baseline and baseline in g:
                row["vs naive"] = paired_over_seeds(g[baseline], recs)
            if rate != rate0:
                row["vs rate0"] = paired_over_seeds(g0[s], recs)
            traps = [r["mining"].get("traps") for r in recs if r["mining"].get("traps")]
            if traps:  # deterministic strategies give the same rates for every seed; sampled ones: the mean
                row["traps"] = {k: (float(np.mean([t[k] for t in traps])) if all(t.get(k) is not None for t in traps)
                                    else None) for k in TRAP_KEYS}
            rows.append(row)
    return rows


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def table_markdown(rows: list[dict], baseline: str) -> str:
    r0 = f"{min(r['rate'] for r in rows):g}"
    body = [[f"`{r['strategy']}`", f"{r['rate']:g}", len(r["seeds"]), fmt_cell(*r["test ndcg@10"]), sig_mark(r, "vs naive"),
             sig_mark(r, "vs rate0"), *(_pct((r.get("traps") or {}).get(k))
                                    for k in ("trap_recall", "rows_with_trap", "trap_share_all", "real_kept"))]
            for r in rows]
    lines = md_table(["strategy", "injection rate", "seeds", "test nDCG@10", "vs naive (same rate)",
                      f"vs rate {r0} (same strategy)", "trap recall", "trap rows hit", "trap share (all negatives)",
                      "real negatives kept"], body)
    lines += ["", f"Mean ± sample sd over seeds. `vs naive`: mean per-query difference in test nDCG@10 against "
              f"`{baseline}` at the same rate; `vs rate {r0}`: against the same strategy at rate {r0} (negative = the "
              "student degrades); both over the seeds the two sides share, two-sided paired randomisation test over "
              "queries, 10,000 sign flips; * p < 0.05. Trap columns (hardneg.mining.trap): `trap recall` = injected "
              "copies selected as negatives / injected copies in the teacher's top-depth pool; `trap rows hit` = rows "
              "with a trap whose negatives include one; `trap share` = injected copies among all selected negatives; "
              "`real negatives kept` = share of naive top-n's non-trap negatives the strategy keeps."]
    return "\n".join(lines) + "\n"


def table_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["strategy", "rate", "n_seeds", "test_ndcg10_mean", "test_ndcg10_sd", "diff_vs_naive", "p_vs_naive",
                "diff_vs_rate0", "p_vs_rate0", *TRAP_KEYS])
    for r in rows:
        m, sd = r["test ndcg@10"]
        vn, v0, t = r.get("vs naive") or {}, r.get("vs rate0") or {}, r.get("traps") or {}
        f = lambda x: "" if x is None else f"{x:.6f}"  # noqa: E731
        w.writerow([r["strategy"], f"{r['rate']:g}", len(r["seeds"]), f(m), "" if math.isnan(sd) else f(sd),
                    f(vn.get("diff")), f(vn.get("p")), f(v0.get("diff")), f(v0.get("p")), *(f(t.get(k)) for k in TRAP_KEYS)])
    return buf.getvalue()


def plot_rates(rows: list[dict], out: Path) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    for s in dict.fromkeys(r["strategy"] for r in rows):
        pts = [r for r in rows if r["strategy"] == s]
        x = [r["rate"] for r in pts]
        y = [r["test ndcg@10"][0] for r in pts]
        sd = [0.0 if math.isnan(r["test ndcg@10"][1]) else r["test ndcg@10"][1] for r in pts]
        ax1.errorbar(x, y, yerr=sd, marker="o", capsize=3, label=s)
        tr = [(r["rate"], r["traps"]["trap_recall"]) for r in pts if (r.get("traps") or {}).get("trap_recall") is not None]
        if tr:
            ax2.plot(*zip(*tr), marker="o", label=s)
    ax1.set_xlabel("injection rate (share of train pairs with an unlabelled near-copy)")
    ax1.set_ylabel("test nDCG@10 (mean ± sd over seeds)")
    ax1.set_title("student quality")
    ax2.set_xlabel("injection rate")
    ax2.set_ylabel("trap recall")
    ax2.set_title("injected false negatives mined as negatives")
    ax2.set_ylim(0, 1)
    rates = sorted({r["rate"] for r in rows})
    for ax in (ax1, ax2):
        ax.set_xticks(rates)
        ax.set_xlim(rates[0] - 0.05, rates[-1] + 0.05)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    savefig(fig, out / "fig_rates.png")
    plt.close(fig)
    return "fig_rates.png"


def write_rate_report(rates: list[tuple[float, Path]], out: str | Path, *, baseline: str = "topk(4)") -> list[str]:
    """Write table.md, table.csv and fig_rates.png for results files given per injection rate."""
    with claim_output(out, "fn-report", beside=[p for _, p in rates]) as out:
        rows = summarise_rates([(rate, read_results(p)) for rate, p in rates], baseline)
        write_text(out / "table.md", table_markdown(rows, baseline))
        write_text(out / "table.csv", table_csv(rows))
        return ["table.md", "table.csv", plot_rates(rows, out)]
