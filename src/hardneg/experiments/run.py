"""``hardneg run``: mine -> train -> evaluate from one config; each stage is skipped when its artifacts exist.

Layout under ``[run].out``::

    config.resolved.json           the validated config, every default filled in
    stages/mine-<hash>/            mined set of the strategy (+ stats) for the train split (minus dev)
    stages/train-<hash>/           the fine-tuned sentence-transformers folder (+ train_config, loss curve)
    stages/eval-<hash>/            metrics.json, per_query.json, run.trec of one (model, split)
    results.json                   base vs fine-tuned metrics per split (byte-stable)
    timings.json                   wall time of each stage run in this invocation (skipped stages are absent,
                                   except train_earlier: the training seconds a skipped train stage recorded)

A stage's hash covers everything that determines its output (its own settings and its inputs' hashes), so
changing a training setting retrains without re-mining, and a killed run resumes at the unfinished stage
(``hardneg.experiments.stages.ensure_stage``, shared with ``hardneg ablate`` and ``hardneg recipe``).
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field, replace
from typing import Any
from pathlib import Path

from hardneg.data.inject import manifest_for
from hardneg.data.thin import hidden_for
from hardneg.data.load import descriptor_of, load_dataset, load_eval_dataset, strip_if_injected
from hardneg.data.mined import read_mined
from hardneg.data.splits import carve_dev
from hardneg.encode.encoder import EncoderSpec, load_encoder
from hardneg.encode.models import default_cache_dir
from hardneg.evaluate.pipeline import evaluate_model, write_eval
from hardneg.experiments.config import RunConfig, nondefault
from hardneg.experiments.stages import ensure_stage, stage_dir
from hardneg.io import claim_output, read_json, stable_hash, write_json
from hardneg.errors import HardnegError
from hardneg.mining.pipeline import MineConfig, Timings, get_pools, mine_to_folder, strategy_extras
from hardneg.mining.select import apply_strategy
from hardneg.mining.teachers import Teacher, as_teacher, teacher_fingerprint
from hardneg.mining.trap import known_negative_rates
from hardneg.train.config import TrainConfig
from hardneg.train.trainer import train
from hardneg.types import Dataset

log = logging.getLogger("hardneg")
METRICS = ("ndcg@10", "recall@100", "mrr@10", "judged@10")  # the summary table `hardneg run` prints


def dataset_id(ds: Dataset) -> dict:
    """Content identity of one split (no paths): corpus, queries and qrels fingerprints."""
    return {"name": ds.name, "split": ds.split, "corpus": ds.corpus.fingerprint, "queries": ds.queries.fingerprint,
            "qrels": stable_hash(sorted((q, sorted(d.items())) for q, d in ds.qrels.items()), n=32)}


def load_splits(cfg: RunConfig, cache_dir: Path) -> dict[str, Dataset]:
    """train (minus a carved dev), dev (carved, named, or absent) and test."""
    d = cfg.data
    train_full = load_dataset(d.path, d.train_split, cache_dir=cache_dir)
    out = {"test": load_eval_dataset(d.path, d.test_split, cache_dir=cache_dir)}
    if isinstance(d.dev, bool):  # false: no dev split
        out["train"] = train_full
    elif isinstance(d.dev, (int, float)):
        out["train"], dev = carve_dev(train_full, float(d.dev), d.dev_seed)
        out["dev"] = strip_if_injected(d.path, dev)
    else:
        out["train"], out["dev"] = train_full, load_eval_dataset(d.path, d.dev, cache_dir=cache_dir)
    return out


@dataclass
class Context:
    """What several runs in one process share: the cache folder, loaded splits, model fingerprints."""

    cache_dir: Path
    splits: dict[str, Dataset]
    progress: bool = True
    _fingerprints: dict[Teacher | EncoderSpec, str] = field(default_factory=dict)

    def fingerprint(self, model: Teacher | EncoderSpec) -> str:
        """Identity of a mining teacher (a ``Teacher``: its ``auto`` is fp32) or of one encoder as given (an
        ``EncoderSpec``, e.g. an evaluated model, whose ``auto`` resolves like its encodes do)."""
        if model not in self._fingerprints:
            self._fingerprints[model] = teacher_fingerprint(model, self.cache_dir) if isinstance(model, Teacher) \
                else load_encoder(model, self.cache_dir).fingerprint()
        return self._fingerprints[model]


def execute(cfg: RunConfig, out: Path, ctx: Context) -> dict:
    """Run (or resume) mine -> train -> evaluate for ``cfg`` with stages under ``out/stages``.

    Returns {"stages", "metrics": {split: {base|finetuned: metrics}}, "per_query", "mining", "timings"}.
    """
    timings: dict[str, float] = {}
    strategy = cfg.mine.parsed
    mine_dir = mine_stage(cfg, out, ctx, timings)
    tcfg, train_dir = train_stage(cfg, out, ctx, mine_dir, timings)
    res: dict = {"stages": {"mine": mine_dir.name, "train": train_dir.name}, "metrics": {}, "per_query": {},
                 "mining": read_json(mine_dir / strategy.slug / "stats.json")}
    res["mining"].update(known_negative_stats(cfg, ctx, strategy))
    evaluate_stages(cfg, out, ctx, tcfg, train_dir, res, timings)
    res["timings"] = timings
    return res


def mine_stage(cfg: RunConfig, out: Path, ctx: Context, timings: dict[str, float]) -> Path:
    """The mined set of ``cfg``'s strategy on the train split (``stages/mine-<hash>``)."""
    splits, strategy = ctx.splits, cfg.mine.parsed
    teacher = as_teacher(cfg.teacher)  # the [teacher] table stays an EncoderSpec: run identities are unchanged
    backend = cfg.search.identity()  # None for exact: exact stage keys are unchanged
    mine_spec = {"teacher": ctx.fingerprint(teacher), "data": dataset_id(splits["train"]),
                 "depth": cfg.mine.depth, "strategy": str(strategy), "seed": cfg.mine.seed,
                 **({} if backend is None else {"search": backend})}

    def build(tmp: Path) -> None:
        log.info("stage mine: %s (%s)", stage_dir(out, "mine", mine_spec).name, strategy)
        if teacher.kind == "list" and strategy.ensemble is None:
            raise HardnegError(f'teacher "{teacher}" lists several teachers but strategy "{strategy}" '
                               "has no ensemble", fix="append +ensemble(intra,no-dedup) (or cross, intra,dedup)")
        pool_t = Timings()
        pools = get_pools(teacher, splits["train"], cfg.mine.depth, ctx.cache_dir, progress=ctx.progress,
                          timings=pool_t, search=cfg.search)
        timings.update({f"mine_{k}": v for k, v in pool_t.seconds.items()})
        mcfg = MineConfig(teacher=teacher, strategies=(strategy,), depth=cfg.mine.depth, seed=cfg.mine.seed)
        mine_to_folder(pools, splits["train"], mcfg, tmp, cache_dir=ctx.cache_dir)
        write_json(tmp / "spec.json", mine_spec)

    return ensure_stage(out, "mine", mine_spec, build, timings=timings).dir


def train_stage(cfg: RunConfig, out: Path, ctx: Context, mine_dir: Path, timings: dict[str, float]
                ) -> tuple[TrainConfig, Path]:
    """The fine-tuned student on the mined rows (``stages/train-<hash>``) and the training config it used."""
    strategy = cfg.mine.parsed
    tcfg = cfg.train if cfg.train.n_negatives is not None else replace(cfg.train, n_negatives=strategy.n)
    if "{instruction}" in tcfg.query_prompt:  # per-dataset task instruction (NV-Retriever / E5-Mistral style)
        tcfg = replace(tcfg, query_prompt=tcfg.query_prompt.replace(
            "{instruction}", descriptor_of(ctx.splits["train"]).instruction))

    def build(folder: Path) -> None:
        rows = read_mined(mine_dir / strategy.slug / "mined.jsonl")
        log.info("stage train: %s (%d rows, %s)", folder.name, len(rows), strategy)
        train(rows, tcfg, folder, progress=ctx.progress)

    stage = ensure_stage(out, "train", {"mine": mine_dir.name, "train": nondefault(tcfg)}, build, atomic=False,
                         timings=timings)
    if not stage.ran:  # trained by an earlier (maybe killed) invocation: keep its cost visible to the cost report.
        # The stage recorded its training loop's seconds (model loading and saving add ~1 s on MiniLM).
        earlier = read_json(stage.dir / "train_config.json").get("result", {}).get("train_seconds")
        if earlier is not None:
            timings["train_earlier"] = round(earlier, 1)
    return tcfg, stage.dir


def evaluate_stages(cfg: RunConfig, out: Path, ctx: Context, tcfg: TrainConfig, train_dir: Path, res: dict,
                    timings: dict[str, float]) -> None:
    """Base and fine-tuned student on dev (selection) and test (report): one ``stages/eval-<hash>`` each, read
    into ``res["metrics"]``, ``res["per_query"]`` and ``res["stages"]``."""
    for label, model in (("base", tcfg.student), ("finetuned", str(train_dir))):
        spec = EncoderSpec(model=model, query_prompt=tcfg.query_prompt, doc_prompt=tcfg.doc_prompt,
                           max_seq_length=cfg.evaluate.max_seq_length, batch_size=cfg.evaluate.batch_size,
                           precision=cfg.evaluate.precision)
        for split in cfg.evaluate.splits:
            if split not in ctx.splits:
                continue
            eval_dir = eval_stage(cfg, out, ctx, spec, label, split, timings)
            m = read_json(eval_dir / "metrics.json")["metrics"]
            res["metrics"].setdefault(split, {})[label] = {k: m[k] for k in sorted(m)}
            res["per_query"].setdefault(split, {})[label] = read_json(eval_dir / "per_query.json")
            res["stages"][f"eval_{label}_{split}"] = eval_dir.name


def eval_stage(cfg: RunConfig, out: Path, ctx: Context, spec: EncoderSpec, label: str, split: str,
               timings: dict[str, float]) -> Path:
    """Metrics, per-query scores and the run of one (model, split) (``stages/eval-<hash>``)."""
    ds, key, backend = ctx.splits[split], f"evaluate_{label}_{split}", cfg.search.identity()
    eval_spec = {"model": ctx.fingerprint(spec), "data": dataset_id(ds), "depth": cfg.evaluate.depth,
                 **({} if backend is None else {"search": backend})}

    def build(folder: Path) -> None:
        log.info("stage evaluate: %s on %s (%s)", label, split, folder.name)
        r = evaluate_model(spec, ds, cache_dir=ctx.cache_dir, depth=cfg.evaluate.depth, progress=ctx.progress,
                           search=cfg.search)
        write_eval(r, folder, {"model": label, "split": split, "dataset": ds.name, "n_queries": len(ds.queries)})
        timings.update({f"{key}_{k}": v for k, v in r.seconds.items()})

    return ensure_stage(out, "eval", eval_spec, build, atomic=False, timings=timings, timing_key=key).dir


def known_negative_stats(cfg: RunConfig, ctx: Context, strategy) -> dict:
    """``{"traps": ...}`` on a ``hardneg inject`` copy, ``{"hidden": ...}`` on a ``hardneg thin`` copy whose
    manifest is for the train split (``hardneg.mining.trap.known_negative_rates``); ``{}`` otherwise and for
    ensembles. Replayed from the cached pool (milliseconds) rather than stored by the hashed mine stage, so every
    record gets them, including records of mine stages written before this measurement was recorded."""
    if strategy.ensemble is not None:
        return {}
    manifest = manifest_for(cfg.data.path, cfg.data.train_split) or hidden_for(cfg.data.path, cfg.data.train_split)
    if manifest is None:
        return {}
    pools = get_pools(as_teacher(cfg.teacher), ctx.splits["train"], cfg.mine.depth, ctx.cache_dir, progress=False,
                      search=cfg.search)
    extras = strategy_extras(pools[0], strategy.strategy, ctx.splits["train"], ctx.cache_dir)  # posnbr, dedup
    mined = apply_strategy(pools[0], strategy.strategy, seed=cfg.mine.seed, extras=extras)
    return known_negative_rates(mined, ctx.splits["train"], manifest)


def encoding(cfg: RunConfig) -> Any:
    """The block in which the run's encoders run where ``[encode]`` says (local: nothing changes, no Ray import)."""
    if cfg.encode.is_local:
        return contextlib.nullcontext()
    from hardneg.scale import encoding as on_backend

    return on_backend(cfg.encode)


def run_pipeline(cfg: RunConfig, *, progress: bool = True) -> dict:
    """``hardneg run``: execute the stages and write config.resolved.json, results.json and timings.json."""
    cache_dir = Path(cfg.run.cache).expanduser() if cfg.run.cache else default_cache_dir()
    with claim_output(cfg.run.out, "run", inputs=run_inputs(cfg, cache_dir), flag="run.out") as out, \
            encoding(cfg):
        write_json(out / "config.resolved.json", cfg.to_dict())
        ctx = Context(cache_dir=cache_dir, splits=load_splits(cfg, cache_dir), progress=progress)
        res = execute(cfg, out, ctx)
        results = {"config": cfg.to_dict(), "stages": res["stages"], "metrics": res["metrics"]}
        write_json(out / "results.json", results)
        write_json(out / "timings.json", res["timings"])
    return {**results, "timings": res["timings"]}


def run_inputs(cfg: RunConfig, cache_dir: Path) -> list[str | Path]:
    """What a run reads (the output folder must not be, contain or lie inside any): data, cache, models."""
    return [cfg.data.path, cache_dir, cfg.teacher.model, cfg.train.student]
