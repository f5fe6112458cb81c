"""Mining end to end: dataset -> cached embeddings -> cached candidate pool -> strategies -> files.

The pool is keyed by everything that determines it (teacher fingerprint, corpus, queries, qrels, depth), so
replaying any number of strategies costs one encode and one search.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hardneg.encode.cache import encode_cached
from hardneg.encode.encoder import EncoderSpec, load_encoder
from hardneg.errors import HardnegError
from hardneg.io import atomic_path, ensure_dir, stable_hash, write_json, write_jsonl
from hardneg.mining.candidates import build_pool, load_pool, save_pool
from hardneg.mining.export import EXPORTS, ShortPolicy, project_rows, write_exports
from hardneg.mining.select import apply_strategy
from hardneg.mining.stats import mining_stats
from hardneg.mining.strategy import Strategy
from hardneg.types import CandidatePool, Dataset

log = logging.getLogger("hardneg")


@dataclass(frozen=True)
class MineConfig:
    """Everything that determines a mining run's outputs."""

    teacher: EncoderSpec
    strategies: tuple[Strategy, ...]
    depth: int = 100
    seed: int = 0
    exports: tuple[str, ...] = ()
    short_policy: ShortPolicy = "drop"

    def __post_init__(self) -> None:
        problems = []
        if self.depth < 1:
            problems.append(f"depth must be >= 1, got {self.depth}")
        if not self.strategies:
            problems.append("give at least one strategy")
        bad = [e for e in self.exports if e not in EXPORTS]
        if bad:
            problems.append(f"unknown export {', '.join(bad)} (choose from {', '.join(EXPORTS)})")
        if self.short_policy not in ("drop", "pad"):
            problems.append(f"short policy must be drop or pad, got {self.short_policy}")
        slugs = [s.slug for s in self.strategies]
        if len(set(slugs)) != len(slugs):
            problems.append("a strategy is listed twice")
        if problems:
            raise HardnegError("; ".join(problems), fix="see `hardneg mine --help`")

    def to_dict(self) -> dict:
        return {"teacher": self.teacher.to_dict(), "strategies": [str(s) for s in self.strategies],
                "depth": self.depth, "seed": self.seed, "exports": list(self.exports),
                "short_policy": self.short_policy}


@dataclass
class Timings:
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, key: str, t0: float) -> None:
        self.seconds[key] = round(self.seconds.get(key, 0.0) + time.perf_counter() - t0, 3)


def pool_key(encoder_fp: str, dataset: Dataset, depth: int) -> str:
    qrels_fp = stable_hash(sorted((q, sorted(d.items())) for q, d in dataset.qrels.items()), n=32)
    return stable_hash({"teacher": encoder_fp, "corpus": dataset.corpus.fingerprint,
                        "queries": dataset.queries.fingerprint, "qrels": qrels_fp, "depth": depth}, n=24)


def get_pool(spec: EncoderSpec, dataset: Dataset, depth: int, cache_dir: Path | None, *, progress: bool = True,
             timings: Timings | None = None) -> CandidatePool:
    """The teacher's candidate pool for ``dataset``, from the cache when it exists."""
    timings = timings or Timings()
    t0 = time.perf_counter()
    encoder = load_encoder(spec, cache_dir)
    timings.add("load_model", t0)
    key = pool_key(encoder.fingerprint(), dataset, depth)
    folder = None if cache_dir is None else Path(cache_dir) / "pools" / key
    if folder is not None and (folder / "pool.json").is_file():
        t0 = time.perf_counter()
        try:
            pool = load_pool(folder)
            timings.add("load_pool", t0)
            log.info("candidate pool: cache hit %s", folder)
            return pool
        except HardnegError as exc:
            log.warning("candidate pool cache entry unusable (%s); rebuilding", exc)
    t0 = time.perf_counter()
    q_emb = encode_cached(encoder, dataset.queries.ids, dataset.queries.texts, "query", cache_dir, progress=progress)
    d_emb = encode_cached(encoder, dataset.corpus.ids, dataset.corpus.encoding_texts, "doc", cache_dir,
                          progress=progress)
    timings.add("encode", t0)
    t0 = time.perf_counter()
    pool = build_pool(spec.model, dataset, q_emb, d_emb, depth, progress=progress,
                      meta={"teacher_spec": spec.to_dict(), "teacher_fingerprint": encoder.fingerprint()})
    timings.add("search", t0)
    if folder is not None:
        save_pool(pool, folder)
    return pool


def mine_to_folder(pool: CandidatePool, dataset: Dataset, cfg: MineConfig, out: Path) -> dict[str, dict]:
    """Replay every strategy of ``cfg`` on ``pool`` and write ``out/<strategy slug>/`` folders atomically."""
    ensure_dir(out)
    all_stats: dict[str, dict] = {}
    for strategy in cfg.strategies:
        t0 = time.perf_counter()
        mined = apply_strategy(pool, strategy, seed=cfg.seed)
        rows = list(project_rows(mined, dataset))
        stats = mining_stats(mined, strategy.n)
        with atomic_path(out / strategy.slug, is_dir=True) as tmp:
            write_jsonl(tmp / "mined.jsonl", rows)
            stats["exports"] = write_exports(rows, tmp, strategy.n, cfg.exports, policy=cfg.short_policy,
                                             mined=mined, dataset=dataset, seed=cfg.seed)
            write_json(tmp / "stats.json", stats)
        log.debug("%s: %.3f s", strategy, time.perf_counter() - t0)
        all_stats[str(strategy)] = stats
    return all_stats


def run_mine(dataset: Dataset, cfg: MineConfig, out: Path, cache_dir: Path | None, *,
             progress: bool = True) -> dict:
    """``hardneg mine``: encode and search once, replay every strategy, write outputs and a summary."""
    if out.exists() and not out.is_dir():
        raise HardnegError("the output folder is an existing file", where=out, fix="pass a folder path for --out")
    timings = Timings()
    pool = get_pool(cfg.teacher, dataset, cfg.depth, cache_dir, progress=progress, timings=timings)
    t0 = time.perf_counter()
    stats = mine_to_folder(pool, dataset, cfg, out)
    timings.add("strategies", t0)
    summary = {"config": cfg.to_dict(), "dataset": {"name": dataset.name, "split": dataset.split,
                                                    "docs": len(dataset.corpus), "queries": len(dataset.queries)},
               "strategies": {k: {kk: vv for kk, vv in v.items() if kk != "hist"} for k, v in stats.items()}}
    write_json(out / "mine_config.json", cfg.to_dict())
    write_json(out / "summary.json", summary)
    summary["timings"] = timings.seconds  # printed, not written: wall times would break byte-identity
    return summary
