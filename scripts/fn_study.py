"""Regenerate the measured part of docs/false-negatives.md, section 5 (false-negative filters and treatments).

On SciFact train with injected near-copies (rates 0.3 and 0.6, ``hardneg inject`` defaults, seed 0) and the MiniLM
teacher (max_seq_length 256, depth 100), measure per strategy the trap recall (share of the traps in the pool that
the strategy mines) and the real hard negatives kept (``hardneg.mining.trap``), for naive top-4, percpos, marginpos,
posnbr at several tau, dedup, the auto thresholds and the treatments; and ``hardneg audit``'s near-copy check against
the manifest. The section between the ``fn_study`` markers of the doc is replaced (or appended when missing).

Embeddings: the source corpus and the injected documents are encoded as two cache entries and concatenated (section 4
of the doc): only the injected documents are encoded when the source corpus is cached.

    .venv/bin/python scripts/fn_study.py [--data /work/shared/data/scifact] [--work /tmp/fn_study] [--cache DIR]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "false-negatives.md"
BEGIN, END = "<!-- fn_study:begin -->", "<!-- fn_study:end -->"
RATES = (0.3, 0.6)
N = 4
STRATEGIES = [
    "topk(4)",
    "percpos(0.95)+topk(4)",
    "marginpos(0.05)+topk(4)",
    "dedup+topk(4)",
    "posnbr(0.75)+topk(4)",
    "posnbr(0.8)+topk(4)",
    "posnbr(0.85)+topk(4)",
    "posnbr(0.9)+topk(4)",
    "posnbr(0.95)+topk(4)",
    "percpos(0.99)+posnbr(0.9)+topk(4)",
    "percpos(auto,coverage=0.95)+topk(4)",
    "posnbr(auto,coverage=0.95)+topk(4)",
    "relabel(posnbr(0.85))+topk(4)",
    "relabel(posnbr(0.9))+topk(4)",
    "relabel(percpos(0.99))+topk(4)",
    "drop-query(posnbr(0.85),m=1,k=10)+topk(4)",
    "percpos(0.95)+simans(20,4,10.0,0.1)",
]


def build(src: Path, rate: float, work: Path, cache: Path):
    from hardneg.data.beir import load_beir
    from hardneg.data.inject import inject_false_negatives, load_manifest
    from hardneg.encode.cache import encode_cached
    from hardneg.encode.encoder import EncoderSpec, load_encoder
    from hardneg.mining.candidates import build_pool
    from hardneg.mining.neighbours import pool_extras

    folder = work / f"scifact-r{int(round(rate * 100))}"
    if not (folder / "injected.json").is_file():
        inject_false_negatives(src, folder, rate=rate)
    ds = load_beir(folder, "train")
    man = load_manifest(folder)
    spec = EncoderSpec(model="minilm", max_seq_length=256)
    enc = load_encoder(spec, cache)
    c = ds.corpus
    n_src = len(c) - len(man.docs)
    assert set(c.ids[n_src:]) == set(man.ids), "injected documents must follow the source corpus"
    t0 = time.perf_counter()
    parts = [encode_cached(enc, c.ids[:n_src], c.encoding_texts[:n_src], "doc", cache, progress=False),
             encode_cached(enc, c.ids[n_src:], c.encoding_texts[n_src:], "doc", cache, progress=False)]
    d_emb = np.concatenate(parts, axis=0)
    q_emb = encode_cached(enc, ds.queries.ids, ds.queries.texts, "query", cache, progress=False)
    pool = build_pool("minilm", ds, q_emb, d_emb, 100,
                      meta={"teacher_spec": spec.to_dict(), "teacher_fingerprint": enc.fingerprint()})
    extras = pool_extras(pool, ds, None, d_emb=d_emb)
    return folder, ds, man, pool, extras, d_emb, time.perf_counter() - t0


def measure(ds, man, pool, extras) -> list[dict]:
    from hardneg.mining.select import apply_strategy
    from hardneg.mining.trap import trap_masks, trap_rates

    out = []
    naive_real = None
    for s in STRATEGIES:
        t0 = time.perf_counter()
        m = apply_strategy(pool, s, extras=extras)
        ms = 1000 * (time.perf_counter() - t0)
        r = trap_rates(m, ds, man)
        if s == "topk(4)":
            naive_real = r["real_kept"]
        rec = {"strategy": s, "resolved": m.strategy, "trap_recall": r["trap_recall"], "real_kept": r["real_kept"],
               "real_vs_naive": None if not naive_real else r["real_kept"] / naive_real,
               "trap_share_all": r["trap_share_all"], "negs_per_row": r["negatives_per_row"],
               "rows": r["rows"], "rows_short": r["rows_short"], "ms": round(ms, 1)}
        if getattr(m, "treatment", ""):
            rec["dropped_queries"] = int(m.dropped_queries)
            if m.relabel_col is not None and m.relabel_col.shape[1]:
                is_trap, _ = trap_masks(m, ds, man)
                col = m.relabel_col
                hit = np.take_along_axis(is_trap[m.row_q], np.maximum(col, 0), axis=1) & (col >= 0)
                rec["relabeled"] = int((col >= 0).sum())
                rec["relabeled_traps"] = int(hit.sum())
        out.append(rec)
    return out


def audit_check(folder: Path, ds, man, pool, extras, d_emb, tau: float) -> dict:
    """Near-copy precision / recall of the audit rule on naive top-4 (doc-doc cosine >= tau to a positive)."""
    from hardneg.mining.select import apply_strategy
    from hardneg.mining.trap import trap_masks

    m = apply_strategy(pool, "topk(4)")
    is_trap, _ = trap_masks(m, ds, man)
    cols = np.maximum(m.neg_col, 0)
    has = m.neg_col >= 0
    trap = np.take_along_axis(is_trap[m.row_q], cols, axis=1) & has
    cos = np.take_along_axis(extras.pos_cos[m.row_q], cols, axis=1)
    flag = (cos >= tau) & has
    tp = int((flag & trap).sum())
    return {"tau": tau, "traps": int(trap.sum()), "flagged": int(flag.sum()), "tp": tp,
            "precision": tp / max(1, int(flag.sum())), "recall": tp / max(1, int(trap.sum()))}


def pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def render(results: dict) -> str:
    lines = [BEGIN, "", "### Measured (scripts/fn_study.py)", "",
             "SciFact train, MiniLM teacher (max_seq_length 256), depth 100, n = 4, injected near-copies (`hardneg "
             "inject` defaults, seed 0). *Trap recall*: share of the traps in the pool that the strategy mines "
             "(lower is better). *Real kept*: share of naive's real top-4 (first 4 non-trap candidates) that the "
             "strategy keeps; *vs naive*: that share divided by naive top-4's own. Goal: trap recall <= 5% with >= 80% "
             "of naive's real hard negatives kept.", ""]
    for rate, res in results.items():
        lines += [f"#### Rate {rate}", "",
                  "| strategy | resolved | trap recall | real kept | vs naive | negs/row | rows short | replay ms "
                  "| notes |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in res["strategies"]:
            notes = []
            if "relabeled" in r:
                notes.append(f"relabelled {r['relabeled']} ({r['relabeled_traps']} traps)")
            if r.get("dropped_queries"):
                notes.append(f"dropped {r['dropped_queries']} queries")
            ok = (r["trap_recall"] or 0) <= 0.05 and (r["real_vs_naive"] or 0) >= 0.8
            lines.append(f"| `{r['strategy']}` | `{r['resolved']}` | {pct(r['trap_recall'])} | "
                         f"{pct(r['real_kept'])} | {pct(r['real_vs_naive'])} | {r['negs_per_row']:.2f} | "
                         f"{r['rows_short']} | {r['ms']:.0f} | "
                         f"{'**meets goal** ' if ok else ''}{'; '.join(notes)} |")
        lines += ["", "`hardneg audit`'s near-copy check on naive `topk(4)` against the manifest:", "",
                  "| tau | flagged | traps among the negatives | precision | recall |", "|---|---|---|---|---|"]
        for a in res["audit"]:
            lines.append(f"| {a['tau']} | {a['flagged']} | {a['traps']} | {pct(a['precision'])} | "
                         f"{pct(a['recall'])} |")
        lines += ["", f"Setup (cached encodes, exact search, per-pool arrays): {res['setup_s']:.0f} s.", ""]
    lines += [END]
    return "\n".join(lines) + "\n"


def write_doc(section: str) -> None:
    text = DOC.read_text(encoding="utf-8")
    if BEGIN in text and END in text:
        a, b = text.index(BEGIN), text.index(END) + len(END)
        text = text[:a] + section.rstrip("\n") + text[b:]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    DOC.write_text(text, encoding="utf-8")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("/work/shared/data/scifact"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/fn_study"))
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--tau", type=float, nargs="+", default=[0.8, 0.85, 0.9, 0.95], help="audit near-copy taus")
    ap.add_argument("--no-doc", action="store_true", help="print the section, do not edit the doc")
    ap.add_argument("--from-json", type=Path, default=None, help="re-render a saved fn_study.json (no mining)")
    args = ap.parse_args()
    from hardneg.encode.models import default_cache_dir

    cache = args.cache or default_cache_dir()
    args.work.mkdir(parents=True, exist_ok=True)
    results = {}
    if args.from_json is not None:
        results = json.loads(args.from_json.read_text(encoding="utf-8"))
    for rate in RATES if args.from_json is None else ():
        folder, ds, man, pool, extras, d_emb, setup = build(args.data, rate, args.work, cache)
        results[rate] = {"strategies": measure(ds, man, pool, extras), "setup_s": setup,
                         "audit": [audit_check(folder, ds, man, pool, extras, d_emb, t) for t in args.tau]}
        print(json.dumps({"rate": rate, **results[rate]}, indent=1), file=sys.stderr)
    (args.work / "fn_study.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    section = render(results)
    if args.no_doc:
        print(section)
    else:
        write_doc(section)
        print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
