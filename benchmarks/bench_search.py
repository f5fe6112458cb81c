"""Search benchmark: hardneg exact search vs sentence-transformers' mining search vs FAISS, in one run.

Measures, on random unit vectors (``--dim`` 384, ``--nq`` 10,000 queries, ``--depth`` 100):

- the machine's fp32 matmul peak in torch (GFLOP/s of a square matmul, best of a few);
- for every corpus size in ``--sizes`` and every method in ``--methods``, in its own subprocess: wall time,
  effective GFLOP/s (2 * nq * nd * dim / time), the ratio to the peak, CPU time, peak RSS (``ru_maxrss``) and
  peak anonymous RSS (sampled ``RssAnon``: memmapped file pages excluded), and recall@depth against exact;
- a profile of one query block of the original exact search (matmul vs top-k vs tie check vs merge), and the
  same block with today's loop in torch (``torch-mm``) and with numpy's matmul (today's ``exact_search``).

Methods: ``hardneg-exact`` (fp32 array in RAM), ``hardneg-exact-fp16-shards`` (fp16 ``.npy`` shards of 8192
rows opened as memmaps, as the embedding cache stores them), ``torch-mm`` (``exact_search(matmul="torch")``:
``torch.mm`` (MKL) in place of numpy's matmul (OpenBLAS), on the fp16 shards), ``st-mine`` (sentence-transformers ``mine_hard_negatives`` search
without FAISS: ``util.cos_sim`` on chunks of ``faiss_batch_size`` queries, then ``torch.topk``), ``faiss-flatip``
(its ``use_faiss=True`` path: ``IndexFlatIP.add`` of the whole corpus, then ``search``), ``hardneg-faiss-flat``,
``hardneg-faiss-ivf``, ``hardneg-faiss-hnsw`` (index build included in their time).

    python benchmarks/bench_search.py --sizes 10000,100000 --out bench_search.json
    python benchmarks/bench_search.py --sizes 1000000 --out bench_search_1m.json    # several minutes per method

On a shared machine wall-clock GFLOP/s drop with other load, so the table gives three ratios: to the run's best
peak, to a ``local_peak`` re-measured in each subprocess just before its method, and per CPU second (GFLOP per
CPU second of the method over GFLOP per CPU second of the peak matmul), the least sensitive to other load.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ALL_METHODS = ("hardneg-exact", "hardneg-exact-fp16-shards", "torch-mm", "st-mine", "faiss-flatip",
               "hardneg-faiss-flat", "hardneg-faiss-ivf", "hardneg-faiss-hnsw")
SHARD_ROWS = 8192  # the embedding cache's default shard_size
ST_BATCH = 16384  # mine_hard_negatives' default faiss_batch_size


# -- measurement helpers --------------------------------------------------------------------------------------

class MemSampler(threading.Thread):
    """Samples RssAnon / RssFile of this process every ``period`` seconds; keeps the peaks (MiB)."""

    def __init__(self, period: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.period, self.stop_flag = period, threading.Event()
        self.peak_anon = self.peak_file = 0.0

    @staticmethod
    def hwm() -> float:
        """VmHWM (MiB): this process's peak RSS. Unlike ru_maxrss it is not inherited across fork + exec."""
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    @staticmethod
    def read() -> tuple[float, float]:
        anon = file = 0.0
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("RssAnon:"):
                    anon = int(line.split()[1]) / 1024
                elif line.startswith("RssFile:"):
                    file = int(line.split()[1]) / 1024
        return anon, file

    def run(self) -> None:
        while not self.stop_flag.is_set():
            a, f = self.read()
            self.peak_anon, self.peak_file = max(self.peak_anon, a), max(self.peak_file, f)
            time.sleep(self.period)

    def stop(self) -> None:
        self.stop_flag.set()
        self.join()
        a, f = self.read()
        self.peak_anon, self.peak_file = max(self.peak_anon, a), max(self.peak_file, f)


def matmul_peak(n: int = 4096, repeats: int = 3) -> tuple[float, float]:
    """Best GFLOP/s of an fp32 [n, n] @ [n, n] torch matmul: per wall second, and per CPU second."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    torch.mm(a, b, out=out)  # warm-up
    best, best_cpu = float("inf"), float("inf")
    for _ in range(repeats):
        c, t = time.process_time(), time.perf_counter()
        torch.mm(a, b, out=out)
        best, best_cpu = min(best, time.perf_counter() - t), min(best_cpu, time.process_time() - c)
    return 2 * n**3 / best / 1e9, 2 * n**3 / best_cpu / 1e9


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def make_data(folder: Path, n: int, nq: int, dim: int, seed: int) -> None:
    """q.npy [nq, dim] fp32, d32.npy [n, dim] fp32, shards16/shard-*.npy fp16 (8192 rows each)."""
    if (folder / "done").is_file():
        return
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    np.save(folder / "q.npy", unit_rows(rng, nq, dim))
    d32 = np.lib.format.open_memmap(folder / "d32.npy", mode="w+", dtype=np.float32, shape=(n, dim))
    (folder / "shards16").mkdir(exist_ok=True)
    for j, lo in enumerate(range(0, n, SHARD_ROWS)):
        block = unit_rows(rng, min(SHARD_ROWS, n - lo), dim)
        d32[lo:lo + block.shape[0]] = block
        np.save(folder / "shards16" / f"shard-{j:05d}.npy", block.astype(np.float16))
    d32.flush()
    del d32
    (folder / "done").write_text("ok")


# -- one method in one process --------------------------------------------------------------------------------

def run_method(method: str, folder: Path, depth: int, params: dict) -> dict:
    import torch

    q = np.load(folder / "q.npy")
    shard_files = sorted((folder / "shards16").glob("shard-*.npy"))
    info: dict = {"method": method, "threads": torch.get_num_threads()}
    info["local_peak_gflops"], info["local_peak_gflops_per_cpu_s"] = matmul_peak(2048, 3)
    # Import every library before the clock starts.
    import faiss  # noqa: F401
    from sentence_transformers.util import cos_sim

    from hardneg.search.exact import exact_search
    from hardneg.search.faiss_backend import faiss_search
    mem = MemSampler()
    if method in ("hardneg-exact-fp16-shards", "torch-mm"):
        d = [np.load(f, mmap_mode="r") for f in shard_files]
    else:
        d = np.load(folder / "d32.npy")  # fp32 in RAM
    nd, dim = sum(x.shape[0] for x in d) if isinstance(d, list) else d.shape[0], q.shape[1]
    info["rss_after_load_mb"] = MemSampler.read()[0]
    mem.start()
    t_cpu, t0 = time.process_time(), time.perf_counter()
    if method in ("hardneg-exact", "hardneg-exact-fp16-shards"):
        s, i = exact_search(q, d, depth)
    elif method == "torch-mm":
        s, i = exact_search(q, d, depth, matmul="torch")
    elif method == "st-mine":
        budget = params["mem_budget_gb"] * 1024**3
        batch = ST_BATCH
        while batch > 1 and min(batch, q.shape[0]) * nd * 4 * 2 > budget:  # scores + topk's workspace
            batch //= 2
        info["faiss_batch_size"] = batch
        corpus = torch.as_tensor(d)
        k = min(depth, nd)
        ss, ii = [], []
        for lo in range(0, q.shape[0], batch):
            chunk = cos_sim(torch.as_tensor(q[lo:lo + batch]), corpus)  # model.similarity for cosine models
            cs, ci = torch.topk(chunk, k=k, dim=1)
            ss.append(cs)
            ii.append(ci)
            del chunk
        s, i = torch.cat(ss).numpy(), torch.cat(ii).numpy()
    elif method == "faiss-flatip":
        index = faiss.IndexFlatIP(dim)
        index.add(d)
        ss, ii = [], []
        for lo in range(0, q.shape[0], ST_BATCH):
            cs, ci = index.search(q[lo:lo + ST_BATCH], depth)
            ss.append(cs)
            ii.append(ci)
        s, i = np.concatenate(ss), np.concatenate(ii)
    elif method.startswith("hardneg-faiss-"):
        kind = method.removeprefix("hardneg-faiss-")
        kw = {}
        if kind == "ivf" and params.get("nprobe"):
            kw["nprobe"] = params["nprobe"]
        if kind == "hnsw" and params.get("ef_search"):
            kw["ef_search"] = params["ef_search"]
        s, i = faiss_search(q, d, depth, index=kind, **kw)
    else:
        raise SystemExit(f"unknown method {method}")
    info["time_s"] = time.perf_counter() - t0
    info["cpu_s"] = time.process_time() - t_cpu
    mem.stop()
    info["peak_rss_mb"] = MemSampler.hwm()
    info["peak_anon_mb"], info["peak_file_mb"] = mem.peak_anon, mem.peak_file
    info["nd"], info["nq"], info["dim"] = int(nd), int(q.shape[0]), int(dim)
    i = np.asarray(i)
    if method == "hardneg-exact":
        np.save(folder / "exact_idx.npy", i)
    if method == "hardneg-exact-fp16-shards":
        np.save(folder / "exact16_idx.npy", i)
    if method == "torch-mm" and (folder / "exact16_idx.npy").is_file():
        info["ids_equal_exact_fp16_shards"] = bool(np.array_equal(i, np.load(folder / "exact16_idx.npy")))
    ref = folder / "exact_idx.npy"
    if ref.is_file():
        want = np.load(ref)
        info["recall"] = float(np.mean([len(np.intersect1d(a, b)) for a, b in zip(i, want, strict=True)])
                               / want.shape[1])
        info["ids_equal_exact"] = bool(np.array_equal(i, want))
    return info


def profile_block(nd: int, dim: int, depth: int, seed: int = 1) -> dict:
    """Time the stages of one query block (4096 queries) of the original exact search over ``nd`` docs (65536-row
    blocks), then the whole block with ``exact_search`` (numpy matmul) and with its loop in torch (``torch_mm``)."""
    import torch

    from hardneg.search.exact import _block_topk, exact_search

    rng = np.random.default_rng(seed)
    q, d = unit_rows(rng, 4096, dim), unit_rows(rng, nd, dim)
    qt = torch.from_numpy(q)
    out: dict = {"nq": 4096, "nd": nd, "dim": dim, "depth": depth}
    t: dict = {"convert": 0.0, "matmul": 0.0, "topk": 0.0, "tie_check": 0.0, "sorts": 0.0, "merge": 0.0}
    t_all = time.perf_counter()
    best_s = torch.empty((4096, 0))
    best_i = torch.empty((4096, 0), dtype=torch.int64)
    with torch.inference_mode():
        for lo in range(0, nd, 65536):
            t0 = time.perf_counter()
            db = torch.from_numpy(np.ascontiguousarray(d[lo:lo + 65536], dtype=np.float32))
            t1 = time.perf_counter()
            s = qt @ db.T
            t2 = time.perf_counter()
            vals, cols = torch.topk(s, depth, dim=1, largest=True, sorted=True)
            t3 = time.perf_counter()
            cols, order = torch.sort(cols, dim=1)
            vals = torch.gather(vals, 1, order)
            vals, order = torch.sort(vals, dim=1, descending=True, stable=True)
            cols = torch.gather(cols, 1, order)
            t4 = time.perf_counter()
            n_ge = (s >= vals[:, -1:]).sum(dim=1)
            _ = torch.nonzero(n_ge > depth)
            t5 = time.perf_counter()
            cat_s = torch.cat([best_s, vals], dim=1)
            cat_i = torch.cat([best_i, cols + lo], dim=1)
            cat_s, order = torch.sort(cat_s, dim=1, descending=True, stable=True)
            best_s, best_i = cat_s[:, :depth], torch.gather(cat_i, 1, order)[:, :depth]
            t6 = time.perf_counter()
            for name, a, b in (("convert", t0, t1), ("matmul", t1, t2), ("topk", t2, t3), ("sorts", t3, t4),
                               ("tie_check", t4, t5), ("merge", t5, t6)):
                t[name] += b - a
    out["stages_s"] = {k: round(v, 3) for k, v in t.items()}
    out["instrumented_total_s"] = round(time.perf_counter() - t_all, 3)
    flops = 2 * 4096 * nd * dim

    def timed(name, fn, *a, **kw):
        c, w = time.process_time(), time.perf_counter()
        res = fn(*a, depth, **kw)
        out[name + "_s"] = round(time.perf_counter() - w, 3)
        out[name + "_cpu_s"] = round(time.process_time() - c, 3)
        return res

    s1, i1 = timed("exact_search", exact_search, q, d)
    s2, i2 = timed("torch_mm", exact_search, q, d, matmul="torch")
    shards = [d[j:j + SHARD_ROWS].astype(np.float16) for j in range(0, nd, SHARD_ROWS)]
    timed("exact_search_fp16_8192_shards", exact_search, q, shards)
    timed("torch_mm_fp16_8192_shards", exact_search, q, shards, matmul="torch")
    out["torch_mm_ids_equal"] = bool(np.array_equal(i1, i2))
    out["torch_mm_max_score_diff"] = float(np.abs(s1 - s2).max())
    out["matmul_gflops"] = round(flops / t["matmul"] / 1e9, 1)
    out["exact_gflops"] = round(flops / out["exact_search_s"] / 1e9, 1)
    out["torch_mm_gflops"] = round(flops / out["torch_mm_s"] / 1e9, 1)
    out["exact_gflops_per_cpu_s"] = round(flops / out["exact_search_cpu_s"] / 1e9, 1)
    out["torch_mm_gflops_per_cpu_s"] = round(flops / out["torch_mm_cpu_s"] / 1e9, 1)
    _ = _block_topk  # the function the stages above reproduce
    return out


# -- driver ---------------------------------------------------------------------------------------------------

def fmt(x, nd=1):
    return "-" if x is None else (f"{x:.{nd}f}" if isinstance(x, float) else str(x))


def table(rows: list[dict], peak: float, peak_cpu: float) -> str:
    """Markdown table; '% of peak (CPU)' compares GFLOP per CPU second, robust to other load on the machine."""
    head = ("| N docs | method | time (s) | eff. GFLOP/s | % of peak | % of local peak | CPU s | % of peak (CPU) "
            "| peak RSS MiB | peak anon MiB | after load MiB | recall@depth |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['nd']:,} | {r['method']} | {r['error']} | | | | | | | | | |")
            continue
        flops = 2 * r["nq"] * r["nd"] * r["dim"]
        gf, gf_cpu = flops / r["time_s"] / 1e9, flops / r["cpu_s"] / 1e9
        name = r["method"] + (f" (batch {r['faiss_batch_size']})" if "faiss_batch_size" in r else "")
        lines.append(
            f"| {r['nd']:,} | {name} | {r['time_s']:.2f} | {gf:.1f} | {100 * gf / peak:.0f}% "
            f"| {100 * gf / r['local_peak_gflops']:.0f}% | {r['cpu_s']:.1f} | {100 * gf_cpu / peak_cpu:.0f}% "
            f"| {r['peak_rss_mb']:.0f} | {r['peak_anon_mb']:.0f} | {r['rss_after_load_mb']:.0f} "
            f"| {fmt(r.get('recall'), 3)} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated corpus sizes")
    ap.add_argument("--nq", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--depth", type=int, default=100)
    ap.add_argument("--methods", default=",".join(ALL_METHODS), help=f"comma-separated subset of {ALL_METHODS}")
    ap.add_argument("--ivf-max-size", type=int, default=1_000_000, help="skip IVF above this corpus size")
    ap.add_argument("--hnsw-max-size", type=int, default=100_000,
                    help="skip HNSW above this corpus size (its build is the slowest step: ~100x 10k's at 1M)")
    ap.add_argument("--nprobe", type=int, default=None, help="IVF nprobe (default: hardneg's nlist // 8)")
    ap.add_argument("--ef-search", type=int, default=None, help="HNSW efSearch (default: hardneg's max(2k, 64))")
    ap.add_argument("--mem-budget-gb", type=float, default=8.0,
                    help="st-mine: largest faiss_batch_size (from 16384 down) whose score matrix fits this")
    ap.add_argument("--profile-size", type=int, default=262_144, help="docs in the block profile (0: skip)")
    ap.add_argument("--workdir", default=None, help="data folder (default: a temp dir, deleted at the end)")
    ap.add_argument("--out", default="bench_search.json", help="JSON results file")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--data", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--params", default="{}", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:  # child process: one method, result JSON on stdout's last line
        print(json.dumps(run_method(args.worker, Path(args.data), args.depth, json.loads(args.params))))
        return

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sizes = [int(x) for x in args.sizes.split(",") if x]
    methods = [m for m in args.methods.split(",") if m]
    bad = sorted(set(methods) - set(ALL_METHODS))
    if bad:
        raise SystemExit(f"unknown methods: {bad}; choose from {ALL_METHODS}")
    import torch

    run = {"machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                       "platform": platform.platform(), "torch": torch.__version__,
                       "loadavg_start": os.getloadavg()},
           "config": vars(args), "peaks_gflops": [], "results": []}
    t_run = time.perf_counter()
    run["peaks_gflops"].append(matmul_peak())
    print(f"fp32 matmul peak: {run['peaks_gflops'][-1][0]:.1f} GFLOP/s "
          f"({run['peaks_gflops'][-1][1]:.1f} GFLOP per CPU second)", flush=True)
    if args.profile_size:
        run["profile"] = profile_block(args.profile_size, args.dim, args.depth)
        print(json.dumps(run["profile"], indent=1), flush=True)
    tmp = None
    work = Path(args.workdir) if args.workdir else Path(tmp := tempfile.mkdtemp(prefix="bench_search."))
    params = {"mem_budget_gb": args.mem_budget_gb, "nprobe": args.nprobe, "ef_search": args.ef_search}
    try:
        for n in sizes:
            folder = work / f"n{n}_q{args.nq}_d{args.dim}"
            t0 = time.perf_counter()
            make_data(folder, n, args.nq, args.dim, args.seed)
            print(f"data N={n:,}: {time.perf_counter() - t0:.1f}s", flush=True)
            # exact first: it writes the recall reference (and fp16 shards before torch-mm, its reference)
            order = sorted(methods, key=lambda m: {"hardneg-exact": 0, "hardneg-exact-fp16-shards": 1}.get(m, 2))
            for m in order:
                if ("faiss-ivf" in m and n > args.ivf_max_size) or ("faiss-hnsw" in m and n > args.hnsw_max_size):
                    continue
                t0 = time.perf_counter()
                cmd = [sys.executable, __file__, "--worker", m, "--data", str(folder), "--depth", str(args.depth),
                       "--params", json.dumps(params)]
                p = subprocess.run(cmd, capture_output=True, text=True)
                if p.returncode != 0:
                    err = (p.stderr.strip().splitlines() or ["?"])[-1][:120]
                    res = {"method": m, "nd": n, "error": f"failed (exit {p.returncode}: {err})"}
                else:
                    res = json.loads(p.stdout.strip().splitlines()[-1])
                res["wall_incl_load_s"] = time.perf_counter() - t0
                run["results"].append(res)
                print(json.dumps(res), flush=True)
            run["peaks_gflops"].append(matmul_peak())
    finally:
        if tmp:
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)
    run["machine"]["loadavg_end"] = os.getloadavg()
    run["total_wall_s"] = time.perf_counter() - t_run
    peak = max(p[0] for p in run["peaks_gflops"])
    peak_cpu = max(p[1] for p in run["peaks_gflops"])
    run["peak_gflops"], run["peak_gflops_per_cpu_s"] = peak, peak_cpu
    md = (f"fp32 matmul peak (torch, 4096^3, best of 3 per measurement, best of {len(run['peaks_gflops'])} "
          f"measurements): **{peak:.1f} GFLOP/s** wall, **{peak_cpu:.1f} GFLOP per CPU second**\n\n"
          + table(run["results"], peak, peak_cpu))
    if "profile" in run:
        md += "\n\nProfile of one 4096-query block (s): " + json.dumps(run["profile"])
    run["markdown"] = md
    print("\n" + md)
    Path(args.out).write_text(json.dumps(run, indent=1) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out} (total {run['total_wall_s']:.0f}s)")


if __name__ == "__main__":
    main()
