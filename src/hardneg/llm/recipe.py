"""The NV-Retriever-v1 recipe: a decoder-LLM student trained in two stages on mined hard negatives.

    base LLM ──build──▶ embedder folder (bidirectional, mean pooling w/o instruction, L2)     stages/base-<h>/
      stage 1: retrieval data, 1 hard negative + in-batch negatives, LoRA (merged on save)     stages/stage1-<h>/
      stage 2: stage 1's weights + fresh LoRA; retrieval data (5 hard negatives + in-batch) and
               non-retrieval data (classification, clustering, STS: 5 "negatives", no in-batch)  stages/stage2-<h>/
      evaluate: base / stage1 / stage2 on BEIR splits, per-dataset instruction on queries       stages/eval-<h>/
    results.json, timings.json, config.resolved.json

One stage's training (several sources, a loss each, instruction masking) is ``hardneg.llm.stage.fit_stage``;
the TOML config is ``hardneg.llm.recipe_config``. Both are importable from here too.

A stage folder is named by the hash of everything that determines it (inputs' identities and settings), so a
re-run skips finished stages and a killed run resumes at the unfinished one: the same hashed-stage helper as
``hardneg run`` (``hardneg.experiments.stages.ensure_stage``).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hardneg.experiments.stages import ensure_stage
from hardneg.llm.decoder import instruction_prompt
from hardneg.llm.recipe_config import (
    STAGE_KEYS_NOT_TRAIN,
    DataSource,
    EvalSpec,
    MineSpec,
    RecipeConfig,
    StageSpec,
    load_recipe,
    recipe_from_dict,
)
from hardneg.llm.stage import (
    BF16_CHOICES,
    KINDS,
    SAMPLERS,
    WEIGHT_DTYPES,
    LLMTrainExtras,
    Precision,
    StageData,
    StageResult,
    fit_stage,
    kind_batch_sampler,
    resolve_precision,
)

__all__ = ["BF16_CHOICES", "KINDS", "SAMPLERS", "STAGE_KEYS_NOT_TRAIN", "WEIGHT_DTYPES", "DataSource", "EvalSpec",
           "LLMTrainExtras", "MineSpec", "Precision", "RecipeConfig", "StageData", "StageResult", "StageSpec",
           "fit_stage", "kind_batch_sampler", "load_recipe", "recipe_from_dict", "resolve_precision", "run_recipe",
           "summary_rows"]

log = logging.getLogger("hardneg")


@dataclass
class RecipeRun:
    """One invocation's state: the output and cache folders, the stage names and the seconds of what ran."""

    cfg: RecipeConfig
    out: Path
    cache_dir: Path
    progress: bool
    stages: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def run_recipe(cfg: RecipeConfig, *, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) base build -> stage 1 -> stage 2 -> evaluation; write results.json and return it.

    Returns ``{"config", "stages": {base, stage1, stage2, eval_*}, "weights": {stage: {initial, final}},
    "metrics": {dataset: {model: metrics}}, "timings"}``.
    """
    from hardneg.encode.models import default_cache_dir
    from hardneg.io import claim_output

    cache_dir = Path(cfg.cache) if cfg.cache else default_cache_dir()
    with claim_output(cfg.out, "recipe", inputs=[cache_dir, cfg.model.base], flag="recipe.out") as out:
        return _run_recipe_in(RecipeRun(cfg, out, cache_dir, progress))


def _run_recipe_in(run: RecipeRun) -> dict[str, Any]:
    from hardneg.io import read_json, write_json
    from hardneg.llm.decoder import make_decoder_student

    cfg = run.cfg
    write_json(run.out / "config.resolved.json", cfg.resolved())  # loads back with --config

    def build_base(folder: Path) -> None:
        log.info("recipe: building the embedder from %s", cfg.model.base)
        make_decoder_student(cfg.model, folder)

    base = ensure_stage(run.out, "base", cfg.model.to_dict(), build_base, marker="modules.json", atomic=False,
                        timings=run.timings)
    run.stages["base"] = base.name

    s1_data, s1_ids = _load_sources(run, cfg.stage1)
    s1_dir = _train_stage(run, "stage1", cfg.stage1, base.dir, s1_data, s1_ids)
    model_dirs = {"base": base.dir, "stage1": s1_dir}
    if cfg.stage2 is not None:
        s2_data, s2_ids = _load_sources(run, cfg.stage2)
        if cfg.stage2.include_stage1_data:
            have = {d.name for d in s2_data}
            s2_data = [d for d in s1_data if d.name not in have] + s2_data
            s2_ids = [i for d, i in zip(s1_data, s1_ids) if d.name not in have] + s2_ids
        model_dirs["stage2"] = _train_stage(run, "stage2", cfg.stage2, s1_dir, s2_data, s2_ids)

    weights = {}
    for label in ("stage1", "stage2"):
        if label in model_dirs:
            w = read_json(model_dirs[label] / "train_config.json")["weights"]
            weights[label] = {"initial": w["initial_sha256"], "final": w["final_sha256"]}

    metrics = _evaluate(run, model_dirs)
    results = {"config": cfg.to_dict(), "stages": run.stages, "weights": weights, "metrics": metrics}
    write_json(run.out / "results.json", results)
    write_json(run.out / "timings.json", run.timings)
    return {**results, "timings": run.timings}


def _load_sources(run: RecipeRun, spec: StageSpec) -> tuple[list[StageData], list[dict[str, Any]]]:
    """A stage's training data (rows per source) and each source's identity for the stage hash."""
    data, idents = [], []
    for src in spec.data:
        rows, ident = _rows_for(run, src)
        data.append(StageData(name=src.resolved_name, kind=src.kind, rows=rows,
                              instruction=src.resolved_instruction, source=str(src.mined or src.beir)))
        idents.append(ident)
    return data, idents


def _train_stage(run: RecipeRun, label: str, spec: StageSpec, student: Path, data: list[StageData],
                 idents: list[dict[str, Any]]) -> Path:
    """``stages/<label>-<hash>``: the student trained by ``fit_stage`` (hash: settings, student, sources)."""
    stage_spec = {**{k: v for k, v in spec.to_dict().items() if k != "data"}, "student": student.name,
                  "sources": idents}

    def build(folder: Path) -> None:
        log.info("recipe: %s on %d sources (%d rows)", label, len(data), sum(len(d.rows) for d in data))
        fit_stage(data, replace(spec.train, student=str(student)), spec.extras, folder, progress=run.progress)

    stage = ensure_stage(run.out, label, stage_spec, build, marker="train_config.json", atomic=False,
                         timings=run.timings)
    run.stages[label] = stage.name
    return stage.dir


def _rows_for(run: RecipeRun, src: DataSource) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The source's rows and an identity for stage hashes (mined file content, or the mine stage's hash)."""
    import numpy as np

    from hardneg.data.mined import read_mined
    from hardneg.io import sha256_file

    if src.mined is not None:
        path = Path(src.mined)
        rows = read_mined(path)
        ident: dict[str, Any] = {"mined_sha256": sha256_file(path)}
    else:
        mine_dir, slug = _mine_source(run, src)
        rows = read_mined(mine_dir / slug / "mined.jsonl")
        ident = {"mine_stage": mine_dir.name}
    if src.max_rows is not None and len(rows) > src.max_rows:
        keep = np.sort(np.random.default_rng(run.cfg.seed).choice(len(rows), size=src.max_rows, replace=False))
        rows = [rows[int(i)] for i in keep]
    ident.update({"name": src.resolved_name, "kind": src.kind, "instruction": src.resolved_instruction,
                  "max_rows": src.max_rows})
    return rows, ident


def _mine_source(run: RecipeRun, src: DataSource) -> tuple[Path, str]:
    """``stages/mine-<hash>``: the source's BEIR split mined with ``[mine]`` (hash: teacher, data, strategy)."""
    from hardneg.data.load import load_dataset
    from hardneg.experiments.run import dataset_id
    from hardneg.io import write_json
    from hardneg.mining.pipeline import MineConfig, get_pools, mine_to_folder, parse_plan
    from hardneg.mining.teachers import as_teacher, teacher_fingerprint

    mine = run.cfg.mine
    assert mine is not None and src.beir is not None
    plan = parse_plan(mine.strategy)
    ds = load_dataset(src.beir, src.split, cache_dir=run.cache_dir)
    # E5-Mistral-style teachers take the task instruction in their query prompt: "{instruction}" is filled in.
    teacher = as_teacher(replace(mine.teacher, query_prompt=mine.teacher.query_prompt.replace(
        "{instruction}", src.resolved_instruction)))
    spec = {"teacher": teacher_fingerprint(teacher, run.cache_dir), "data": dataset_id(ds),
            "depth": mine.depth, "strategy": str(plan), "seed": mine.seed}

    def build(tmp: Path) -> None:
        log.info("recipe: mining %s (%s) with %s", src.resolved_name, src.split, plan)
        pools = get_pools(teacher, ds, mine.depth, run.cache_dir, progress=run.progress)
        mcfg = MineConfig(teacher=teacher, strategies=(plan,), depth=mine.depth, seed=mine.seed)
        mine_to_folder(pools, ds, mcfg, tmp)
        write_json(tmp / "spec.json", spec)

    stage = ensure_stage(run.out, "mine", spec, build, timings=run.timings, timing_key=f"mine_{src.resolved_name}")
    return stage.dir, plan.slug


def _evaluate(run: RecipeRun, model_dirs: dict[str, Path]) -> dict[str, dict[str, dict[str, float]]]:
    """``stages/eval-<hash>`` per (dataset, model): metrics with the dataset's instruction on the queries."""
    from hardneg.data.descriptors import descriptor_for
    from hardneg.data.load import load_dataset
    from hardneg.encode.encoder import folder_identity
    from hardneg.io import read_json

    ev = run.cfg.evaluate
    identities = {label: folder_identity(d, run.cache_dir) for label, d in model_dirs.items()}
    metrics: dict[str, dict[str, dict[str, float]]] = {}
    for data in ev.datasets:
        split = ev.splits.get(Path(data).name, ev.split)
        ds = load_dataset(data, split, cache_dir=run.cache_dir)
        name = ds.name or Path(data).name
        instruction = ev.instructions.get(name, descriptor_for(name).instruction)
        for label in ev.models:
            if label not in model_dirs:
                continue
            eval_dir = _eval_stage(run, label, model_dirs[label], identities[label], ds, (name, split), instruction)
            m = read_json(eval_dir / "metrics.json")["metrics"]
            metrics.setdefault(name, {})[label] = {k: m[k] for k in sorted(m)}
            run.stages[f"eval_{label}_{name}"] = eval_dir.name
    return metrics


def _eval_stage(run: RecipeRun, label: str, model_dir: Path, identity: Any, ds: Any, where: tuple[str, str],
                instruction: str) -> Path:
    """One model on one dataset (``where`` = (dataset name, split)), its queries prompted with ``instruction``."""
    from hardneg.encode.encoder import EncoderSpec
    from hardneg.evaluate.pipeline import evaluate_model, write_eval
    from hardneg.experiments.run import dataset_id

    ev, (name, split) = run.cfg.evaluate, where
    spec = EncoderSpec(model=str(model_dir), query_prompt=instruction_prompt(instruction),
                       doc_prompt=run.cfg.stage1.train.doc_prompt, max_seq_length=ev.max_seq_length,
                       batch_size=ev.batch_size)
    key = {"model": identity, "spec": {**spec.to_dict(), "model": None}, "data": dataset_id(ds), "depth": ev.depth}

    def build(folder: Path) -> None:
        log.info("recipe: evaluating %s on %s/%s", label, name, split)
        r = evaluate_model(spec, ds, cache_dir=run.cache_dir, depth=ev.depth, progress=run.progress)
        write_eval(r, folder, {"model": label, "dataset": name, "split": split,
                               "query_prompt": spec.query_prompt, "n_queries": len(ds.queries)})

    return ensure_stage(run.out, "eval", key, build, atomic=False, timings=run.timings,
                        timing_key=f"evaluate_{label}_{name}").dir


def summary_rows(results: dict[str, Any], metrics: Sequence[str] = ("ndcg@10", "recall@100", "mrr@10")
                 ) -> list[dict[str, Any]]:
    """``results["metrics"]`` flattened for a table: one row per (dataset, model) with the given metrics."""
    return [{"dataset": ds, "model": label, **{k: m.get(k) for k in metrics}}
            for ds, by_model in results["metrics"].items() for label, m in by_model.items()]
