"""The ablation tables of ``hardneg report`` (table, best, teachers, sampling, mining, cost) and
``write_report``, which writes them and the figures."""
from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from hardneg.io import claim_output, read_json, write_text
from hardneg.markdown import md_table
from hardneg.mining.ensemble import split_ensemble
from hardneg.report.common import cell, mean_sd, paired_over_seeds, q50_text, read_results, sig_mark, sig_text
from hardneg.report.figures import plot_scores, plot_sweeps
from hardneg.report.methods import METHOD_NAMES, method_of, sampling_pairs, sort_key

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


COLUMNS = ["teacher", "method", "config", "strategy", "seeds", "dev ndcg@10", "test ndcg@10", "vs naive test",
           "test recall@100", "unseen ndcg@10", "vs naive unseen"]


def _has_judged(rows: list[dict]) -> bool:
    """Whether any row has Judged@10 (records written before it was recorded lack it: no column then)."""
    return any("test judged@10" in r for r in rows)


def _number(m: dict, key: str) -> str:
    """A base model's metric with 4 decimals; "–" where it was not measured (no dev split, no unseen query)."""
    v = m.get(key)
    return "–" if v is None or math.isnan(v) else f"{v:.4f}"


def table_markdown(rows: list[dict], bases: dict, n_unseen: int) -> str:
    body = [["–", f"base {student} (no fine-tuning)", "", "", "", _number(m, "dev ndcg@10"),
             _number(m, "test ndcg@10"), "", _number(m, "test recall@100"), _number(m, "unseen ndcg@10"), ""]
            for student, m in bases.items()]
    body += [[r["teacher"], r["method"], r["config"], f"`{r['strategy']}`", str(len(r["seeds"])),
              cell(r, "dev ndcg@10"), cell(r, "test ndcg@10"), sig_mark(r, "vs naive test"),
              cell(r, "test recall@100"), cell(r, "unseen ndcg@10"), sig_mark(r, "vs naive unseen")] for r in rows]
    columns = COLUMNS
    if _has_judged(rows):  # after test recall@100; "–" for a cell whose records predate Judged@10
        at = COLUMNS.index("test recall@100") + 1
        columns = COLUMNS[:at] + ["test judged@10"] + COLUMNS[at:]
        cells = [_number(m, "test judged@10") for m in bases.values()]
        cells += [cell(r, "test judged@10") or "–" for r in rows]
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
    judged = _has_judged(rows)  # a column only when records have it (older ones predate Judged@10)
    lines = md_table(["teacher", "method", "config (chosen on dev)", "dev nDCG@10", "test nDCG@10", "vs naive (test)",
                      "test Recall@100"] + (["test Judged@10"] if judged else []),
                     [[teacher, method, r["config"] or "–", cell(r, "dev ndcg@10"), cell(r, "test ndcg@10"),
                       sig_mark(r, "vs naive test"), cell(r, "test recall@100")]
                      + ([cell(r, "test judged@10") or "–"] if judged else [])
                      for (teacher, method), r in best.items()])
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
            vs = "(reference)" if r is refrow else sig_text(paired_over_seeds(refrow["records"], r["records"]))
            body.append([f"`{filt}`", r["teacher"] + (f" {ens}" if ens else ""), len(r["seeds"]),
                         cell(r, "dev ndcg@10"), cell(r, "test ndcg@10"), vs, cell(r, "test recall@100"),
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


def sampling_markdown(rows: list[dict]) -> str | None:
    """Fig. 2 as a table: each sampled strategy against the same filter keeping its top n (same teacher and
    student), tested over the seeds both ran, with the median score of the hardest negative each one trains on
    (first seed's mining). None when no sampled strategy has its reference in the grid."""
    q50 = lambda row: q50_text(row["records"][0]["mining"].get("top1_neg_score"))  # noqa: E731
    body = [[r["teacher"], r["method"], r["config"], f"`{r['strategy']}`", len(r["seeds"]), cell(r, "test ndcg@10"),
             q50(r), f"`{ref['strategy']}`", cell(ref, "test ndcg@10"), q50(ref),
             sig_text(paired_over_seeds(ref["records"], r["records"]))] for r, ref in sampling_pairs(rows)]
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
             q50_text(s.get("pos_score")), q50_text(s.get("top1_neg_score")), q50_text(s.get("pos_minus_top1_neg")),
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
