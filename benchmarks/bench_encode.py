"""Encoding benchmark on SciFact docs (title + " " + text): docs/s of four ways to embed the same slice.

- ``st-plain``: ``SentenceTransformer(minilm).encode(texts, batch_size=32, normalize_embeddings=True)``;
- ``hardneg-fp32``: hardneg's encoder (``EncoderSpec(model="minilm")``) through the embedding cache
  (``encode_cached``: length-sorted batches inside sentence-transformers, shards written atomically);
- ``hardneg-fp16``: the same with ``dtype="float16"`` storage (half the cache size);
- ``onnx-int8``: the ONNX int8 backend (``EncoderSpec(model="minilm-int8")``, onnxruntime).

Each method runs in its own subprocess (model load timed apart, a 16-doc warm-up before the clock), and
reports docs/s, load time, peak RSS (VmHWM) and the mean cosine of its vectors with ``st-plain``'s.

    python benchmarks/bench_encode.py --n 500 --out bench_encode.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench_search import MemSampler  # benchmarks/ is on sys.path when this script runs

METHODS = ("st-plain", "hardneg-fp32", "hardneg-fp16", "onnx-int8")
DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact" / "corpus.jsonl"


def load_texts(path: Path, n: int) -> tuple[list[str], list[str]]:
    ids, texts = [], []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if len(ids) >= n:
                break
            row = json.loads(line)
            ids.append(str(row["_id"]))
            title, text = row.get("title") or "", row.get("text") or ""
            texts.append((f"{title} {text}" if title else text).strip())  # the Corpus.encoding_texts rule
    return ids, texts


def run_method(method: str, corpus: Path, n: int, batch_size: int, emb_out: Path) -> dict:
    import torch

    ids, texts = load_texts(corpus, n)
    info: dict = {"method": method, "n": len(texts), "torch_threads": torch.get_num_threads(),
                  "mean_chars": float(np.mean([len(t) for t in texts]))}
    t0 = time.perf_counter()
    if method == "st-plain":
        from sentence_transformers import SentenceTransformer

        from hardneg.encode.models import minilm_path
        model = SentenceTransformer(minilm_path(), device="cpu")
        info["load_s"] = time.perf_counter() - t0
        model.encode(texts[:16], batch_size=batch_size)  # warm-up
        c, t0 = time.process_time(), time.perf_counter()
        emb = model.encode(texts, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True,
                           show_progress_bar=False)
    else:
        from hardneg.encode.cache import encode_cached
        from hardneg.encode.encoder import EncoderSpec, load_encoder
        spec = {"hardneg-fp32": EncoderSpec(model="minilm", batch_size=batch_size),
                "hardneg-fp16": EncoderSpec(model="minilm", batch_size=batch_size, dtype="float16"),
                "onnx-int8": EncoderSpec(model="minilm-int8", batch_size=batch_size)}[method]
        enc = load_encoder(spec)
        enc.fingerprint()  # hashes the weights once (memoised): part of loading, not of encoding
        info["load_s"] = time.perf_counter() - t0
        enc.encode(texts[:16], "doc", progress=False)  # warm-up
        with tempfile.TemporaryDirectory() as cache:
            c, t0 = time.process_time(), time.perf_counter()
            emb = encode_cached(enc, ids, texts, "doc", Path(cache), progress=False)
    info["encode_s"] = time.perf_counter() - t0
    info["cpu_s"] = time.process_time() - c
    info["docs_per_s"] = len(texts) / info["encode_s"]
    info["peak_rss_mb"] = MemSampler.hwm()
    np.save(emb_out, np.asarray(emb, dtype=np.float32))
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=str(DEFAULT_CORPUS), help="BEIR corpus.jsonl (default: SciFact)")
    ap.add_argument("--n", type=int, default=500, help="first N docs of the corpus")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--out", default="bench_encode.json")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--emb-out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(run_method(args.worker, Path(args.corpus), args.n, args.batch_size, Path(args.emb_out))))
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    methods = [m for m in args.methods.split(",") if m]
    bad = sorted(set(methods) - set(METHODS))
    if bad:
        raise SystemExit(f"unknown methods {bad}; choose from {METHODS}")
    run: dict = {"config": vars(args), "loadavg_start": os.getloadavg(), "results": []}
    embs: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for m in methods:
            out = Path(tmp) / f"{m}.npy"
            cmd = [sys.executable, __file__, "--worker", m, "--corpus", args.corpus, "--n", str(args.n),
                   "--batch-size", str(args.batch_size), "--emb-out", str(out)]
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode != 0:
                res = {"method": m, "error": (p.stderr.strip().splitlines() or ["?"])[-1][:160]}
            else:
                res = json.loads(p.stdout.strip().splitlines()[-1])
                embs[m] = np.load(out)
            run["results"].append(res)
            print(json.dumps(res), flush=True)
    ref = embs.get("st-plain")
    lines = ["| method | docs/s | encode s | CPU s | load s | peak RSS MiB | mean cos vs st-plain |",
             "|---|---|---|---|---|---|---|"]
    for r in run["results"]:
        if "error" in r:
            lines.append(f"| {r['method']} | {r['error']} | | | | | |")
            continue
        cos = None
        if ref is not None and r["method"] in embs:
            a, b = embs[r["method"]], ref
            cos = float(np.mean(np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))
            r["mean_cos_vs_st"] = cos
        lines.append(f"| {r['method']} | {r['docs_per_s']:.1f} | {r['encode_s']:.2f} | {r['cpu_s']:.1f} "
                     f"| {r['load_s']:.1f} | {r['peak_rss_mb']:.0f} | {'-' if cos is None else f'{cos:.5f}'} |")
    run["loadavg_end"] = os.getloadavg()
    run["markdown"] = (f"SciFact first {args.n} docs (title + text), batch size {args.batch_size}, "
                       f"{os.cpu_count()} CPUs\n\n" + "\n".join(lines))
    print("\n" + run["markdown"])
    Path(args.out).write_text(json.dumps(run, indent=1) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
