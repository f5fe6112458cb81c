"""Training memory and speed per variant: plain InfoNCE, gradient checkpointing, GradCache (cached_infonce).

Each variant trains the same rows for ``--steps`` steps in its own child process (peak RSS is the child's own
``ru_maxrss``), with the demo's recipe (batch 32, 4 hard negatives, 64/128 tokens, bf16 as
``--bf16``). It prints peak RSS, seconds per step (noisy on a shared machine: compare ratios within one run) and
whether the trained weights equal the plain run's (max |difference| over all parameters).

The rows come from a mined file (``--mined``, e.g. the demo's ``mined/topk-4/mined.jsonl``), or, without one,
from SciFact mined by the test-only ``hash`` teacher (same shapes and lengths; the negatives are meaningless, which
does not matter for memory and speed).

    .venv/bin/python benchmarks/bench_train_memory.py [--mined FILE] [--steps 6] [--bf16 auto] [--variant V ...]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "plain": {},
    "gradient_checkpointing": {"gradient_checkpointing": True},
    "gradient_checkpointing(every_n_layers=2)": {"gradient_checkpointing": True, "checkpoint_every_n_layers": 2},
    "gradient_checkpointing(every_n_layers=3)": {"gradient_checkpointing": True, "checkpoint_every_n_layers": 3},
    "cached_infonce(mini_batch_size=8)": {"loss": "cached_infonce", "mini_batch_size": 8},
}


def child(mined: str, steps: int, bf16: str, variant: str, out: str) -> None:
    """Train one variant; print one JSON line with seconds per step and the path of the weights."""
    from hardneg.data.mined import read_mined
    from hardneg.train.config import TrainConfig
    from hardneg.train.trainer import fit

    rows = read_mined(Path(mined))
    cfg = TrainConfig(max_steps=steps, batch_size=32, n_negatives=4, query_max_length=64, doc_max_length=128,
                      bf16={"auto": "auto", "true": True, "false": False}[bf16], **VARIANTS[variant])
    t0 = time.perf_counter()
    res = fit(rows, cfg, Path(out), progress=False)
    print(json.dumps({"seconds_per_step": res.record["result"]["seconds_per_step"],
                      "wall": round(time.perf_counter() - t0, 1),
                      "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "loss": res.record["result"]["train_loss"],
                      "precision": res.record["precision"]}))


def hash_mined(work: Path) -> Path:
    out = work / "mined"
    subprocess.run([str(ROOT / ".venv/bin/hardneg"), "mine", "--data", str(ROOT.parent / "shared/data/scifact"),
                    "--teacher", "hash", "--strategy", "topk(4)", "--out", str(out), "-q"], check=True)
    return out / "topk-4" / "mined.jsonl"


def max_abs_diff(a: Path, b: Path) -> float:
    from safetensors.numpy import load_file

    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    return max(float(abs(wa[k].astype("float64") - wb[k].astype("float64")).max()) for k in wa)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mined")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--bf16", default="auto", choices=("auto", "true", "false"))
    ap.add_argument("--variant", action="append", choices=list(VARIANTS),
                    help="repeatable; default: every variant (plain always runs: the others are compared to it)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(a.mined, a.steps, a.bf16, a.child, a.out)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        mined = a.mined or str(hash_mined(work))
        print(f"rows: {mined}; {a.steps} steps, batch 32, 4 negatives, 64/128 tokens, bf16={a.bf16}")
        print("| variant | peak RSS (GiB) | s/step | train loss | max abs weight diff vs plain |")
        print("|---|---|---|---|---|")
        for v in ["plain"] + [v for v in VARIANTS if v != "plain" and (not a.variant or v in a.variant)]:
            out = work / v.replace("(", "-").replace(")", "").replace("=", "-")
            p = subprocess.run([sys.executable, __file__, "--child", v, "--out", str(out), "--mined", mined,
                                "--steps", str(a.steps), "--bf16", a.bf16], capture_output=True, text=True)
            if p.returncode:
                print(p.stderr[-2000:])
                raise SystemExit(f"variant {v} failed")
            r = json.loads(p.stdout.strip().splitlines()[-1])
            diff = "-" if v == "plain" else f"{max_abs_diff(work / 'plain', out):.2e}"
            print(f"| {v} | {r['peak_rss_kib'] / 2**20:.2f} | {r['seconds_per_step']} | {r['loss']:.5f} | {diff} |", flush=True)


if __name__ == "__main__":
    main()
