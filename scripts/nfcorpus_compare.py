"""Cross-folder comparisons of the NFCorpus study, written to ``reports/nfcorpus/compare.md``.

``hardneg report`` tests each strategy against naive top-k inside one results file. The study's other result
sets answer other questions, each a paired randomisation test of test nDCG@10 over the 323 test queries (per-query
values averaged over the seeds both cells ran, 10,000 sign flips; ``hardneg.report.common.paired_over_seeds``):

- ``thin/``: each hard-negative strategy against in-batch negatives only (``none``): does mining pay at all?
- ``mask/``: a strategy trained with in-batch false-negative masking against the same strategy without (``thin/``);
- ``remine/``: the re-mined round (the round-1 student as teacher) against round 1 of the same strategy;
- ``ref/``: on NFCorpus with all its positives, each strategy against naive top-k.

Reads only the committed ``results.jsonl`` files, so the table regenerates byte for byte:

    .venv/bin/python scripts/nfcorpus_compare.py [--root reports/nfcorpus]
"""
from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from hardneg.io import write_text
from hardneg.report.common import fmt_cell, mean_sd, paired_over_seeds, read_results, sig_text

NAIVE = "topk(4)"
IN_BATCH = "none"


def by_strategy(path: Path) -> dict[str, list[dict]]:
    """Records of one results file per strategy (empty when the file is not there yet)."""
    out: dict[str, list[dict]] = defaultdict(list)
    if path.is_file():
        for r in read_results(path):
            out[r["point"]["strategy"]].append(r)
    return out


def row(label: str, strategy: str, a: list[dict], b: list[dict]) -> str:
    """One table row: ``b`` against ``a`` (test nDCG@10 mean ± sd over each side's seeds, the paired test)."""
    def cell(recs: list[dict]) -> str:
        vals = [r["metrics"]["test"]["finetuned"]["ndcg@10"] for r in recs]
        return f"{fmt_cell(*mean_sd(vals))} ({len(vals)})"
    seeds = sorted({r["point"]["seed"] for r in a} & {r["point"]["seed"] for r in b})
    return (f"| {label} | `{strategy}` | {cell(a)} | {cell(b)} | {sig_text(paired_over_seeds(a, b))} | "
            f"{', '.join(map(str, seeds)) or '–'} |")


def compare(root: Path) -> str:
    thin, mask = by_strategy(root / "thin" / "results.jsonl"), by_strategy(root / "mask" / "results.jsonl")
    remine, ref = by_strategy(root / "remine" / "results.jsonl"), by_strategy(root / "ref" / "results.jsonl")
    lines = ["| comparison | strategy | A: test nDCG@10 (seeds) | B: test nDCG@10 (seeds) | B − A (paired) | "
             "seeds paired |", "|---|---|---|---|---|---|"]
    for s in sorted(thin):
        if s != IN_BATCH and IN_BATCH in thin:
            lines.append(row("hard negatives vs in-batch only (thin/): B = strategy, A = `none`", s, thin[IN_BATCH],
                             thin[s]))
    for s in sorted(mask):
        if s in thin:
            lines.append(row("masking `score(0.1)`: B = masked, A = unmasked (thin/)", s, thin[s], mask[s]))
    for s in sorted(remine):
        if s in thin:
            lines.append(row("re-mining: B = round 2 (student as teacher), A = round 1", s, thin[s], remine[s]))
    for s in sorted(ref):
        if s != NAIVE and NAIVE in ref:
            lines.append(row("all positives (ref/): B = strategy, A = naive top-k", s, ref[NAIVE], ref[s]))
    if len(lines) == 2:
        lines.append("| (no comparable results yet) | | | | | |")
    lines += ["", "Mean ± sample sd over seeds (number of seeds in brackets). `B − A`: mean per-query difference in "
              "test nDCG@10 over the seeds both ran (per-query values averaged over them), two-sided paired "
              "randomisation test over the 323 test queries, 10,000 sign flips; * p < 0.05."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1] / "reports" / "nfcorpus")
    a = ap.parse_args(argv)
    write_text(a.root / "compare.md", compare(a.root))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
