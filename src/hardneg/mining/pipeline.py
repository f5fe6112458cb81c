"""Mining end to end: dataset -> cached embeddings -> cached candidate pool(s) -> strategies -> files.

A pool is keyed by everything that determines it (teacher fingerprint, corpus, queries, qrels, depth), so
replaying any number of strategies costs one encode and one search per teacher.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hardneg.encode.backend import release_workers
from hardneg.encode.cache import dataset_embeddings
from hardneg.encode.encoder import EncoderSpec, encoder_precision, load_encoder
from hardneg.errors import HardnegError
from hardneg.io import atomic_path, ensure_dir, stable_hash, write_json, write_jsonl
from hardneg.mining.candidates import build_pool, depth_problem, effective_depth, load_pool, save_pool
from hardneg.mining.ensemble import EnsembleSpec, ensemble_mine, ensemble_rows, ensemble_stats, split_ensemble
from hardneg.mining.export import EXPORTS, PadScorer, ShortPolicy, write_exports
from hardneg.mining.select import PoolExtras, apply_strategy
from hardneg.mining.stats import mining_stats
from hardneg.mining.strategy import Strategy, parse_strategy
from hardneg.mining.treat import export_view, mined_rows
from hardneg.mining.teachers import Teacher, as_teacher, make_teacher, teacher_fingerprint
from hardneg.search.exact import score_pairs
from hardneg.search.spec import SearchSpec
from hardneg.types import CandidatePool, Dataset

log = logging.getLogger("hardneg")


@dataclass(frozen=True)
class Plan:
    """A strategy, optionally followed by a teacher ensemble: ``percpos(0.95)+topk(4)+ensemble(intra,dedup)``."""

    strategy: Strategy
    ensemble: EnsembleSpec | None = None

    def __str__(self) -> str:
        return str(self.strategy) + ("" if self.ensemble is None else f"+{self.ensemble}")

    @property
    def slug(self) -> str:
        return self.strategy.slug + ("" if self.ensemble is None else f"_{self.ensemble.slug}")

    @property
    def n(self) -> int:
        return self.strategy.n


def parse_plan(text: str) -> Plan:
    """Parse a strategy string that may carry an ``ensemble(...)`` part (see ``hardneg mine --help``)."""
    base, ens = split_ensemble(text)
    return Plan(parse_strategy(base), ens)


@dataclass(frozen=True)
class MineConfig:
    """Everything that determines a mining run's outputs (``teacher``: a ``Teacher``; a string or an
    ``EncoderSpec`` is parsed into one)."""

    teacher: Teacher
    strategies: tuple[Plan, ...]
    depth: int = 100
    seed: int = 0
    exports: tuple[str, ...] = ()
    short_policy: ShortPolicy = "drop"
    search: SearchSpec = field(default_factory=SearchSpec)

    def __post_init__(self) -> None:
        object.__setattr__(self, "teacher", as_teacher(self.teacher))
        problems = []
        if (depth_msg := depth_problem(self.depth)) is not None:
            problems.append(depth_msg)
        if not self.strategies:
            problems.append("give at least one strategy")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2 ** 32:
            problems.append(f"seed must be an integer from 0 to {2 ** 32 - 1}, got {str(self.seed)[:24]}")
        bad = [e for e in self.exports if e not in EXPORTS]
        if bad:
            problems.append(f"unknown export {', '.join(bad)} (choose from {', '.join(EXPORTS)})")
        if self.short_policy not in ("drop", "pad"):
            problems.append(f"short policy must be drop or pad, got {self.short_policy}")
        slugs = [s.slug for s in self.strategies]
        if len(set(slugs)) != len(slugs):
            problems.append("a strategy is listed twice")
        kind = self.teacher.kind
        ens = [str(p) for p in self.strategies if p.ensemble is not None]
        if ens and kind != "list":
            problems.append(f"ensemble strategies ({', '.join(ens)}) need several teachers")
        if self.short_policy == "pad" and "flag" in self.exports and kind != "single":
            problems.append("--short pad with the flag export needs one encoder teacher (the padded documents' "
                            "teacher scores are computed from its embeddings); use --short drop")
        if problems:
            raise HardnegError("; ".join(problems), fix="see `hardneg mine --help`")

    def to_dict(self) -> dict:
        out = {"teacher": self.teacher.to_dict(), "strategies": [str(s) for s in self.strategies],
               "depth": self.depth, "seed": self.seed, "exports": list(self.exports),
               "short_policy": self.short_policy}
        if self.search.identity() is not None:  # exact runs keep their old mine_config.json bytes
            out["search"] = self.search.to_dict()
        return out


@dataclass
class Timings:
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, key: str, t0: float) -> None:
        self.seconds[key] = round(self.seconds.get(key, 0.0) + time.perf_counter() - t0, 3)


def pool_key(teacher_fp: str, dataset: Dataset, depth: int, search: SearchSpec | None = None) -> str:
    """The pool's cache entry name: everything that determines it (an exact search adds nothing, so exact keys
    are those of the versions before the search backend was selectable)."""
    qrels_fp = stable_hash(sorted((q, sorted(d.items())) for q, d in dataset.qrels.items()), n=32)
    key = {"teacher": teacher_fp, "corpus": dataset.corpus.fingerprint, "queries": dataset.queries.fingerprint,
           "qrels": qrels_fp, "depth": depth}
    ident = search.identity() if search is not None else None
    return stable_hash(key if ident is None else {**key, "search": ident}, n=24)


def get_pool(teacher: Teacher | EncoderSpec | str, dataset: Dataset, depth: int, cache_dir: Path | None, *,
             progress: bool = True, timings: Timings | None = None, search: SearchSpec | None = None) -> CandidatePool:
    """The candidate pool of one teacher (an encoder or a fusion), from the cache when it exists.

    ``depth`` beyond the corpus size is clamped to it (before the cache key: equal pools, one entry). ``search``
    picks the backend (default exact); fusion teachers always search their members exactly."""
    timings = timings if timings is not None else Timings()
    asked, depth = depth, effective_depth(depth, len(dataset.corpus))
    if depth < asked:
        log.info("depth %d exceeds the corpus (%d documents): candidate pools hold %d", asked, depth, depth)
    teacher = as_teacher(teacher)
    if teacher.kind == "list":
        raise HardnegError(f'"{teacher}" lists several teachers; each has its own pool',
                           fix="use get_pools, or mine with an ensemble(...) strategy")
    if teacher.kind == "fusion" and search is not None and search.identity() is not None:
        raise HardnegError(f"fusion teacher {str(teacher)!r} searches its members exactly", where="search backend",
                           fix="use the exact backend with fusion teachers")
    t0 = time.perf_counter()
    spec = teacher.members()[0]  # a single teacher's one encoder
    encoder = load_encoder(spec, cache_dir) if teacher.kind == "single" else None
    fp = encoder.fingerprint() if encoder is not None else teacher_fingerprint(teacher, cache_dir)
    timings.add("load_model", t0)
    folder = None if cache_dir is None else Path(cache_dir) / "pools" / pool_key(fp, dataset, depth, search)
    if folder is not None and (folder / "pool.json").is_file():
        t0 = time.perf_counter()
        try:
            pool = load_pool(folder)
            timings.add("load_pool", t0)
            log.info("candidate pool of %s: cache hit %s", teacher, folder)
            return pool
        except HardnegError as exc:
            log.warning("candidate pool cache entry unusable (%s); rebuilding", exc)
    if encoder is None:  # fusion: members' pools and embeddings come from the cache
        t0 = time.perf_counter()
        pool = fusion_pool(teacher, dataset, depth, cache_dir, progress=progress, timings=timings)
        timings.add("fusion", t0)
    else:
        t0 = time.perf_counter()
        q_emb, d_emb = dataset_embeddings(encoder, dataset, cache_dir, progress=progress)
        release_workers(encoder)  # an encoder's Ray actors free their CPUs for the search
        timings.add("encode", t0)
        t0 = time.perf_counter()
        fn = None if search is None or search.identity() is None else search.search_fn(progress=progress)
        pool = build_pool(spec.model, dataset, q_emb, d_emb, depth, progress=progress,
                          search_fn=None if fn is None else (lambda q, k: fn(q, d_emb, k)),
                          meta={"teacher_spec": spec.to_dict(), "teacher_fingerprint": fp,
                                "teacher_precision": encoder_precision(encoder),
                                **({} if fn is None else {"search": search.to_dict()})})
        timings.add("search", t0)
    if folder is not None:
        save_pool(pool, folder)
    return pool


def fusion_pool(teacher: Teacher, dataset: Dataset, depth: int, cache_dir: Path | None, *,
                progress: bool = True, timings=None) -> CandidatePool:
    """Build a fusion teacher's pool from its members' (cached) pools and embeddings."""
    from hardneg.mining.fusion import FusionMember, fuse_pools

    members = []
    for spec in teacher.members():
        pool = get_pool(spec, dataset, depth, cache_dir, progress=progress, timings=timings)
        enc = load_encoder(spec, cache_dir)
        q, d = dataset_embeddings(enc, dataset, cache_dir, progress=progress)
        members.append(FusionMember.from_embeddings(spec.model, q, d, pool=pool))
    return fuse_pools(members, dataset, depth, how=teacher.how, name=str(teacher), progress=progress)


def get_pools(teacher: Teacher | EncoderSpec | str, dataset: Dataset, depth: int, cache_dir: Path | None, *,
              progress: bool = True, timings: Timings | None = None, search: SearchSpec | None = None
              ) -> list[CandidatePool]:
    """One pool per teacher (a list ``a|b`` gives several, best first)."""
    return [get_pool(t, dataset, depth, cache_dir, progress=progress, timings=timings, search=search)
            for t in as_teacher(teacher).parts()]


def teacher_pools(dataset: Dataset, teachers: list[Teacher | str] | tuple[Teacher | str, ...], depth: int,
                  cache_dir: Path | None, *, max_seq_length: int | None = None, precision: str = "fp32",
                  search: SearchSpec | None = None, progress: bool = True
                  ) -> tuple[dict[str, CandidatePool], dict[str, np.ndarray]]:
    """Per teacher (a ``Teacher``, or an alias, folder, hub id or ``fusion(...)`` read with ``max_seq_length`` and
    ``precision``; keyed by its canonical string) its candidate pool, and for a single-model teacher its query
    embeddings: the inputs of ``hardneg diagnose``."""
    from hardneg.encode.cache import encode_cached

    pools: dict[str, CandidatePool] = {}
    q_embs: dict[str, np.ndarray] = {}
    for t in teachers:
        teacher = t if isinstance(t, Teacher) else make_teacher(t, max_seq_length=max_seq_length, precision=precision)
        pools[str(teacher)] = get_pool(teacher, dataset, depth, cache_dir, progress=progress, search=search)
        if teacher.kind == "single":
            q_embs[str(teacher)] = encode_cached(load_encoder(teacher.base, cache_dir), dataset.queries.ids,
                                                 dataset.queries.texts, "query", cache_dir, progress=progress)
    return pools, q_embs


def _write_one(folder: Path, rows: list[dict], stats: dict, plan: Plan, cfg: MineConfig, pool: CandidatePool,
               dataset: Dataset, scorer: PadScorer | None = None, extras: PoolExtras | None = None) -> None:
    with atomic_path(folder, is_dir=True) as tmp:
        write_jsonl(tmp / "mined.jsonl", rows)
        # Padding in exports only needs the row layout, which every teacher's pool shares.
        mined = export_view(apply_strategy(pool, plan.strategy, seed=cfg.seed, extras=extras))
        stats["exports"] = write_exports(rows, tmp, plan.n, cfg.exports, policy=cfg.short_policy, mined=mined,
                                         dataset=dataset, seed=cfg.seed, scorer=scorer)
        write_json(tmp / "stats.json", stats)


def teacher_scorer(teacher: Teacher | EncoderSpec | str, dataset: Dataset, cache_dir: Path | None
                   ) -> PadScorer | None:
    """Real teacher scores of arbitrary (query, document) pairs, for padded export negatives: a single encoder's
    cached embeddings (read once, on first use); None for fusion and teacher lists."""
    teacher = as_teacher(teacher)
    if teacher.kind != "single":
        return None
    spec = teacher.base
    embs: list[np.ndarray] = []

    def score(q_rows: np.ndarray, d_rows: np.ndarray) -> np.ndarray:
        if not embs:
            embs.extend(dataset_embeddings(load_encoder(spec, cache_dir), dataset, cache_dir))
        return score_pairs(embs[0], embs[1], q_rows, d_rows)  # [m], as the pool scores its positives

    return score


def mine_to_folder(pools: list[CandidatePool], dataset: Dataset, cfg: MineConfig, out: Path, *,
                   manifest=None, scorer: PadScorer | None = None,
                   cache_dir: Path | None = None) -> dict[str, dict]:
    """Replay every strategy on the teachers' pools; write ``out/<strategy>/`` (one teacher or an ensemble) or
    ``out/<teacher>/<strategy>/`` (several teachers, plain strategy), each folder atomically."""
    ensure_dir(out)
    teachers = cfg.teacher.parts()
    all_stats: dict[str, dict] = {}
    extras_cache: dict[int, PoolExtras] = {}
    for plan in cfg.strategies:
        t0 = time.perf_counter()
        if plan.ensemble is not None:
            es = ensemble_mine(pools, plan.strategy, plan.ensemble, seed=cfg.seed)
            stats = ensemble_stats(es, plan.n)
            _write_one(out / plan.slug, list(ensemble_rows(es, dataset)), stats, plan, cfg, pools[0], dataset)
            all_stats[str(plan)] = stats
        else:
            for teacher, pool in zip(teachers, pools):
                name = str(teacher)
                extras = strategy_extras(pool, plan.strategy, dataset, cache_dir, extras_cache)
                mined = apply_strategy(pool, plan.strategy, seed=cfg.seed, extras=extras)
                stats = mining_stats(mined, plan.n, asked=str(plan.strategy))
                warn_short(stats, dataset, name, plan.n)
                if manifest is not None:  # an injected or thinned dataset: how many known false negatives were mined
                    from hardneg.mining.trap import known_negative_rates

                    stats.update(known_negative_rates(mined, dataset, manifest))
                folder = out / plan.slug if len(pools) == 1 else out / teacher.slug / plan.slug
                _write_one(folder, list(mined_rows(mined, dataset)), stats, plan, cfg, pool, dataset,
                           scorer if len(pools) == 1 else None, extras)
                all_stats[str(plan) if len(pools) == 1 else f"{name}: {plan}"] = stats
        log.debug("%s: %.3f s", plan, time.perf_counter() - t0)
    return all_stats


def strategy_extras(pool: CandidatePool, strategy: Strategy, dataset: Dataset, cache_dir: Path | None,
                    memo: dict[int, PoolExtras] | None = None) -> PoolExtras | None:
    """The per-pool arrays posnbr / dedup (and their judges) read, computed once per pool and run when ``memo`` is
    kept between calls (None when the strategy needs none): what ``apply_strategy(..., extras=)`` takes."""
    memo = {} if memo is None else memo
    need = strategy.needs()
    if not need:
        return None
    from hardneg.mining.neighbours import pool_extras

    have = memo.get(id(pool))
    judges = dict(getattr(have, "judge", None) or {})
    missing = {k for k in need if (k.startswith("judge:") and k[6:] not in judges)
               or (not k.startswith("judge:") and (have is None or getattr(have, k) is None))}
    if missing:
        new = pool_extras(pool, dataset, cache_dir, need=missing)
        have = PoolExtras(pos_cos=new.pos_cos if new.pos_cos is not None else getattr(have, "pos_cos", None),
                          dup=new.dup if new.dup is not None else getattr(have, "dup", None),
                          judge={**judges, **(new.judge or {})} or None)
        memo[id(pool)] = have
    return have


SHORT_WARN_SHARE = 0.05


def warn_short(stats: dict, dataset: Dataset, teacher: str, n: int) -> None:
    """One log.warning line when more than 5% of rows are short of n negatives, with the calibrate command."""
    rows, short = stats.get("rows", 0), stats.get("rows_short", 0)
    if "resolved" in stats:  # an auto threshold: the user chose the coverage
        return
    if n and rows and short > SHORT_WARN_SHARE * rows:
        st = stats.get("strategy", "")
        filt = next((k for k in ("percpos", "marginpos", "posnbr", "abs") if k in st), "percpos")
        log.warning("%s: %d of %d rows (%.1f%%) have fewer than %d negatives; choose a threshold with: hardneg "
                    "calibrate --data %s --teacher %s --filter %s --n %d --out calibrate-%s", st, short, rows,
                    100.0 * short / rows, n, dataset.name, teacher, filt, n, filt)


def run_mine(dataset: Dataset, cfg: MineConfig, out: Path, cache_dir: Path | None, *,
             progress: bool = True, manifest=None, record: dict | None = None) -> dict:
    """``hardneg mine``: encode and search once per teacher, replay every strategy, write outputs and a summary.

    ``out`` must already be claimed for ``mine`` (``hardneg.io.claim_output``) by the caller. ``record``: more
    entries of summary.json, how the run ran (e.g. ``{"encode": ...}``: not in mine_config.json, which holds what
    determines the outputs).
    """
    timings = Timings()
    pools = get_pools(cfg.teacher, dataset, cfg.depth, cache_dir, progress=progress, timings=timings,
                      search=cfg.search)
    t0 = time.perf_counter()
    scorer = teacher_scorer(cfg.teacher, dataset, cache_dir) if cfg.short_policy == "pad" and cfg.exports else None
    stats = mine_to_folder(pools, dataset, cfg, out, manifest=manifest, scorer=scorer, cache_dir=cache_dir)
    timings.add("strategies", t0)
    summary = {"config": cfg.to_dict(), "dataset": {"name": dataset.name, "split": dataset.split,
                                                    "docs": len(dataset.corpus), "queries": len(dataset.queries)},
               "strategies": {k: {kk: vv for kk, vv in v.items() if kk != "hist"} for k, v in stats.items()}}
    if cfg.teacher.base.precision != "fp32":  # what "auto" resolved to, per pool (fp32 runs keep their old bytes)
        summary["teacher_precision"] = [p.meta.get("teacher_precision", "unknown") for p in pools]
    summary.update(record or {})
    write_json(out / "mine_config.json", cfg.to_dict())
    write_json(out / "summary.json", summary)
    summary["timings"] = timings.seconds  # printed, not written: wall times would break byte-identity
    return summary
