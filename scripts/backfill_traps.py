"""Add known-negative rates (trap rates on `hardneg inject` data, hidden-positive rates on `hardneg thin` data) to
results.jsonl records written before `hardneg ablate` recorded them (2026-11-27).

    .venv/bin/python scripts/backfill_traps.py configs/fn-scifact-r30.toml

Each record lacking them gets ``hardneg.experiments.run.known_negative_stats`` of its point (the strategy
replayed from the cached pool: no encoding, no training); the file is rewritten atomically. Run it only while no
`hardneg ablate` of the same config is appending to the file.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from hardneg.encode.models import default_cache_dir
from hardneg.experiments.ablate import load_ablation, point_config
from hardneg.experiments.run import Context, known_negative_stats, load_splits
from hardneg.io import write_text


def main(config: str) -> None:
    base, _ = load_ablation(config)
    cache_dir = Path(base.run.cache).expanduser() if base.run.cache else default_cache_dir()
    ctx = Context(cache_dir=cache_dir, splits=load_splits(base, cache_dir), progress=False)
    results = Path(base.run.out).expanduser() / "results.jsonl"
    records = [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines()]
    added = 0
    for r in records:
        if "traps" not in r["mining"] and "hidden" not in r["mining"]:
            cfg = point_config(base, r["point"])
            stats = known_negative_stats(cfg, ctx, cfg.mine.parsed)
            if stats:
                r["mining"].update(stats)
                added += 1
    write_text(results, "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in records))
    print(f"{results}: known-negative rates added to {added} of {len(records)} records")


if __name__ == "__main__":
    main(sys.argv[1])
