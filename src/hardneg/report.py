"""``hardneg report``: results.jsonl -> the paper's tables and figures, with variance and significance.

Outputs (all byte-stable for the same input): ``table.md``/``table.csv`` (every grid cell: mean and sd over
seeds, paired randomisation test against the baseline, naive top-k unless ``--baseline`` says otherwise),
``best.md`` (best setting per method chosen on dev, reported on test, like the paper's Table 3), ``teachers.md``
(when several teachers or ensembles ran the same filter: each against the reference teacher, like the paper's
Tables 1-2), ``sampling.md`` (when the grid samples: each sampled strategy against the same filter's plain
top-n, the paper's Fig. 2 as a table), ``mining.md`` (per-filter statistics), ``cost.md`` (wall time by stage),
and figures ``fig1_sweeps.png``, ``fig4_scores.png``, and ``fig2_sampled.png`` when the grid has sampled
strategies (test nDCG@10 against k, with the same filter's plain top-n as a reference line).
"""
from __future__ import annotations

import csv
import io
import json
import math
import re
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from hardneg.data.jsonl import loads_json
from hardneg.errors import HardnegError
from hardneg.evaluate.metrics import paired_test
from hardneg.io import claim_output, read_json, write_bytes, write_text
from hardneg.markdown import md_table
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


def summarise(records: list[dict], unseen: list[str], baseline: str = "topk(4)") -> list[dict]:
    """One row per (teacher, student, strategy): means/sds over seeds, the test against the baseline, and the
    cell's records (by seed)."""
    groups: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for r in records:
        p = r["point"]
        groups[(p["teacher"], p["student"], p["strategy"])].append(r)
    rows = []
    for (teacher, student, strategy), recs in sorted(groups.items(), key=lambda kv: sort_key(kv[0])):
        recs = sorted(recs, key=lambda r: r["point"]["seed"])
        row: dict[str, Any] = {"teacher": teacher, "student": student, "strategy": strategy,
                               "method": dict(METHOD_NAMES)[method_of(strategy)[0]], "config": method_of(strategy)[1],
                               "seeds": [r["point"]["seed"] for r in recs], "records": recs}
        for split, metric in (("test", "ndcg@10"), ("test", "recall@100"), ("dev", "ndcg@10")):
            vals = [r["metrics"][split]["finetuned"][metric] for r in recs if split in r["metrics"]]
            if vals:
                row[f"{split} {metric}"] = mean_sd(vals)
        # Judged@10 (the share of the top 10 with any judgement): only when every seed's record has it (records
        # evaluated before it was recorded lack it).
        vals = [r["metrics"]["test"]["finetuned"]["judged@10"] for r in recs
                if "judged@10" in r["metrics"].get("test", {}).get("finetuned", {})]
        if vals and len(vals) == len(recs):
            row["test judged@10"] = mean_sd(vals)
        if unseen:
            vals = [float(np.mean([r["per_query"]["test"]["finetuned"][q]["ndcg@10"] for q in unseen])) for r in recs]
            row["unseen ndcg@10"] = mean_sd(vals)
        # Against naive top-k of the same teacher; teachers without one (mpnet, fusions, ensembles in a teacher
        # study) are compared with the naive top-k of the grid's teacher that has it.
        base = groups.get((teacher, student, baseline)) or next(
            (v for (t, s2, st), v in sorted(groups.items(), key=lambda kv: sort_key(kv[0]))
             if s2 == student and st == baseline), [])
        if base and strategy != baseline:
            for name, qids in (("test", None), ("unseen", unseen)):
                if qids is None or qids:
                    t = paired_over_seeds(base, recs, qids)
                    if t is not None:
                        row[f"vs naive {name}"] = t
        rows.append(row)
    return rows


def sort_key(k: tuple[str, str, str]) -> tuple:
    teacher, student, strategy = k
    m, param = method_of(strategy)
    order = [x for x, _ in METHOD_NAMES].index(m)
    num = [float(x) for x in re.findall(r"[-+]?\d*\.?\d+", param)] or [0.0]
    return teacher, student, order, num, strategy


def base_metrics(records: list[dict], unseen: list[str]) -> dict[tuple[str, str], dict]:
    """Metrics of each base (not fine-tuned) student; identical across the points that share it."""
    out = {}
    for r in records:
        s = r["point"]["student"]
        if s in out:
            continue
        m = {f"{split} {k}": r["metrics"][split]["base"][k] for split in r["metrics"] for k in ("ndcg@10", "recall@100")}
        if "judged@10" in r["metrics"].get("test", {}).get("base", {}):
            m["test judged@10"] = r["metrics"]["test"]["base"]["judged@10"]
        if unseen:
            m["unseen ndcg@10"] = float(np.mean([r["per_query"]["test"]["base"][q]["ndcg@10"] for q in unseen]))
        out[s] = m
    return out


def _cell(row: dict, k: str) -> str:
    v = row.get(k)
    return "" if v is None else fmt_cell(*v)


def sig_mark(row: dict, k: str) -> str:
    return _sig_of(row.get(k))


def _sig_of(v: dict | None) -> str:
    """A paired test result as ``+0.0123 (p=0.045)*``; empty for None."""
    if not v:
        return ""
    star = "*" if v["p"] < 0.05 else ""
    return f"{v['diff']:+.4f} (p={v['p']:.3f}){star}"


COLUMNS = ["teacher", "method", "config", "strategy", "seeds", "dev ndcg@10", "test ndcg@10", "vs naive test",
           "test recall@100", "unseen ndcg@10", "vs naive unseen"]


def _has_judged(rows: list[dict]) -> bool:
    """Whether any row has Judged@10 (records written before it was recorded lack it: no column then)."""
    return any("test judged@10" in r for r in rows)


def table_markdown(rows: list[dict], bases: dict, n_unseen: int) -> str:
    nan = float("nan")
    body = [["–", f"base {student} (no fine-tuning)", "", "", "", f"{m.get('dev ndcg@10', nan):.4f}",
             f"{m['test ndcg@10']:.4f}", "", f"{m['test recall@100']:.4f}", f"{m.get('unseen ndcg@10', nan):.4f}", ""]
            for student, m in bases.items()]
    body += [[r["teacher"], r["method"], r["config"], f"`{r['strategy']}`", str(len(r["seeds"])),
              _cell(r, "dev ndcg@10"), _cell(r, "test ndcg@10"), sig_mark(r, "vs naive test"),
              _cell(r, "test recall@100"), _cell(r, "unseen ndcg@10"), sig_mark(r, "vs naive unseen")] for r in rows]
    columns = COLUMNS
    if _has_judged(rows):  # after test recall@100; "–" for a cell whose records predate Judged@10
        at = COLUMNS.index("test recall@100") + 1
        columns = COLUMNS[:at] + ["test judged@10"] + COLUMNS[at:]
        cells = [("–" if "test judged@10" not in m else f"{m['test judged@10']:.4f}") for m in bases.values()]
        cells += [_cell(r, "test judged@10") or "–" for r in rows]
        body = [b[:at] + [c] + b[at:] for b, c in zip(body, cells)]
    lines = md_table(columns, body)
    lines.append("")
    lines.append(f"Mean ± sample sd over seeds. `vs naive`: mean per-query difference in test nDCG@10 against "
                 f"`topk(4)` with the same teacher (else the grid's teacher that has it) and seeds (per-query values "
                 f"averaged over seeds), two-sided paired "
                 f"randomisation test over queries, 10,000 sign flips; * p < 0.05. `unseen`: the {n_unseen} test "
                 f"queries none of whose relevant documents is relevant to a train query.")
    if columns is not COLUMNS:
        lines.append("`test judged@10`: share of the top 10 retrieved test documents that have any judgement (any "
                     "grade, 0 included; ir_measures' Judged@10), mean over queries and seeds; – where a seed's "
                     "record was written before it was recorded.")
    return "\n".join(lines) + "\n"


def table_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["teacher", "student", "method", "config", "strategy", "n_seeds", "dev_ndcg10_mean", "dev_ndcg10_sd",
                "test_ndcg10_mean", "test_ndcg10_sd", "test_recall100_mean", "test_recall100_sd",
                "unseen_ndcg10_mean", "unseen_ndcg10_sd", "diff_vs_naive", "p_vs_naive"]
               + (["test_judged10_mean", "test_judged10_sd"] if _has_judged(rows) else []))
    for r in rows:
        def g(k: str) -> list[str]:
            v = r.get(k)
            return ["", ""] if v is None else [f"{v[0]:.6f}", "" if math.isnan(v[1]) else f"{v[1]:.6f}"]
        sig = r.get("vs naive test") or {}
        w.writerow([r["teacher"], r["student"], r["method"], r["config"], r["strategy"], len(r["seeds"]),
                    *g("dev ndcg@10"), *g("test ndcg@10"), *g("test recall@100"), *g("unseen ndcg@10"),
                    f"{sig['diff']:.6f}" if sig else "", f"{sig['p']:.6f}" if sig else "",
                    *(g("test judged@10") if _has_judged(rows) else [])])
    return buf.getvalue()


def best_markdown(rows: list[dict]) -> str:
    """Best setting per (teacher, method), chosen on dev nDCG@10 (never on test), reported on test."""
    best: dict[tuple[str, str], dict] = {}
    for r in rows:
        k = (r["teacher"], r["method"])
        if "dev ndcg@10" in r and (k not in best or r["dev ndcg@10"][0] > best[k]["dev ndcg@10"][0]):
            best[k] = r
    lines = md_table(["teacher", "method", "config (chosen on dev)", "dev nDCG@10", "test nDCG@10", "vs naive (test)",
                      "test Recall@100"],
                     [[teacher, method, r["config"] or "–", _cell(r, "dev ndcg@10"), _cell(r, "test ndcg@10"),
                       sig_mark(r, "vs naive test"), _cell(r, "test recall@100")] for (teacher, method), r in best.items()])
    return "\n".join(lines) + "\n"


def teachers_markdown(rows: list[dict], baseline: str = "topk(4)") -> str | None:
    """The paper's Tables 1-2 shape: every filter that several teachers (or ensembles of them) ran, one row per
    teacher, each tested against the reference teacher (the one that ran ``baseline``) on the same filter and
    seeds. None when no filter was run by two teachers."""
    ref = next((r["teacher"] for r in rows if r["strategy"] == baseline), None)
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)  # (student, filter) -> rows
    for r in rows:
        groups[(r["student"], split_ensemble(r["strategy"])[0])].append(r)
    body = []
    for (_, filt), grp in groups.items():
        refrow = next((r for r in grp if r["teacher"] == ref and r["strategy"] == filt), None)
        if refrow is None or len(grp) < 2:
            continue
        for r in [refrow] + [r for r in grp if r is not refrow]:
            ens = split_ensemble(r["strategy"])[1]
            vs = "(reference)" if r is refrow else _sig_of(paired_over_seeds(refrow["records"], r["records"]))
            body.append([f"`{filt}`", r["teacher"] + (f" {ens}" if ens else ""), len(r["seeds"]),
                         _cell(r, "dev ndcg@10"), _cell(r, "test ndcg@10"), vs, _cell(r, "test recall@100"),
                         r["records"][0]["mining"].get("rows_empty", "–")])
    if not body:
        return None
    lines = md_table(["filter", "teacher", "seeds", "dev nDCG@10", "test nDCG@10", f"vs teacher {ref} (same filter)",
                      "test Recall@100", "rows empty"], body)
    lines += ["", f"Teachers (and ensembles of them) that mined with the same filter, each against teacher {ref} on "
              "that filter: mean per-query difference in test nDCG@10 over the seeds both ran (per-query values "
              "averaged over seeds), two-sided paired randomisation test over queries, 10,000 sign flips; "
              "* p < 0.05. `rows empty`: train rows left without any hard negative."]
    return "\n".join(lines) + "\n"


def _q50(quantiles: dict | None) -> str:
    """The median of a mining-statistics quantile dict; "–" when there was nothing to measure."""
    return "–" if not quantiles or quantiles.get("q50") is None else f"{quantiles['q50']:.3f}"


def sampling_markdown(rows: list[dict]) -> str | None:
    """Fig. 2 as a table: each sampled strategy against the same filter keeping its top n (same teacher and
    student), tested over the seeds both ran, with the median score of the hardest negative each one trains on
    (first seed's mining). None when no sampled strategy has its reference in the grid."""
    q50 = lambda row: _q50(row["records"][0]["mining"].get("top1_neg_score"))  # noqa: E731
    body = [[r["teacher"], r["method"], r["config"], f"`{r['strategy']}`", len(r["seeds"]), _cell(r, "test ndcg@10"),
             q50(r), f"`{ref['strategy']}`", _cell(ref, "test ndcg@10"), q50(ref),
             _sig_of(paired_over_seeds(ref["records"], r["records"]))] for r, ref in sampling_pairs(rows)]
    if not body:
        return None
    lines = md_table(["teacher", "method", "config", "strategy", "seeds", "test nDCG@10", "hardest neg q50",
                      "without sampling", "its test nDCG@10", "its hardest neg q50", "sampled vs without"], body)
    lines += ["", "`sampled vs without`: mean per-query difference in test nDCG@10 of the sampled strategy against "
              "the same filter keeping its top n, over the seeds both ran (per-query values averaged over seeds), "
              "two-sided paired randomisation test over queries, 10,000 sign flips; * p < 0.05. `hardest neg q50`: "
              "median teacher score of each row's highest-scoring selected negative (mining of the first seed)."]
    return "\n".join(lines) + "\n"


def mining_markdown(records: list[dict]) -> str:
    seen: dict[tuple[str, str], dict] = {}
    for r in records:
        seen.setdefault((r["point"]["teacher"], r["point"]["strategy"]), r["mining"])
    body = [[teacher, f"`{strategy}`", s["rows"], s["rows_short"], s["rows_empty"],
             ", ".join(f"{k}: {v:.1f}" for k, v in s.get("removed_per_row", {}).items()) or "–",
             _q50(s.get("pos_score")), _q50(s.get("top1_neg_score")), _q50(s.get("pos_minus_top1_neg")),
             s.get("top1_neg_above_pos", "–")]
            for (teacher, strategy), s in sorted(seen.items(), key=lambda kv: sort_key((kv[0][0], "", kv[0][1])))]
    columns = ["teacher", "strategy", "rows", "short of n", "empty", "removed per row (by filter)", "pos q50",
               "top-1 neg q50", "pos − top-1 q50", "top-1 neg above pos"]
    hidden = [s.get("hidden") for _, s in sorted(seen.items(), key=lambda kv: sort_key((kv[0][0], "", kv[0][1])))]
    if any(hidden):  # a `hardneg thin` dataset: the hidden positives each strategy mined as negatives
        columns += ["hidden recall", "hidden share of negs"]
        body = [b + ([_pct(h["hidden_recall"]), _pct(h["hidden_share_all"])] if h else ["–", "–"])
                for b, h in zip(body, hidden)]
    lines = md_table(columns, body)
    if any(hidden):
        lines += ["", "`hidden recall`: of the hidden positives (`hardneg thin`) among the teacher's candidates, the "
                  "share the strategy mined as negatives; `hidden share of negs`: hidden positives among all mined "
                  "negatives (all rows)."]
    return "\n".join(lines) + "\n"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


# Timing keys of a record -> cost.md row (evaluate_<model>_<split> keys go to "evaluate"; "mine" is split below).
COST_KINDS = {"mine_encode": "teacher encode", "mine_search": "search (pool)", "train": "train",
              "train_earlier": "train"}


def cost_markdown(records: list[dict]) -> str:
    tot: dict[str, float] = defaultdict(float)
    for r in records:
        for k, v in r.get("timings", {}).items():
            if k in COST_KINDS or (k.startswith("evaluate_") and k.count("_") == 2):
                tot[COST_KINDS.get(k, "evaluate")] += v
            elif k == "mine":
                tot["mine (strategies + files)"] += v - r["timings"].get("mine_encode", 0) - r["timings"].get(
                    "mine_search", 0) - r["timings"].get("mine_load_model", 0) - r["timings"].get("mine_load_pool", 0)
    total = sum(tot.values())
    lines = md_table(["stage", "wall time (s)", "share"],
                     [*([k, f"{tot[k]:.0f}", f"{tot[k] / total:.1%}"] for k in sorted(tot, key=lambda x: -tot[x])),
                      ["**total**", f"**{total:.0f}** ({total / 3600:.2f} h)", ""]])
    if "teacher encode" not in tot:
        lines += ["", "The teacher's embeddings and candidate pool came from the cache (built by an earlier run with the "
                  "same teacher and data), so their cost is not in this study's records."]
    # A point whose invocation was killed after training resumes at evaluation; its record carries the seconds the
    # train stage stored (train_earlier), except records written before that was recorded: estimate those.
    trained = [r["timings"]["train"] for r in records if "train" in r.get("timings", {})]
    untimed = sum(not {"train", "train_earlier"} & set(r.get("timings", {})) for r in records)
    if untimed and trained:
        lines += ["", f"Not in the table: the training time of {untimed} of {len(records)} points, whose train stage "
                  f"finished in an earlier invocation that was killed before evaluating, in records written before "
                  f"the train stage's own time was carried over; at the median training time that is about "
                  f"{untimed * float(np.median(trained)):.0f} s more."]
    return "\n".join(lines) + "\n"


def savefig(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})  # no version stamp: byte-stable
    write_bytes(path, buf.getvalue())


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


def write_report(results: str | Path, out: str | Path, *, baseline: str = "topk(4)") -> list[str]:
    """Write every table and figure of the report for ``results`` into ``out``; returns the file names."""
    results = Path(results)
    meta_path = results.parent / "ablation.json"
    with claim_output(out, "report", beside=[results, meta_path]) as out:
        records = read_results(results)
        unseen = read_json(meta_path)["slices"]["unseen"] if meta_path.is_file() else []
        return _write_files(records, unseen, baseline, out)


def _write_files(records: list[dict], unseen: list[str], baseline: str, out: Path) -> list[str]:
    rows = summarise(records, unseen, baseline)
    bases = base_metrics(records, unseen)
    files = {"table.md": table_markdown(rows, bases, len(unseen)), "table.csv": table_csv(rows),
             "best.md": best_markdown(rows), "mining.md": mining_markdown(records), "cost.md": cost_markdown(records)}
    for name, text in (("teachers.md", teachers_markdown(rows, baseline)), ("sampling.md", sampling_markdown(rows))):
        if text is not None:
            files[name] = text
    for name, text in files.items():
        write_text(out / name, text)
    written = list(files) + plot_sweeps(rows, out) + plot_scores(records, out)
    return written
