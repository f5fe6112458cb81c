"""Kill `hardneg run` with SIGKILL at random moments, rerun it, and compare every artifact with a clean run.

    .venv/bin/python scripts/kill_resume.py --trials 10 [--workdir /tmp/hardneg-kill] [--seed 0]

Uses the tiny synthetic dataset, the hash teacher and a tiny random BERT student (hardneg.testing), so one
uninterrupted run takes seconds to a minute. Each trial: a fresh output and cache folder, a kill after a random
delay in [0, reference wall time], the stage active at the kill (read from the log), a rerun to completion, and
a byte comparison of every file under the run folder. Excepted: timings.json, and train_config.json beside each
trained model (it records wall times and the absolute student path); the weights (model.safetensors) and the
loss curve are compared byte for byte. Prints one line per trial and "trials: N, mismatches: M"; exits 1 on any
mismatch.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def tree_hashes(folder: Path) -> dict[str, str]:
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        if p.is_file() and p.name not in ("timings.json", "train_config.json") and not any(
                part.endswith(".tmp") for part in p.parts):
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def hardneg_cmd() -> list[str]:
    return [sys.executable, "-m", "hardneg.cli", "run", "config.toml"]


def run_once(cwd: Path, log: Path) -> float:
    t0 = time.perf_counter()
    with open(log, "ab") as fh:
        subprocess.run(hardneg_cmd(), cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, check=True,
                       env={**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"})
    return time.perf_counter() - t0


def stage_at(log: Path) -> str:
    """The stage running at the kill, from the last log lines (encoding happens inside mine and evaluate)."""
    text = log.read_text(errors="replace") if log.exists() else ""
    stage, detail = "start-up", ""
    for line in text.splitlines():
        for key in ("stage mine", "stage train", "stage evaluate"):
            if key in line:
                stage, detail = key.split()[1], ""
        if "embedding cache" in line:
            detail = " (after an encode)"
    return stage + detail


def prepare(work: Path) -> None:
    from hardneg.testing import make_tiny_student, tiny_run_config, write_tiny_beir

    write_tiny_beir(work / "data", n_docs=4000, n_queries=240)
    make_tiny_student(work / "student")
    # relative paths: the runs start in ``work``
    (work / "config.toml").write_text(tiny_run_config("data", "student/st", "out", "cache", max_steps=40))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/hardneg-kill"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    shutil.rmtree(args.workdir, ignore_errors=True)
    base = args.workdir / "base"
    prepare(base)
    ref = args.workdir / "ref"
    shutil.copytree(base, ref)
    t_ref = run_once(ref, ref / "log.txt")
    want = tree_hashes(ref / "out")
    print(f"reference run: {t_ref:.1f} s, {len(want)} files")
    mismatches = 0
    for i in range(args.trials):
        trial = args.workdir / f"trial{i}"
        shutil.copytree(base, trial)
        log = trial / "log.txt"
        # Stratified over the reference run's duration, so every stage gets kills.
        delay = 0.5 + (i + rng.random()) / args.trials * (t_ref - 0.5)
        with open(log, "ab") as fh:
            proc = subprocess.Popen(hardneg_cmd(), cwd=trial, stdout=fh, stderr=subprocess.STDOUT,
                                    env={**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"},
                                    start_new_session=True)
            try:
                proc.wait(timeout=delay)
                killed = "finished before the kill"
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                killed = f"killed at {delay:.1f} s during {stage_at(log)}"
        run_once(trial, log)
        got = tree_hashes(trial / "out")
        diff = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
        mismatches += bool(diff)
        print(f"trial {i}: {killed}; rerun {'identical' if not diff else 'DIFFERS: ' + ', '.join(diff[:5])}")
    print(f"trials: {args.trials}, mismatches: {mismatches}")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
