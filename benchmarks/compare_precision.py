"""bf16 fine-tunes against the committed fp32 points: test nDCG@10 per seed, mean, and a paired randomisation test
over the test queries (per-query nDCG@10 averaged over the seeds both ran), for every strategy both results files
hold. The bar (issue "Use the hardware"): within seed noise, p >= 0.05 and |difference| < 0.005.

    .venv/bin/python benchmarks/compare_precision.py ~/hardneg-runs/ablate-scifact-bf16/results.jsonl \
        reports/scifact/results.jsonl
"""
from __future__ import annotations

import sys
from collections import defaultdict
from statistics import mean

from hardneg.evaluate.metrics import paired_test
from hardneg.report import read_results


def by_point(path: str) -> dict[tuple[str, int], dict]:
    """(strategy, seed) -> record, for the MiniLM teacher and student."""
    out = {}
    for r in read_results(path):
        p = r["point"]
        if p["teacher"] == "minilm" and p["student"] == "minilm":
            out[(p["strategy"], p["seed"])] = r
    return out


def compare(new_path: str, ref_path: str) -> str:
    new, ref = by_point(new_path), by_point(ref_path)
    seeds: dict[str, list[int]] = defaultdict(list)
    for s, seed in sorted(set(new) & set(ref)):
        seeds[s].append(seed)
    lines = ["| strategy | seeds | fp32 test nDCG@10 per seed | bf16 per seed | fp32 mean | bf16 mean | bf16 - fp32 | "
             "p (paired, 300 queries) | within noise |", "|---|---|---|---|---|---|---|---|---|"]
    for s, ss in seeds.items():
        f = [ref[(s, k)]["metrics"]["test"]["finetuned"]["ndcg@10"] for k in ss]
        b = [new[(s, k)]["metrics"]["test"]["finetuned"]["ndcg@10"] for k in ss]
        qids = ref[(s, ss[0])]["per_query"]["test"]["finetuned"].keys()
        pq = {name: {q: mean(src[(s, k)]["per_query"]["test"]["finetuned"][q]["ndcg@10"] for k in ss) for q in qids}
              for name, src in (("fp32", ref), ("bf16", new))}
        t = paired_test(pq["fp32"], pq["bf16"])
        d = mean(b) - mean(f)
        ok = t["p_value"] >= 0.05 and abs(d) < 0.005
        lines.append(f"| `{s}` | {', '.join(map(str, ss))} | {' / '.join(f'{x:.4f}' for x in f)} | "
                     f"{' / '.join(f'{x:.4f}' for x in b)} | {mean(f):.4f} | {mean(b):.4f} | {d:+.4f} | "
                     f"{t['p_value']:.3f} | {'yes' if ok else 'no'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(compare(sys.argv[1], sys.argv[2]))
