"""hardneg vs sentence-transformers ``mine_hard_negatives``: do both pick the same hard negatives?

Setting (design.md, "Equivalence with sentence-transformers mine_hard_negatives"): SciFact train, MiniLM teacher at
max_seq_length 256, depth 100, every query with exactly ONE positive. Compared configurations:

    hardneg percpos(0.95)+topk(4)   <->   ST relative_margin=0.05, num_negatives=4, range_max=100
    hardneg topk(4)                 <->   ST no margin,            num_negatives=4, range_max=100

ST is called with ``output_format="labeled-list", output_scores=True`` (rows keep however many negatives were
found); the "n-tuple" view (rows with all 4 negatives, the rows ST's n-tuple output keeps) is derived from it and,
in a full run, checked against a real ``output_format="n-tuple"`` call.

Two axes are varied:

- ``--pairs``: ``single`` gives ST only the (query, positive) pairs of the single-positive queries;
  ``all`` gives it every pair of the split, as a user would (ST then merges queries with identical text and
  retrieves ``range_max + max_positives`` candidates).
- ``--st-embeddings``: ``own`` lets ST encode with the SAME SentenceTransformer object hardneg uses (its calls to
  ``encode_document`` / ``encode_query`` are recorded to ``<cache>/st_equiv`` so a rerun skips the encode);
  ``shared`` hands ST hardneg's cached embeddings (looked up by text), isolating search + selection.

With ``--pairs all`` ST's search width is ``range_max + max_positives`` (5 on SciFact train), so a
single-positive query sees up to ``range_max + max_positives - 1`` non-positive candidates; one more comparison
gives hardneg that depth to show the ``beyond_depth`` differences are only that.

Every disagreement gets a reason: ``query_text_collision`` (ST merged this query with another of the same text),
``beyond_depth`` (ST took a candidate past hardneg's first ``depth`` non-positives: it retrieves
``range_max + max_positives``), ``threshold_boundary`` (a differing doc scores within 1e-5 of the filter threshold:
ST keeps ``score <= thr`` in float32, hardneg keeps ``score < thr`` in float64), ``tie`` (differing docs have scores
within 1e-6: ST's ``torch.topk`` tie order is unspecified, hardneg's is corpus row ascending),
``duplicate_text`` (ST identifies docs by text), ``embedding_drift`` or ``other``.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/equivalence_st.py                # full run
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/equivalence_st.py --limit 50     # quick run
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

from hardneg.encode.cache import encode_cached  # noqa: E402
from hardneg.encode.encoder import EncoderSpec, load_encoder  # noqa: E402
from hardneg.mining.candidates import build_pool  # noqa: E402
from hardneg.mining.select import apply_strategy  # noqa: E402
from hardneg.mining.strategy import PercPos, parse_strategy  # noqa: E402
from hardneg.types import CandidatePool, Dataset  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = Path("/work/shared/data/scifact")
RESULTS = ROOT / "benchmarks" / "results"

# hardneg strategy -> mine_hard_negatives keyword arguments (besides num_negatives / range_max)
CONFIGS: dict[str, dict[str, Any]] = {
    "percpos(0.95)+topk(4)": {"relative_margin": 0.05},
    "topk(4)": {},
}
THRESHOLD_EPS = 1e-5
TIE_EPS = 1e-6


# -- hardneg side -----------------------------------------------------------------------------------------------

def single_positive_qids(dataset: Dataset) -> list[str]:
    """Queries with exactly one positive (relevance > 0), in dataset order."""
    return [q for q in dataset.queries.ids if len(dataset.positives(q)) == 1]


def hardneg_side(dataset: Dataset, encoder, depth: int, cache_dir: Path | None, *, progress: bool = True
                 ) -> tuple[CandidatePool, np.ndarray, np.ndarray]:
    """hardneg's embeddings (through its cache) and candidate pool, with the given encoder object."""
    q_emb = encode_cached(encoder, dataset.queries.ids, dataset.queries.texts, "query", cache_dir, progress=progress)
    d_emb = encode_cached(encoder, dataset.corpus.ids, dataset.corpus.encoding_texts, "doc", cache_dir,
                          progress=progress)
    pool = build_pool(encoder.spec.model, dataset, q_emb, d_emb, depth)
    return pool, q_emb, d_emb


def hardneg_negatives(pool: CandidatePool, strategy: str) -> dict[str, list[int]]:
    """qid -> corpus rows of the mined negatives (rank order), for the first row of every query."""
    mined = apply_strategy(pool, parse_strategy(strategy), seed=0)
    out: dict[str, list[int]] = {}
    neg_idx, n_neg = mined.neg_idx, mined.n_neg
    for r in range(len(mined)):
        qid = pool.qids[mined.row_q[r]]
        out.setdefault(qid, neg_idx[r, :n_neg[r]].tolist())
    return out


# -- sentence-transformers side ---------------------------------------------------------------------------------

class EmbeddingHook:
    """Replace ``model.encode_document`` / ``encode_query`` on one model instance while ST runs.

    mode ``shared``: return the given hardneg embeddings, looked up by text (every text must be known).
    mode ``own``: call the real method (same model object) and memoise its output in ``folder`` by content key.
    """

    def __init__(self, model, mode: str, *, folder: Path | None = None, fingerprint: str = "",
                 doc_lookup: tuple[dict[str, int], np.ndarray] | None = None,
                 query_lookup: tuple[dict[str, int], np.ndarray] | None = None) -> None:
        self.model, self.mode, self.folder, self.fingerprint = model, mode, folder, fingerprint
        self.lookups = {"encode_document": doc_lookup, "encode_query": query_lookup}
        self.calls: list[tuple[str, int, str]] = []  # (method, n texts, "hook"|"memo"|"encoded")
        self.outputs: dict[str, tuple[list[str], np.ndarray]] = {}

    def _wrap(self, name: str):
        orig = getattr(self.model, name)

        def fn(texts, **kw):
            texts = list(texts)
            if self.mode == "shared":
                index, emb = self.lookups[name]
                missing = [t for t in texts if t not in index]
                if missing:
                    raise KeyError(f"{name}: {len(missing)} texts have no hardneg embedding, e.g. {missing[0][:60]!r}")
                out = np.ascontiguousarray(emb[[index[t] for t in texts]], dtype=np.float32)
                self.calls.append((name, len(texts), "hook"))
            else:
                h = hashlib.sha256(json.dumps([name, self.fingerprint, self.model.max_seq_length, texts,
                                               {k: v for k, v in kw.items() if k in ("prompt", "prompt_name",
                                                                                     "normalize_embeddings")}],
                                              ensure_ascii=False).encode("utf-8")).hexdigest()[:24]
                f = self.folder / f"{name}-{h}.npy" if self.folder else None
                if f is not None and f.is_file():
                    out = np.load(f)
                    self.calls.append((name, len(texts), "memo"))
                else:
                    out = orig(texts, **kw)
                    self.calls.append((name, len(texts), "encoded"))
                    if f is not None:
                        f.parent.mkdir(parents=True, exist_ok=True)
                        tmp = f.with_suffix(".tmp.npy")
                        np.save(tmp, np.asarray(out))
                        os.replace(tmp, f)
            self.outputs[name] = (texts, np.asarray(out))
            return out
        return fn

    def __enter__(self):
        for name in ("encode_document", "encode_query"):
            setattr(self.model, name, self._wrap(name))  # instance attribute shadows the method
        return self

    def __exit__(self, *exc):
        for name in ("encode_document", "encode_query"):
            self.model.__dict__.pop(name, None)
        return False


def st_pairs(dataset: Dataset, qids: list[str]) -> tuple[list[str], list[str]]:
    """(query text, positive text) per positive of each qid (texts as hardneg encodes them)."""
    texts, row = dataset.corpus.encoding_texts, dataset.corpus.row
    qtext = dict(zip(dataset.queries.ids, dataset.queries.texts))
    anchors, positives = [], []
    for q in qids:
        for d in dataset.positives(q):
            anchors.append(qtext[q])
            positives.append(texts[row[d]])
    return anchors, positives


def st_mine(model, anchors: list[str], positives: list[str], corpus: list[str], *, num_negatives: int,
            range_max: int, output_format: str = "labeled-list", **kw) -> tuple[dict[str, dict], float]:
    """Run ``mine_hard_negatives``: (query text -> {"pos", "pos_score", "neg": [texts], "neg_score"}, seconds)."""
    from datasets import Dataset as HFDataset
    from sentence_transformers.util import mine_hard_negatives

    ds = HFDataset.from_dict({"query": anchors, "positive": positives})
    t0 = time.perf_counter()
    out = mine_hard_negatives(ds, model, corpus=corpus, num_negatives=num_negatives, range_max=range_max,
                              sampling_strategy="top", output_format=output_format, output_scores=True,
                              verbose=False, batch_size=32, **kw)
    secs = time.perf_counter() - t0
    res: dict[str, dict] = {}
    if output_format == "labeled-list":
        for row in out:
            docs, scores = row["positive"], row["scores"]
            res.setdefault(row["query"], {"pos": docs[0], "pos_score": scores[0], "neg": docs[1:],
                                          "neg_score": scores[1:]})
    elif output_format == "n-tuple":
        for row in out:
            negs = [row[f"negative_{i}"] for i in range(1, num_negatives + 1)]
            res.setdefault(row["query"], {"pos": row["positive"], "pos_score": row["scores"][0], "neg": negs,
                                          "neg_score": row["scores"][1:]})
    else:
        raise ValueError(output_format)
    return res, secs


# -- comparison -------------------------------------------------------------------------------------------------

def classify(qid: str, strategy: str, hn: list[int], st_rows: list[int], pool: CandidatePool, qi: int,
             score_fn, collided: bool, dup_texts: set[int], st_scores: dict[int, float]) -> tuple[str, dict]:
    """Why hardneg's and ST's negatives for ``qid`` differ (first matching reason)."""
    diff = sorted(set(hn) ^ set(st_rows))
    cand = pool.cand_idx[qi]
    in_pool = set(cand[cand >= 0].tolist())
    pos_rows = pool.pos_idx[pool.pos_ptr[qi]:pool.pos_ptr[qi + 1]].tolist()
    pos_score = float(pool.pos_score[pool.pos_ptr[qi]:pool.pos_ptr[qi + 1]].min())
    strat = parse_strategy(strategy)
    thr = None
    for f in strat.filters:
        if isinstance(f, PercPos):
            thr = pos_score - abs(pos_score) * (1.0 - f.p)
    detail = {"diff_docs": [{"row": d, "hardneg_score": round(float(score_fn(d)), 7),
                             "st_score": None if d not in st_scores else round(st_scores[d], 7),
                             "in_hardneg_pool": d in in_pool, "in": "hardneg" if d in hn else "st"} for d in diff],
              "pos_score": round(pos_score, 7), "threshold": None if thr is None else round(thr, 7)}
    if collided:
        return "query_text_collision", detail
    if any(d in dup_texts for d in diff):
        return "duplicate_text", detail
    if any(d in pos_rows for d in st_rows):
        return "positive_as_negative", detail
    if any(d not in in_pool for d in st_rows):
        return "beyond_depth", detail
    if thr is not None and any(abs(score_fn(d) - thr) < THRESHOLD_EPS for d in diff):
        return "threshold_boundary", detail
    both = set(hn) | set(st_rows)
    if any(abs(score_fn(d) - score_fn(e)) < TIE_EPS for d in diff for e in both if e != d):
        return "tie", detail
    if any(d in st_scores and abs(st_scores[d] - score_fn(d)) > TIE_EPS for d in both):
        return "embedding_drift", detail
    return "other", detail


def compare(dataset: Dataset, pool: CandidatePool, q_emb: np.ndarray, d_emb: np.ndarray, strategy: str,
            st_res: dict[str, dict], qids: list[str], *, collisions: set[str], num_negatives: int = 4) -> dict:
    """Agreement of hardneg's and ST's negatives over ``qids`` (sets, order, n-tuple view) with reasons."""
    texts = dataset.corpus.encoding_texts
    text_rows: dict[str, list[int]] = {}
    for i, t in enumerate(texts):
        text_rows.setdefault(t, []).append(i)
    dup_texts = {i for rows in text_rows.values() if len(rows) > 1 for i in rows}
    qtext = dict(zip(dataset.queries.ids, dataset.queries.texts))
    qrow, pool_q = dataset.queries.row, {q: i for i, q in enumerate(pool.qids)}
    hn_all = hardneg_negatives(pool, strategy)
    same_set = same_order = 0
    full = {"st": 0, "hardneg": 0, "both": 0, "identical_among_st_full": 0}
    counts = {"st_short": 0, "hardneg_short": 0, "st_missing_row": 0}
    disagreements = []
    for q in qids:
        hn = hn_all.get(q, [])
        r = st_res.get(qtext[q])
        st_rows = [text_rows[t][0] for t in r["neg"]] if r else []
        st_scores = dict(zip(st_rows, r["neg_score"])) if r else {}
        if r is None:
            counts["st_missing_row"] += 1
        counts["st_short"] += len(st_rows) < num_negatives
        counts["hardneg_short"] += len(hn) < num_negatives
        ok_set, ok_order = set(hn) == set(st_rows) and len(hn) == len(st_rows), hn == st_rows
        same_set += ok_set
        same_order += ok_order
        st_full, hn_full = len(st_rows) == num_negatives, len(hn) == num_negatives
        full["st"] += st_full
        full["hardneg"] += hn_full
        full["both"] += st_full and hn_full
        full["identical_among_st_full"] += st_full and ok_set
        if not ok_set:
            qv = q_emb[qrow[q]]

            def score_fn(d: int, qv=qv) -> float:
                return float(np.dot(qv.astype(np.float64), d_emb[d].astype(np.float64)))
            reason, detail = classify(q, strategy, hn, st_rows, pool, pool_q[q], score_fn, q in collisions,
                                      dup_texts, st_scores)
            disagreements.append({"qid": q, "reason": reason,
                                  "hardneg": [dataset.corpus.ids[d] for d in hn],
                                  "st": [dataset.corpus.ids[d] for d in st_rows], **detail})
    n = len(qids)
    return {"strategy": strategy, "queries": n, "identical_sets": same_set,
            "identical_sets_pct": round(100.0 * same_set / n, 2) if n else None,
            "identical_order": same_order, **counts,
            "ntuple_view": {**full, "pct": round(100.0 * full["identical_among_st_full"] / full["st"], 2)
                            if full["st"] else None},
            "reasons": dict(Counter(d["reason"] for d in disagreements)),
            "disagreements": disagreements}


# -- driver -----------------------------------------------------------------------------------------------------

def wait_for(path: Path, poll: float) -> None:
    while not path.exists():
        print(f"waiting for {path} (poll {poll:.0f} s)", flush=True)
        time.sleep(poll)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--split", default="train")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/hn/cache"), help="hardneg cache (embeddings)")
    ap.add_argument("--depth", type=int, default=100)
    ap.add_argument("--max-seq-length", type=int, default=256)
    ap.add_argument("--limit", type=int, default=None, help="compare only the first N single-positive queries")
    ap.add_argument("--pairs", choices=("single", "all", "both"), default="both")
    ap.add_argument("--st-embeddings", choices=("own", "shared", "both"), default="both")
    ap.add_argument("--wait-for", type=Path, default=None,
                    help="poll (every 60 s) until this file exists before starting, e.g. another job's summary.json")
    ap.add_argument("--out", type=Path, default=None, help="results JSON [benchmarks/results/equivalence_st.json, "
                                                            "or equivalence_st.limit<N>.json with --limit]")
    args = ap.parse_args(argv)
    if args.wait_for:
        wait_for(args.wait_for, 60.0)

    import sentence_transformers
    from hardneg.data.beir import load_beir
    import hardneg

    t_start = time.perf_counter()
    dataset = load_beir(args.data, args.split)
    spec = EncoderSpec("minilm", max_seq_length=args.max_seq_length)
    encoder = load_encoder(spec, args.cache)
    model = encoder.model  # the ONE SentenceTransformer object both tools use
    pool, q_emb, d_emb = hardneg_side(dataset, encoder, args.depth, args.cache)
    qids = single_positive_qids(dataset)
    n_single = len(qids)
    if args.limit:
        qids = qids[:args.limit]
    corpus = list(dataset.corpus.encoding_texts)
    doc_index = {t: i for i, t in reversed(list(enumerate(corpus)))}
    query_index = {t: i for i, t in reversed(list(enumerate(dataset.queries.texts)))}

    pair_modes = ["single", "all"] if args.pairs == "both" else [args.pairs]
    emb_modes = ["own", "shared"] if args.st_embeddings == "both" else [args.st_embeddings]
    runs, emb_diff, ntuple_check = [], {}, None
    st_results: dict[tuple[str, str, str], dict] = {}
    for pairs in pair_modes:
        st_qids = qids if pairs == "single" else list(dataset.queries.ids)
        anchors, positives = st_pairs(dataset, st_qids)
        # queries ST will merge: a compared qid whose text is shared by another query in ST's input
        by_text = Counter(dataset.queries.texts[dataset.queries.row[q]] for q in st_qids)
        collisions = {q for q in qids if by_text[dataset.queries.texts[dataset.queries.row[q]]] > 1}
        max_pos = max(Counter(anchors).values())
        for emb in emb_modes:
            hook = EmbeddingHook(model, emb, folder=args.cache / "st_equiv", fingerprint=encoder.fingerprint(),
                                 doc_lookup=(doc_index, d_emb), query_lookup=(query_index, q_emb))
            for strategy, kw in CONFIGS.items():
                with hook:
                    st_res, secs = st_mine(model, anchors, positives, corpus, num_negatives=4,
                                           range_max=args.depth, **kw)
                st_results[(pairs, emb, strategy)] = st_res
                res = compare(dataset, pool, q_emb, d_emb, strategy, st_res, qids, collisions=collisions)
                res.update({"pairs": pairs, "st_embeddings": emb, "hardneg_depth": args.depth,
                            "st_kwargs": {"num_negatives": 4,
                            "range_max": args.depth, **kw}, "st_input_pairs": len(anchors),
                            "st_max_positives": max_pos, "st_seconds": round(secs, 2)})
                runs.append(res)
                print(f"[{pairs:6s} pairs, {emb:6s} emb] {strategy:24s} identical sets {res['identical_sets']}/"
                      f"{res['queries']} ({res['identical_sets_pct']}%)  n-tuple view "
                      f"{res['ntuple_view']['identical_among_st_full']}/{res['ntuple_view']['st']}  "
                      f"reasons {res['reasons']}", flush=True)
            if emb == "own" and "encode_document" in hook.outputs:
                dt, de = hook.outputs["encode_document"]
                qt, qe = hook.outputs["encode_query"]
                emb_diff[pairs] = {
                    "doc_max_abs": float(np.abs(de - d_emb[[doc_index[t] for t in dt]]).max()),
                    "query_max_abs": float(np.abs(qe - q_emb[[query_index[t] for t in qt]]).max()),
                    "st_calls": [list(c) for c in hook.calls[:2]]}
        if max_pos > 1:
            # ST searches range_max + max_positives candidates, so a single-positive query sees up to
            # range_max + max_positives - 1 non-positives: give hardneg that depth and the tail differences go.
            wide = args.depth + max_pos - 1
            pool_w = build_pool(encoder.spec.model, dataset, q_emb, d_emb, wide)
            for strategy, kw in CONFIGS.items():
                res = compare(dataset, pool_w, q_emb, d_emb, strategy, st_results[(pairs, emb_modes[-1], strategy)],
                              qids, collisions=collisions)
                res.update({"pairs": pairs, "st_embeddings": emb_modes[-1], "hardneg_depth": wide,
                            "st_kwargs": {"num_negatives": 4, "range_max": args.depth, **kw},
                            "st_input_pairs": len(anchors), "st_max_positives": max_pos, "st_seconds": None})
                runs.append(res)
                print(f"[{pairs:6s} pairs, hardneg depth {wide}] {strategy:24s} identical sets "
                      f"{res['identical_sets']}/{res['queries']}  reasons {res['reasons']}", flush=True)
        if pairs == "single" and not args.limit:
            # the n-tuple view derived above must equal a real output_format="n-tuple" call
            with EmbeddingHook(model, "shared", doc_lookup=(doc_index, d_emb), query_lookup=(query_index, q_emb)):
                nt, _ = st_mine(model, anchors, positives, corpus, num_negatives=4, range_max=args.depth,
                                output_format="n-tuple", relative_margin=0.05)
            derived = next(r for r in runs if r["pairs"] == "single" and r["st_embeddings"] == emb_modes[-1]
                           and r["strategy"] == "percpos(0.95)+topk(4)")
            ntuple_check = {"ntuple_rows": len(nt), "derived_full_rows": derived["ntuple_view"]["st"],
                            "equal": len(nt) == derived["ntuple_view"]["st"]}

    summary = {
        "dataset": str(args.data), "split": args.split, "teacher": spec.to_dict(),
        "teacher_fingerprint": encoder.fingerprint(), "depth": args.depth, "limit": args.limit,
        "single_positive_queries": n_single, "compared_queries": len(qids),
        "versions": {"hardneg": getattr(hardneg, "__version__", "?"),
                     "sentence_transformers": sentence_transformers.__version__},
        "embedding_diff_st_vs_hardneg": emb_diff, "ntuple_check": ntuple_check, "runs": runs,
        "seconds_total": round(time.perf_counter() - t_start, 1),
    }
    out = args.out or RESULTS / ("equivalence_st.json" if not args.limit else f"equivalence_st.limit{args.limit}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=1))
    print("| ST input pairs | ST embeddings | hardneg depth | strategy | identical sets | % | same order | "
          "n-tuple view | reasons |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        nv = r["ntuple_view"]
        print(f"| {r['pairs']} | {r['st_embeddings']} | {r['hardneg_depth']} | `{r['strategy']}` | "
              f"{r['identical_sets']}/{r['queries']} | "
              f"{r['identical_sets_pct']} | {r['identical_order']} | {nv['identical_among_st_full']}/{nv['st']} | "
              f"{r['reasons'] or '-'} |")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
