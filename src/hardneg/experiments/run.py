"""``hardneg run``: mine -> train -> evaluate from one config; each stage is skipped when its artifacts exist.

Layout under ``[run].out``::

    config.resolved.json           the validated config, every default filled in
    stages/mine-<hash>/            mined set of the strategy (+ stats) for the train split (minus dev)
    stages/train-<hash>/           the fine-tuned sentence-transformers folder (+ train_config, loss curve)
    stages/eval-<hash>/            metrics.json, per_query.json, run.trec of one (model, split)
    results.json                   base vs fine-tuned metrics per split (byte-stable)
    timings.json                   wall time of each stage in this invocation (0 when skipped)

A stage's hash covers everything that determines its output (its own settings and its inputs' hashes), so
changing a training setting retrains without re-mining, and a killed run resumes at the unfinished stage.
"""
from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

from hardneg.data.load import load_dataset
from hardneg.data.mined import read_mined
from hardneg.data.splits import carve_dev
from hardneg.encode.encoder import EncoderSpec, load_encoder
from hardneg.encode.models import default_cache_dir
from hardneg.evaluate.pipeline import evaluate_model, write_eval
from hardneg.experiments.config import RunConfig
from hardneg.io import atomic_path, ensure_dir, read_json, stable_hash, write_json
from hardneg.mining.pipeline import MineConfig, get_pool, mine_to_folder, pool_key
from hardneg.train.trainer import train
from hardneg.types import Dataset

log = logging.getLogger("hardneg")
METRICS = ("ndcg@10", "recall@100", "mrr@10")


def dataset_id(ds: Dataset) -> dict:
    """Content identity of one split (no paths): corpus, queries and qrels fingerprints."""
    return {"name": ds.name, "split": ds.split, "corpus": ds.corpus.fingerprint, "queries": ds.queries.fingerprint,
            "qrels": stable_hash(sorted((q, sorted(d.items())) for q, d in ds.qrels.items()), n=32)}


def load_splits(cfg: RunConfig, cache_dir: Path) -> dict[str, Dataset]:
    """train (minus a carved dev), dev (carved, named, or absent) and test."""
    d = cfg.data
    train_full = load_dataset(d.path, d.train_split, cache_dir=cache_dir)
    out = {"test": load_dataset(d.path, d.test_split, cache_dir=cache_dir)}
    if isinstance(d.dev, bool):  # false: no dev split
        out["train"] = train_full
    elif isinstance(d.dev, (int, float)):
        out["train"], out["dev"] = carve_dev(train_full, float(d.dev), d.dev_seed)
    else:
        out["train"], out["dev"] = train_full, load_dataset(d.path, d.dev, cache_dir=cache_dir)
    return out


def _stage(out: Path, kind: str, spec: dict) -> tuple[Path, str]:
    h = stable_hash(spec)
    return out / "stages" / f"{kind}-{h}", h


def run_pipeline(cfg: RunConfig, *, progress: bool = True) -> dict:
    """Run (or resume) the whole pipeline; returns the results dict that is also written to results.json."""
    out = ensure_dir(Path(cfg.run.out))
    cache_dir = Path(cfg.run.cache) if cfg.run.cache else default_cache_dir()
    write_json(out / "config.resolved.json", cfg.to_dict())
    timings: dict[str, float] = {}
    splits = load_splits(cfg, cache_dir)
    strategy = cfg.mine.parsed

    # -- mine
    teacher_fp = load_encoder(cfg.teacher, cache_dir).fingerprint()
    mine_spec = {"teacher": teacher_fp, "data": dataset_id(splits["train"]), "depth": cfg.mine.depth,
                 "strategy": str(strategy), "seed": cfg.mine.seed}
    mine_dir, mine_h = _stage(out, "mine", mine_spec)
    t0 = time.perf_counter()
    if not mine_dir.is_dir():
        log.info("stage mine: %s", mine_dir.name)
        pool = get_pool(cfg.teacher, splits["train"], cfg.mine.depth, cache_dir, progress=progress)
        mcfg = MineConfig(teacher=cfg.teacher, strategies=(strategy,), depth=cfg.mine.depth, seed=cfg.mine.seed)
        with atomic_path(mine_dir, is_dir=True) as tmp:
            mine_to_folder(pool, splits["train"], mcfg, tmp)
            write_json(tmp / "spec.json", mine_spec)
    else:
        log.info("stage mine: done already (%s)", mine_dir.name)
    timings["mine"] = round(time.perf_counter() - t0, 1)
    rows = read_mined(mine_dir / strategy.slug / "mined.jsonl")

    # -- train
    tcfg = cfg.train if cfg.train.n_negatives is not None else replace(cfg.train, n_negatives=strategy.n)
    train_dir, train_h = _stage(out, "train", {"mine": mine_h, "train": tcfg.to_dict()})
    t0 = time.perf_counter()
    if not train_dir.is_dir():
        log.info("stage train: %s (%d rows)", train_dir.name, len(rows))
        train(rows, tcfg, train_dir, progress=progress)
    else:
        log.info("stage train: done already (%s)", train_dir.name)
    timings["train"] = round(time.perf_counter() - t0, 1)

    # -- evaluate base and fine-tuned student on dev (selection) and test (report)
    results: dict = {"config": cfg.to_dict(), "stages": {"mine": mine_dir.name, "train": train_dir.name},
                     "metrics": {}}
    models = {"base": tcfg.student, "finetuned": str(train_dir)}
    t0 = time.perf_counter()
    for label, model in models.items():
        spec = EncoderSpec(model=model, query_prompt=tcfg.query_prompt, doc_prompt=tcfg.doc_prompt,
                           max_seq_length=cfg.evaluate.max_seq_length, batch_size=cfg.evaluate.batch_size)
        model_fp = load_encoder(spec, cache_dir).fingerprint()
        for split in cfg.evaluate.splits:
            if split not in splits:
                continue
            ds = splits[split]
            eval_dir, _ = _stage(out, "eval", {"model": model_fp, "data": dataset_id(ds), "depth": cfg.evaluate.depth})
            if not eval_dir.is_dir():
                log.info("stage evaluate: %s on %s (%s)", label, split, eval_dir.name)
                res = evaluate_model(spec, ds, cache_dir=cache_dir, depth=cfg.evaluate.depth, progress=progress)
                write_eval(res, eval_dir, {"model": label, "split": split, "dataset": ds.name,
                                           "n_queries": len(ds.queries)})
            m = read_json(eval_dir / "metrics.json")["metrics"]
            results["metrics"].setdefault(split, {})[label] = {k: m[k] for k in sorted(m)}
            results["stages"][f"eval_{label}_{split}"] = eval_dir.name
    timings["evaluate"] = round(time.perf_counter() - t0, 1)
    write_json(out / "results.json", results)
    write_json(out / "timings.json", timings)
    results["timings"] = timings
    return results
