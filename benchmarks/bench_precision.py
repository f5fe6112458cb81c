"""Precision benchmark: what bf16 buys on this CPU, and what it costs in fidelity (all ratios from one run).

1. CPU flags (read at run time from /proc/cpuinfo) and what ``precision="auto"`` resolves to here.
2. Encoding docs/s of SciFact docs (title + text, 256 tokens, batch 32) with MiniLM at fp32, bf16 (autocast, what
   ``EncoderSpec(precision="bf16")`` runs) and bf16 weights (``model_kwargs={"dtype": bfloat16}``, not used by
   hardneg; for comparison); runs interleaved (fp32, bf16, bf16-weights, fp32, ...) so load changes hit all alike;
   cosine of each text's bf16 vector to its fp32 vector.
3. Base MiniLM SciFact test nDCG@10 / Recall@100 at fp32 and bf16 through ``evaluate_model`` (the embedding cache
   is used: fp32 and bf16 entries have different keys).
4. Training s/step of MiniLM on SciFact train rows (batch 32, 4 random negatives, documents at 128 tokens as in
   the demo) with ``bf16=False`` vs ``bf16="auto"`` (bf16 autocast, fp32 master weights where the CPU has native
   bf16), interleaved, the first step of each run excluded.
5. Exact search of all SciFact queries over the corpus (MiniLM fp32 embeddings) at depth 100 and 1000: fp32 vs the
   bf16 first pass (margins), time and the % of (query, rank) slots identical to fp32 exact; the bf16 product's
   largest real error next to the bound the search uses.
6. The same on a synthetic corpus large enough for the matmul to dominate (1024 x 262,144 clustered unit vectors).

    .venv/bin/python benchmarks/bench_precision.py --out benchmarks/results/bench_precision.json   # ~15 min
    .venv/bin/python benchmarks/bench_precision.py --quick                                          # ~2 min
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------- 1. caps

def caps_section() -> dict:
    import torch

    from hardneg.encode import precision as P

    caps = P.cpu_caps()
    flags = P.read_cpu_flags()
    lines = P.CPUINFO.read_text().splitlines() if P.CPUINFO.is_file() else []
    model = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), platform.processor())
    out = {"cpu": model, "cpus": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
           **caps.to_dict(), "all_relevant_flags": sorted(f for f in flags if "bf16" in f or "vnni" in f
                                                          or f.startswith("amx") or f == "avx512f")}
    log(f"CPU: {model}; {caps.describe()}; native bf16: {caps.native_bf16}")
    return out


# ---------------------------------------------------------------- 2. encoding speed and fidelity

def load_docs(data: Path, n: int) -> list[str]:
    out = []
    with open(data / "corpus.jsonl", encoding="utf-8") as fh:
        for line in fh:
            if len(out) >= n:
                break
            row = json.loads(line)
            title, text = row.get("title") or "", row.get("text") or ""
            out.append((f"{title} {text}" if title else text).strip())
    return out


def encode_section(data: Path, n: int, reps: int, max_len: int, batch: int, native: bool) -> dict:
    import torch
    from sentence_transformers import SentenceTransformer

    from hardneg.encode import precision as P
    from hardneg.encode.encoder import EncoderSpec, load_encoder
    from hardneg.encode.models import minilm_path

    texts = load_docs(data, n)
    fp32 = load_encoder(EncoderSpec(model="minilm", max_seq_length=max_len, batch_size=batch))
    runners = {"fp32": lambda: fp32.encode(texts, "doc", progress=False)}
    if native:
        bf16 = load_encoder(EncoderSpec(model="minilm", max_seq_length=max_len, batch_size=batch, precision="bf16"))
        runners["bf16"] = lambda: bf16.encode(texts, "doc", progress=False)
        wmodel = SentenceTransformer(minilm_path(), device="cpu", model_kwargs={"dtype": torch.bfloat16})
        wmodel.max_seq_length = max_len
        runners["bf16-weights"] = lambda: wmodel.encode(texts, batch_size=batch, convert_to_tensor=True,
                                                        normalize_embeddings=True,
                                                        show_progress_bar=False).float().numpy()
    else:
        log("no native bf16: encoding fp32 only")
    warm = texts[:16]  # warm-up (oneDNN kernels, allocator)
    fp32.encode(warm, "doc", progress=False)
    if native:
        bf16.encode(warm, "doc", progress=False)
        wmodel.encode(warm, batch_size=batch)
    secs: dict[str, list[float]] = {k: [] for k in runners}
    embs: dict[str, np.ndarray] = {}
    for rep in range(reps):
        for name, f in runners.items():
            t0 = time.perf_counter()
            embs[name] = np.asarray(f(), dtype=np.float32)
            secs[name].append(time.perf_counter() - t0)
            log(f"encode {name} rep {rep + 1}/{reps}: {len(texts) / secs[name][-1]:.1f} docs/s")
    out: dict = {"n_docs": len(texts), "max_seq_length": max_len, "batch_size": batch, "reps": reps, "methods": {}}
    for name in runners:
        total = sum(secs[name])
        row = {"seconds": [round(s, 2) for s in secs[name]], "docs_per_s": round(len(texts) * reps / total, 2),
               "ratio_to_fp32": round(sum(secs["fp32"]) / total, 3)}
        if name != "fp32":
            a, b = embs["fp32"], embs[name]
            cos = np.einsum("ij,ij->i", a, b) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
            row.update({"cos_mean": float(cos.mean()), "cos_min": float(cos.min()),
                        "cos_p001": float(np.quantile(cos, 0.001))})
        out["methods"][name] = row
    if native:
        # The same texts twice give the same bits; a different batch composition (64 texts instead of all, so
        # other padded lengths) may not, in fp32 as in bf16: the cache keys whole shards, so it never mixes them.
        again = [bf16.encode(texts[:64], "doc", progress=False) for _ in range(2)]
        out["bf16_same_bits_twice"] = bool(np.array_equal(again[0], again[1]))
        out["subset_vs_full_same_bits"] = {
            "bf16": bool(np.array_equal(again[0], embs["bf16"][:64])),
            "fp32": bool(np.array_equal(fp32.encode(texts[:64], "doc", progress=False), embs["fp32"][:64]))}
        out["auto"] = dict(zip(("precision", "reason"), P.resolve_precision(
            "auto", P.cpu_caps(), lambda: P.probe_min_cosine(bf16._probe_encode, kinds=("doc",)))))
    return out


# ---------------------------------------------------------------- 3. nDCG

def ndcg_section(data: Path, cache_dir: Path, precisions: list[str], max_len: int) -> dict:
    from hardneg.data.load import load_eval_dataset
    from hardneg.encode.encoder import EncoderSpec
    from hardneg.evaluate.pipeline import evaluate_model

    ds = load_eval_dataset(data, "test", cache_dir=cache_dir)
    out = {}
    for prec in precisions:
        t0 = time.perf_counter()
        r = evaluate_model(EncoderSpec(model="minilm", max_seq_length=max_len, precision=prec), ds,
                           cache_dir=cache_dir, depth=1000, progress=False)
        out[prec] = {k: round(v, 5) for k, v in r.metrics.items()} | {"seconds": r.seconds,
                                                                         "wall_s": round(time.perf_counter() - t0, 1)}
        log(f"nDCG@10 {prec}: {r.metrics['ndcg@10']:.4f}  Recall@100 {r.metrics['recall@100']:.4f}  ({r.seconds})")
    return out


# ---------------------------------------------------------------- 4. training

def train_rows(data: Path, n_neg: int, seed: int = 0) -> list[dict]:
    from hardneg.data.load import load_dataset

    ds = load_dataset(data, "train")
    doc = dict(zip(ds.corpus.ids, ds.corpus.encoding_texts))
    ids = list(ds.corpus.ids)
    rng = np.random.default_rng(seed)
    rows = []
    for qid, text in zip(ds.queries.ids, ds.queries.texts):
        pos = [d for d, r in ds.qrels.get(qid, {}).items() if r > 0]
        for p in pos[:1]:
            negs = [ids[i] for i in rng.choice(len(ids), n_neg, replace=False) if ids[i] not in pos]
            rows.append({"qid": qid, "query": text, "pos": {"docid": p, "text": doc[p]},
                         "neg": [{"docid": d, "text": doc[d]} for d in negs]})
    return rows


class _StepTimes(list):
    """Wall seconds of each optimizer step, recorded by a trainer callback."""

    def callback(self):
        from transformers import TrainerCallback

        times = self

        class StepTimer(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):
                self.t0 = time.perf_counter()

            def on_step_end(self, args, state, control, **kw):
                times.append(time.perf_counter() - self.t0)
        return StepTimer()


def train_section(data: Path, steps: int, reps: int, native: bool) -> dict:
    import hardneg.train.trainer as T
    from hardneg.train import TrainConfig
    from hardneg.train.trainer import fit

    step_times = _StepTimes()
    run_trainer = T.run_trainer

    def timed_run_trainer(trainer, progress):  # fit() calls this module function: add the step timer
        trainer.add_callback(step_times.callback())
        return run_trainer(trainer, progress)
    T.run_trainer = timed_run_trainer
    rows = train_rows(data, 4)
    modes = {"fp32": False, "bf16": "auto"} if native else {"fp32": False}
    out: dict = {"rows": len(rows), "steps_per_run": steps, "reps": reps, "modes": {}}
    per_step: dict[str, list[float]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(reps):
            for name, bf16 in modes.items():
                cfg = TrainConfig(student="minilm", batch_size=32, n_negatives=4, doc_max_length=128,
                                  query_max_length=64, max_steps=steps, bf16=bf16, seed=rep)
                step_times.clear()
                res = fit(rows, cfg, Path(tmp) / f"{name}-{rep}", progress=False)
                times = list(step_times)
                per_step[name] += times[1:] if len(times) > 1 else times
                out["modes"].setdefault(name, {"precision": res.record["precision"], "losses": []})
                out["modes"][name]["losses"].append([r["loss"] for r in res.curve["train"]])
                log(f"train {name} rep {rep + 1}/{reps}: {res.record['result']['seconds_per_step']} s/step overall, "
                    f"steps after the first {[round(t, 2) for t in times[1:]]}")
    for name in modes:
        out["modes"][name]["s_per_step"] = round(float(np.mean(per_step[name])), 3)
        out["modes"][name]["step_seconds"] = [round(t, 2) for t in per_step[name]]
    if native:
        out["speedup"] = round(out["modes"]["fp32"]["s_per_step"] / out["modes"]["bf16"]["s_per_step"], 3)
    T.run_trainer = run_trainer
    return out


# ---------------------------------------------------------------- 5. search

def search_section(data: Path, cache_dir: Path, max_len: int, depths: list[int], margins: list[int],
                   reps: int) -> dict:
    from hardneg.data.load import load_dataset
    from hardneg.encode.cache import encode_cached
    from hardneg.encode.encoder import EncoderSpec, load_encoder
    from hardneg.search.exact import exact_search

    enc = load_encoder(EncoderSpec(model="minilm", max_seq_length=max_len), cache_dir)
    q_parts = []
    ds = None
    for split in ("train", "test"):
        ds = load_dataset(data, split)
        q_parts.append(encode_cached(enc, ds.queries.ids, ds.queries.texts, "query", cache_dir, progress=False))
    q = np.concatenate(q_parts)
    d = encode_cached(enc, ds.corpus.ids, ds.corpus.encoding_texts, "doc", cache_dir, progress=False)
    out: dict = {"queries": int(q.shape[0]), "docs": int(d.shape[0]), "runs": []}
    import torch

    with torch.inference_mode():  # the bf16 product's real error against fp32, vs the bound the search uses
        sb = torch.mm(torch.from_numpy(q).bfloat16(), torch.from_numpy(d).bfloat16().T).float().numpy()
    st0: dict = {}
    exact_search(q, d, 100, first_pass="bf16", margin=100, verify=False, stats=st0)
    out["bf16_score_error"] = {"max_abs": float(np.abs(sb - q @ d.T).max()), "bound_max": st0["eps_max"]}
    log(f"bf16 product vs fp32: max |error| {out['bf16_score_error']['max_abs']:.5f}, bound {st0['eps_max']:.5f}")
    del sb

    def best(f) -> tuple[float, object]:
        ts, res = [], None
        for _ in range(reps):
            t0 = time.perf_counter()
            res = f()
            ts.append(time.perf_counter() - t0)
        return min(ts), res

    for depth in depths:
        exact_search(q, d, depth)  # warm-up
        t32, (s0, i0) = best(lambda: exact_search(q, d, depth))
        for margin in margins:
            for verify in (True, False):
                st: dict = {}
                tb, (s1, i1) = best(lambda: exact_search(q, d, depth, first_pass="bf16", margin=margin,
                                                         verify=verify, stats=st))
                same = float((i0 == i1).mean())
                row = {"depth": depth, "margin": margin, "verify": verify, "fp32_s": round(t32, 4),
                       "bf16_s": round(tb, 4), "speedup": round(t32 / tb, 3), "identical_slots": same,
                       "differing_slots": int((i0 != i1).sum()),
                       "slots_score_diff_gt_1e-6": int((np.abs(s0 - s1) > 1e-6).sum()),
                       "max_abs_score_diff": float(np.abs(s0 - s1).max()), **st}
                out["runs"].append(row)
                log(f"search depth {depth} margin {margin} verify {verify}: fp32 {t32:.4f}s bf16 {tb:.4f}s "
                    f"({t32 / tb:.2f}x), identical slots {100 * same:.3f}%, uncertain queries "
                    f"{st.get('uncertain_queries')}/{q.shape[0]}")
    return out


def clustered(n: int, dim: int, seed: int, n_centres: int = 1000) -> np.ndarray:
    """Unit vectors around random centres (noise as large as the centres): a corpus with neighbourhoods."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_centres, dim)).astype(np.float32)
    x = centres[rng.integers(0, n_centres, n)] + rng.standard_normal((n, dim)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def synthetic_search_section(n_docs: int, n_queries: int, reps: int) -> dict:
    """Where the bf16 product could pay: a corpus large enough for the matmul to dominate (random clustered
    unit vectors, dim 384, depth 100, margin 100), fp32 and bf16 runs interleaved, best of ``reps``."""
    from hardneg.search.exact import exact_search

    q, d = clustered(n_queries, 384, 1), clustered(n_docs, 384, 2)
    exact_search(q[:64], d, 100)  # warm-up
    times: dict[str, list[float]] = {"fp32": [], "bf16": [], "bf16-noverify": []}
    res: dict = {}
    for _ in range(reps):
        for name, kw in (("fp32", {}), ("bf16", {"first_pass": "bf16", "margin": 100}),
                         ("bf16-noverify", {"first_pass": "bf16", "margin": 100, "verify": False})):
            st: dict = {}
            t0 = time.perf_counter()
            res[name] = exact_search(q, d, 100, stats=st, **kw)
            times[name].append(time.perf_counter() - t0)
            res[name + "-stats"] = st
    i0 = res["fp32"][1]
    out = {"docs": n_docs, "queries": n_queries, "depth": 100, "margin": 100}
    for name in ("fp32", "bf16", "bf16-noverify"):
        out[name] = {"best_s": round(min(times[name]), 3), "speedup": round(min(times["fp32"]) / min(times[name]), 3),
                     "identical_slots": float((res[name][1] == i0).mean()),
                     "slots_score_diff_gt_1e-6": int((np.abs(res[name][0] - res["fp32"][0]) > 1e-6).sum()),
                     **{k: v for k, v in res[name + "-stats"].items() if k != "first_pass"}}
        log(f"synthetic {n_queries} x {n_docs}: {name} {out[name]['best_s']} s ({out[name]['speedup']}x), "
            f"identical slots {100 * out[name]['identical_slots']:.3f}%")
    return out


# ---------------------------------------------------------------- main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="SciFact BEIR folder")
    ap.add_argument("--cache", default=None, help="embedding cache (default: $HARDNEG_CACHE or ~/.cache/hardneg)")
    ap.add_argument("--n", type=int, default=1000, help="docs for the encoding speed test")
    ap.add_argument("--encode-reps", type=int, default=2)
    ap.add_argument("--train-steps", type=int, default=4, help="steps per training run (the first is excluded)")
    ap.add_argument("--train-reps", type=int, default=2)
    ap.add_argument("--search-reps", type=int, default=5)
    ap.add_argument("--synthetic-docs", type=int, default=262144, help="corpus size of the synthetic search test")
    ap.add_argument("--synthetic-queries", type=int, default=1024)
    ap.add_argument("--skip", default="", help="comma list of sections to skip: encode,ndcg,train,search,synthetic")
    ap.add_argument("--quick", action="store_true", help="smoke run: 64 docs, 1 rep, 2 train steps, no nDCG")
    ap.add_argument("--out", default=None, help="write every number as JSON here")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("hardneg").setLevel(logging.INFO)
    from hardneg.encode.models import default_cache_dir

    skip = {s for s in args.skip.split(",") if s}
    if args.quick:
        args.n, args.encode_reps, args.train_steps, args.train_reps, args.search_reps = 64, 1, 2, 1, 2
        skip.update({"ndcg", "synthetic"})
    data = Path(args.data)
    cache_dir = Path(args.cache).expanduser() if args.cache else default_cache_dir()
    t_start = time.perf_counter()
    run: dict = {"args": vars(args), "loadavg_start": os.getloadavg(), "started": time.strftime("%Y-%m-%d %H:%M")}
    run["caps"] = caps_section()
    native = bool(run["caps"]["native_bf16"])
    if "encode" not in skip:
        run["encode"] = encode_section(data, args.n, args.encode_reps, 256, 32, native)
    if "ndcg" not in skip:
        run["ndcg"] = ndcg_section(data, cache_dir, ["fp32", "bf16"] if native else ["fp32"], 256)
    if "train" not in skip:
        run["train"] = train_section(data, args.train_steps, args.train_reps, native)
    if "search" not in skip:
        run["search"] = search_section(data, cache_dir, 256, [100, 1000] if not args.quick else [100],
                                       [50, 100, 200] if not args.quick else [100], args.search_reps)
    if "synthetic" not in skip:
        run["synthetic_search"] = synthetic_search_section(args.synthetic_docs, args.synthetic_queries,
                                                           max(2, args.search_reps // 2))
    run["loadavg_end"] = os.getloadavg()
    run["wall_s"] = round(time.perf_counter() - t_start, 1)
    print(json.dumps(run, indent=1, default=str))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(run, indent=1, default=str) + "\n", encoding="utf-8")
        log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
