"""Command line: parse arguments, call the library, print tables. No logic that Python users cannot reach."""
from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table
from rich.text import Text

from hardneg.errors import HardnegError
from hardneg.mining import strategy as strategy_mod

# Wide tables even when piped to a file or CI log (rich falls back to 80 columns there).
console = Console(stderr=True, width=None if sys.stderr.isatty() else 140)
out_console = Console(width=None if sys.stdout.isatty() else 140)

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None,
                  help="hardneg: positive-aware hard-negative mining and embedding fine-tuning (NV-Retriever).")

CacheOpt = Annotated[Optional[Path], typer.Option(
    "--cache", help="Cache folder for embeddings, pools and models [default: $HARDNEG_CACHE or ~/.cache/hardneg].")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or info logs.")]


@app.callback()
def _root() -> None:
    """Positive-aware hard-negative mining and fine-tuning."""


def _setup(quiet: bool) -> None:
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s", force=True,
                        handlers=[RichHandler(console=console, show_path=False, show_time=False)])
    for noisy in ("sentence_transformers", "transformers", "datasets", "httpx", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if quiet:
        os.environ["TQDM_DISABLE"] = "1"
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except ImportError:
            pass


def _cache(cache: Path | None) -> Path:
    from hardneg.encode.models import default_cache_dir

    return cache if cache is not None else default_cache_dir()


def _verbatim(text: str) -> str:
    """Keep a docstring's layout in --help (click rewraps paragraphs unless they start with \\b); reST's
    ``literal`` and trailing ``::`` are shown as `literal` and ``:``."""
    text = re.sub(r"::$", ":", text.replace("``", "`"), flags=re.M)
    paras = [p.strip("\n") for p in text.strip().split("\n\n")]
    return "\n\n".join("\b\n" + p for p in paras if p.strip())


MINE_HELP = ("Mine hard negatives with one teacher and one or more strategies (encode and search once).\n\n"
             + _verbatim((strategy_mod.__doc__ or "").split("\n\n", 1)[1]))


@app.command(help=MINE_HELP)
def mine(
    data: Annotated[str, typer.Option(help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/), a BEIR name, a JSONL "
                                           'of pairs {"query": ..., "pos": [...]}, or hf:NAME[:SPLIT].')],
    out: Annotated[Path, typer.Option(help="Output folder: one sub-folder per strategy.")],
    strategy: Annotated[list[str], typer.Option(
        "--strategy", "-s", help='Strategy string, repeatable, e.g. "percpos(0.95)+topk(4)".')],
    split: Annotated[str, typer.Option(help="Qrels split to mine for.")] = "train",
    teacher: Annotated[list[str], typer.Option(
        help="Teacher, repeatable (best first): an alias (minilm, mpnet, minilm-int8, hash), a folder, a hub id, or "
             "fusion(a,b[,how=mean]) (sum of the members' scores). Several teachers: each gets its own pool and "
             "output folder, and ensemble strategies combine them.")] = ["minilm"],
    depth: Annotated[int, typer.Option(help="Candidates kept per query (positives excluded).")] = 100,
    seed: Annotated[int, typer.Option(help="Seed of the sampled strategies and of export padding.")] = 0,
    query_prompt: Annotated[str, typer.Option(help="Text prepended to every query.")] = "",
    doc_prompt: Annotated[str, typer.Option(help="Text prepended to every document.")] = "",
    max_seq_length: Annotated[Optional[int], typer.Option(help="Teacher truncation in tokens [default: the model's].")] = None,
    batch_size: Annotated[int, typer.Option(help="Encoding batch size.")] = 32,
    normalize: Annotated[bool, typer.Option(help="L2-normalise embeddings (scores are cosines).")] = True,
    dtype: Annotated[str, typer.Option(help="Storage dtype of cached embeddings: float32 or float16.")] = "float32",
    export: Annotated[Optional[list[str]], typer.Option(
        help="Extra formats, repeatable: st (sentence-transformers datasets folder + JSONL), flag (FlagEmbedding), "
             "triplets, or all.")] = None,
    short: Annotated[str, typer.Option(help="Exports only: rows short of n negatives are dropped (drop) or filled "
                                            "with random corpus documents (pad).")] = "drop",
    trust_remote_code: Annotated[bool, typer.Option(help="Allow a hub model's own Python code (off by default).")] = False,
    corpus: Annotated[Optional[Path], typer.Option(
        help="With a pairs file: a BEIR corpus.jsonl whose ids the pairs' pos refer to (and the documents to mine "
             "from). Without it, the pairs' own texts are the corpus.")] = None,
    cache: CacheOpt = None,
    quiet: QuietOpt = False,
) -> None:
    _setup(quiet)
    from hardneg.data.load import load_dataset
    from hardneg.encode.encoder import EncoderSpec
    from hardneg.mining.pipeline import MineConfig, run_mine

    from hardneg.mining.pipeline import parse_plan
    from hardneg.mining.teachers import parse_teacher

    strategies = tuple(parse_plan(s) for s in strategy)
    teacher_ref = "|".join(str(parse_teacher(t)) for t in teacher)
    exports = tuple(sorted({e for x in (export or []) for e in (("st", "flag", "triplets") if x == "all" else (x,))}))
    spec = EncoderSpec(model=teacher_ref, query_prompt=query_prompt, doc_prompt=doc_prompt,
                       max_seq_length=max_seq_length, batch_size=batch_size, normalize=normalize, dtype=dtype,
                       trust_remote_code=trust_remote_code)
    cfg = MineConfig(teacher=spec, strategies=strategies, depth=depth, seed=seed, exports=exports,
                     short_policy=short)  # type: ignore[arg-type]
    if out.exists() and not out.is_dir():
        raise HardnegError("the output folder is an existing file", where=out, fix="pass a folder path for --out")
    cache_dir = _cache(cache)
    dataset = load_dataset(data, split, cache_dir=cache_dir, corpus=corpus)
    from hardneg.data.inject import manifest_for

    manifest = manifest_for(data, split)
    summary = run_mine(dataset, cfg, out, cache_dir, progress=not quiet, manifest=manifest)
    _print_mine_table(summary)
    if manifest is not None:
        from hardneg.mining.trap import trap_table

        out_console.print(trap_table({k: v["traps"] for k, v in summary["strategies"].items() if "traps" in v}),
                          markup=False, highlight=False)
    console.print(f"wrote {out}  (timings, s: {summary['timings']})", markup=False)


def _print_mine_table(summary: dict) -> None:
    t = Table(title=f"mined {summary['dataset']['name']}/{summary['dataset']['split']} "
                    f"with {summary['config']['teacher']['model']}")
    for col in ("strategy", "rows", "short", "empty", "removed/row", "pos q50", "top1 neg q50", "pos-top1 q50"):
        t.add_column(col, justify="right" if col != "strategy" else "left")
    fmt = lambda d, k: "-" if d.get(k, {}).get("q50") is None else f"{d[k]['q50']:.3f}"  # noqa: E731
    for name, s in summary["strategies"].items():
        removed = sum(s.get("removed_per_row", {}).values())
        t.add_row(name, str(s["rows"]), str(s["rows_short"]), str(s["rows_empty"]), f"{removed:.1f}",
                  fmt(s, "pos_score"), fmt(s, "top1_neg_score"), fmt(s, "pos_minus_top1_neg"))
    out_console.print(t)


@app.command(help="Write a copy of a BEIR dataset with known false negatives: for a fraction of the train "
                  "(query, positive) pairs, near-copies of the positive (title dropped, sentences shuffled, "
                  "truncated) are added to the corpus, unlabelled, with a manifest (injected.json). Test qrels and "
                  "queries are copied byte for byte; evaluation on such a folder drops the injected documents. "
                  "`hardneg mine` on it reports each strategy's trap rate (docs/false-negatives.md).")
def inject(
    data: Annotated[Path, typer.Option(help="Source BEIR folder.")],
    out: Annotated[Path, typer.Option(help="Destination folder (must not exist, or be an earlier injection with "
                                           "--overwrite).")],
    rate: Annotated[float, typer.Option(help="Fraction of the split's (query, positive) pairs that get copies.")],
    split: Annotated[str, typer.Option(help="Split whose positives are copied.")] = "train",
    copies: Annotated[int, typer.Option(help="Near-copies per chosen pair.")] = 1,
    transform: Annotated[Optional[list[str]], typer.Option(
        help="Transform, repeatable: drop_title, shuffle_sentences, truncate, exact [default: the first three].")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the pair choice and the transforms.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier injection at --out.")] = False,
    quiet: QuietOpt = False,
) -> None:
    _setup(quiet)
    import json

    from hardneg.data.inject import DEFAULT_TRANSFORMS, inject_false_negatives

    man = inject_false_negatives(data, out, split=split, rate=rate, copies=copies,
                                 transforms=tuple(transform or DEFAULT_TRANSFORMS), seed=seed, overwrite=overwrite)
    out_console.print_json(json.dumps(man["stats"]))


@app.command(help="False-negative diagnostics before training: per teacher and strategy, the hidden-positive "
                  "catch rate (hide one positive of each multi-positive query, mine, count how often it comes back "
                  "as a negative), negatives that are positives of near-duplicate queries, teacher overlap "
                  "(Jaccard of top-n negatives) and score distributions. Writes diagnostics.json, diagnostics.md "
                  "and PNG histograms.")
def diagnose(
    data: Annotated[str, typer.Option(help="BEIR folder or BEIR dataset name.")],
    out: Annotated[Path, typer.Option(help="Output folder.")],
    strategy: Annotated[list[str], typer.Option("--strategy", "-s", help="Strategy, repeatable.")],
    split: Annotated[str, typer.Option(help="Qrels split.")] = "train",
    teacher: Annotated[list[str], typer.Option(help="Teacher, repeatable (alias, folder, hub id, fusion(a,b)).")] = ["minilm"],
    depth: Annotated[int, typer.Option(help="Candidates per query.")] = 100,
    seed: Annotated[int, typer.Option(help="Seed: which positive is hidden, and sampling.")] = 0,
    near_dup_threshold: Annotated[float, typer.Option(help="Query cosine at or above which two queries are "
                                                           "near-duplicates.")] = 0.95,
    max_seq_length: Annotated[Optional[int], typer.Option(help="Teacher truncation in tokens.")] = None,
    cache: CacheOpt = None,
    quiet: QuietOpt = False,
) -> None:
    _setup(quiet)
    from hardneg.data.load import load_dataset
    from hardneg.encode.cache import encode_cached
    from hardneg.encode.encoder import EncoderSpec, load_encoder
    from hardneg.mining.diagnostics import render_markdown, run_diagnostics
    from hardneg.mining.pipeline import get_pool
    from hardneg.mining.teachers import parse_teacher

    strategies = [strategy_mod.parse_strategy(s) for s in strategy]
    refs = [parse_teacher(t) for t in teacher]
    if out.exists() and not out.is_dir():
        raise HardnegError("the output folder is an existing file", where=out, fix="pass a folder path for --out")
    cache_dir = _cache(cache)
    dataset = load_dataset(data, split, cache_dir=cache_dir)
    pools, q_embs = {}, {}
    for ref in refs:
        spec = EncoderSpec(model=str(ref), max_seq_length=max_seq_length)
        pools[str(ref)] = get_pool(spec, dataset, depth, cache_dir, progress=not quiet)
        if ref.kind == "single":
            q_embs[str(ref)] = encode_cached(load_encoder(spec, cache_dir), dataset.queries.ids, dataset.queries.texts,
                                             "query", cache_dir, progress=not quiet)
    res = run_diagnostics(dataset, pools, strategies, seed=seed, q_embs=q_embs, near_dup_threshold=near_dup_threshold,
                          out=out)
    out_console.print(render_markdown(res), markup=False, highlight=False)


@app.command(help="Evaluate a model on a BEIR split with BEIR-exact metrics (pytrec_eval): nDCG@10, Recall@100, "
                  "MRR@10 and more. Exact search over the whole corpus.")
def evaluate(
    model: Annotated[str, typer.Option(help="Alias (minilm, mpnet, minilm-int8, hash), model folder or hub id.")],
    data: Annotated[str, typer.Option(help="BEIR folder or BEIR dataset name.")],
    split: Annotated[str, typer.Option(help="Qrels split; its qrels define the query set.")] = "test",
    out: Annotated[Optional[Path], typer.Option(help="Folder for metrics.json, per_query.json and run.trec.")] = None,
    query_prompt: Annotated[str, typer.Option(help="Text prepended to every query.")] = "",
    doc_prompt: Annotated[str, typer.Option(help="Text prepended to every document.")] = "",
    max_seq_length: Annotated[Optional[int], typer.Option(help="Truncation in tokens [default: the model's].")] = None,
    batch_size: Annotated[int, typer.Option(help="Encoding batch size.")] = 32,
    depth: Annotated[int, typer.Option(help="Results kept per query in the run (BEIR uses 1000).")] = 1000,
    ignore_identical_ids: Annotated[Optional[bool], typer.Option(
        help="Drop a result whose id equals the query id [default: from the dataset descriptor; on for ArguAna, "
             "Quora].")] = None,
    trust_remote_code: Annotated[bool, typer.Option(help="Allow a hub model's own Python code.")] = False,
    cache: CacheOpt = None,
    quiet: QuietOpt = False,
) -> None:
    _setup(quiet)
    from hardneg.data.load import load_eval_dataset
    from hardneg.encode.encoder import EncoderSpec
    from hardneg.evaluate.pipeline import evaluate_model, write_eval

    spec = EncoderSpec(model=model, query_prompt=query_prompt, doc_prompt=doc_prompt, max_seq_length=max_seq_length,
                       batch_size=batch_size, trust_remote_code=trust_remote_code)
    if depth < 1:
        raise HardnegError(f"depth must be >= 1, got {depth}", fix="use e.g. --depth 1000")
    if out is not None and out.exists() and not out.is_dir():
        raise HardnegError("the output folder is an existing file", where=out, fix="pass a folder path for --out")
    cache_dir = _cache(cache)
    dataset = load_eval_dataset(data, split, cache_dir=cache_dir)
    res = evaluate_model(spec, dataset, cache_dir=cache_dir, depth=depth, ignore_identical_ids=ignore_identical_ids,
                         progress=not quiet)
    if out is not None:
        write_eval(res, out, {"model": spec.to_dict(), "dataset": dataset.name, "split": split, "depth": depth})
    t = Table(title=f"{model} on {dataset.name}/{split} ({res.metrics['n_queries']} queries)")
    t.add_column("metric")
    t.add_column("value", justify="right")
    for k, v in res.metrics.items():
        if k != "n_queries":
            t.add_row(k, f"{v:.4f}")
    out_console.print(t)


@app.command(help="Fine-tune a student on a mined JSONL (the project format written by `hardneg mine`) with "
                  "contrastive InfoNCE over the positive, the hard negatives and in-batch negatives.")
def train(
    mined: Annotated[Path, typer.Option(help="mined.jsonl written by `hardneg mine`.")],
    out: Annotated[Path, typer.Option(help="Output folder: a sentence-transformers model + train_config.json + "
                                           "loss_curve.json/png.")],
    student: Annotated[str, typer.Option(help="Alias, model folder or hub id.")] = "minilm",
    n_negatives: Annotated[Optional[int], typer.Option(help="Hard negatives per row [default: the most any row has].")] = None,
    short_rows: Annotated[str, typer.Option(help="Rows short of n negatives: drop, or pad with other rows' negatives.")] = "drop",
    in_batch_negatives: Annotated[bool, typer.Option(help="Also use the other documents of the batch as negatives.")] = True,
    temperature: Annotated[float, typer.Option(help="InfoNCE temperature (scale = 1/temperature; 0.05 = scale 20).")] = 0.05,
    loss: Annotated[str, typer.Option(help="infonce, or cached_infonce (GradCache: large batches in small memory).")] = "infonce",
    mini_batch_size: Annotated[int, typer.Option(help="cached_infonce: rows per forward pass.")] = 32,
    learning_rate: Annotated[float, typer.Option(help="AdamW learning rate.")] = 2e-5,
    warmup_ratio: Annotated[float, typer.Option(help="Linear warm-up as a fraction of the steps.")] = 0.1,
    epochs: Annotated[float, typer.Option(help="Training epochs.")] = 1.0,
    max_steps: Annotated[Optional[int], typer.Option(help="Stop after this many steps (overrides epochs).")] = None,
    batch_size: Annotated[int, typer.Option(help="Queries per batch.")] = 32,
    grad_accum: Annotated[int, typer.Option(help="Gradient accumulation steps.")] = 1,
    query_max_length: Annotated[int, typer.Option(help="Query truncation in tokens.")] = 64,
    doc_max_length: Annotated[int, typer.Option(help="Document truncation in tokens.")] = 256,
    query_prompt: Annotated[str, typer.Option(help="Text prepended to queries.")] = "",
    doc_prompt: Annotated[str, typer.Option(help="Text prepended to documents.")] = "",
    seed: Annotated[int, typer.Option(help="Seed of shuffling, padding and initialisation.")] = 0,
    lora: Annotated[bool, typer.Option(help="Train LoRA adapters (peft) instead of all weights; merged on save.")] = False,
    lora_rank: Annotated[int, typer.Option(help="LoRA rank (NV-Retriever-v1: 16).")] = 16,
    lora_alpha: Annotated[int, typer.Option(help="LoRA alpha (NV-Retriever-v1: 32).")] = 32,
    report_to: Annotated[Optional[list[str]], typer.Option(help="Trainer loggers, repeatable: tensorboard, wandb, ...")] = None,
    quiet: QuietOpt = False,
) -> None:
    _setup(quiet)
    from hardneg.data.mined import read_mined
    from hardneg.train.config import TrainConfig
    from hardneg.train.trainer import train as train_fn

    cfg = TrainConfig.from_dict(dict(
        student=student, n_negatives=n_negatives, short_rows=short_rows, in_batch_negatives=in_batch_negatives,
        temperature=temperature, loss=loss, mini_batch_size=mini_batch_size, learning_rate=learning_rate,
        warmup_ratio=warmup_ratio, epochs=epochs, max_steps=max_steps, batch_size=batch_size, grad_accum=grad_accum,
        query_max_length=query_max_length, doc_max_length=doc_max_length, query_prompt=query_prompt,
        doc_prompt=doc_prompt, seed=seed, lora=lora, lora_rank=lora_rank, lora_alpha=lora_alpha,
        report_to=tuple(report_to or ())))
    if out.exists() and not out.is_dir():
        raise HardnegError("the output folder is an existing file", where=out, fix="pass a folder path for --out")
    rows = read_mined(mined)
    train_fn(rows, cfg, out, progress=not quiet)
    console.print(f"wrote {out}")


RUN_HELP = ("Mine -> train -> evaluate from one TOML config, with section.key=value overrides. Each stage is "
            "stored under a folder named by the hash of its spec and skipped when it exists, so a killed run "
            "resumes. Prints base vs fine-tuned metrics and writes results.json.")


@app.command(help=RUN_HELP + "\n\n" + _verbatim((__import__("hardneg.experiments.config", fromlist=["x"]).__doc__
                                                  or "").split("\n\n", 1)[1]))
def run(
    config: Annotated[Path, typer.Argument(help="TOML config, e.g. configs/scifact.toml.")],
    overrides: Annotated[Optional[list[str]], typer.Argument(help="section.key=value, e.g. train.epochs=2.")] = None,
    quiet: QuietOpt = False,
) -> None:
    _setup(quiet)
    import json

    from hardneg.experiments.config import load_config
    from hardneg.experiments.run import METRICS, run_pipeline

    cfg = load_config(config, list(overrides or []))
    console.print("resolved config:")
    console.print_json(json.dumps(cfg.to_dict()))
    res = run_pipeline(cfg, progress=not quiet)
    t = Table(title=f"{cfg.train.student}: base vs fine-tuned ({cfg.mine.strategy}, teacher {cfg.teacher.model})")
    t.add_column("split")
    t.add_column("metric")
    for col in ("base", "fine-tuned", "delta"):
        t.add_column(col, justify="right")
    for split, m in res["metrics"].items():
        for k in METRICS:
            b, f = m["base"][k], m["finetuned"][k]
            t.add_row(split, k, f"{b:.4f}", f"{f:.4f}", f"{f - b:+.4f}")
    out_console.print(t)
    console.print(f"results: {Path(cfg.run.out) / 'results.json'}  timings (s): {res['timings']}")


@app.command(help=_verbatim((__import__("hardneg.experiments.ablate", fromlist=["x"]).__doc__ or "")))
def ablate(
    config: Annotated[Path, typer.Argument(help="TOML: a run config plus a [grid] table.")],
    overrides: Annotated[Optional[list[str]], typer.Argument(help="section.key=value applied to the base config.")] = None,
    limit: Annotated[Optional[int], typer.Option(
        min=0, help="Run at most this many unfinished points, then stop (0: run nothing; the log says how many "
                    "are left).")] = None,
    strategy: Annotated[Optional[list[str]], typer.Option(
        help="Run only this grid strategy (repeatable); the other points stay for a later run.")] = None,
    seed: Annotated[Optional[list[int]], typer.Option(help="Run only this grid seed (repeatable).")] = None,
    quiet: QuietOpt = False,
) -> None:
    _setup(quiet)
    from hardneg.experiments.ablate import load_ablation, run_ablation

    base, grid = load_ablation(config, list(overrides or []))
    console.print(f"grid: {len(grid.points())} points ({len(grid.teachers)} teachers x {len(grid.strategies)} "
                  f"strategies x {len(grid.seeds)} seeds x {len(grid.students)} students) -> {base.run.out}")
    results = run_ablation(base, grid, progress=not quiet, limit=limit, strategies=strategy or [], seeds=seed or [])
    console.print(f"results: {results}  (make tables: hardneg report {results} --out DIR)")


@app.command(help=_verbatim((__import__("hardneg.report", fromlist=["x"]).__doc__ or "")))
def report(
    results: Annotated[Path, typer.Argument(help="results.jsonl written by `hardneg ablate`.")],
    out: Annotated[Path, typer.Option(help="Folder for the tables and figures.")],
    baseline: Annotated[str, typer.Option(help="Strategy the significance tests compare against.")] = "topk(4)",
    quiet: QuietOpt = False,
) -> None:
    _setup(quiet)
    from hardneg.mining.strategy import parse_strategy
    from hardneg.report import write_report

    files = write_report(results, out, baseline=str(parse_strategy(baseline)))
    console.print(f"wrote {', '.join(files)} to {out}")


@app.command("fn-report", help=_verbatim((__import__("hardneg.report_rates", fromlist=["x"]).__doc__ or "")))
def fn_report(
    rate: Annotated[list[str], typer.Option(help="RATE=RESULTS: an injection rate and the results.jsonl of its "
                                                 "ablation (repeat; the smallest rate is the reference).")],
    out: Annotated[Path, typer.Option(help="Folder for the table and figure.")],
    baseline: Annotated[str, typer.Option(help="Strategy the same-rate tests compare against.")] = "topk(4)",
    quiet: QuietOpt = False,
) -> None:
    _setup(quiet)
    from hardneg.mining.strategy import parse_strategy
    from hardneg.report_rates import parse_rate_args, write_rate_report

    files = write_rate_report(parse_rate_args(rate), out, baseline=str(parse_strategy(baseline)))
    console.print(f"wrote {', '.join(files)} to {out}")


@app.command(help="NV-Retriever-v1 recipe: build a decoder-LLM embedder (bidirectional attention, instruction-masked "
                  "mean pooling, LoRA), train stage 1 and stage 2, evaluate. section.key=value overrides; finished "
                  "stages are skipped. See docs/nv-retriever.md and configs/nv-retriever-v1.toml.")
def recipe(
    config: Annotated[Path, typer.Argument(help="Recipe TOML, e.g. configs/nv-retriever-v1.toml.")],
    overrides: Annotated[Optional[list[str]], typer.Argument(help="section.key=value, e.g. stage1.epochs=1.")] = None,
    quiet: QuietOpt = False,
) -> None:
    _setup(quiet)
    from hardneg.llm.recipe import load_recipe, run_recipe, summary_rows

    res = run_recipe(load_recipe(config, list(overrides or [])), progress=not quiet)
    t = Table(title="NV-Retriever-v1 recipe")
    for c in ("dataset", "model", "ndcg@10", "recall@100", "mrr@10"):
        t.add_column(c, justify="left" if c in ("dataset", "model") else "right")
    for r in summary_rows(res):
        t.add_row(r["dataset"], r["model"], *(f"{r[k]:.4f}" for k in ("ndcg@10", "recall@100", "mrr@10")))
    out_console.print(t)


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    try:
        app()
    except HardnegError as exc:
        # Text, not markup: messages quote user input such as "[train] unknown key", which rich would eat.
        console.print(Text.assemble(("error: ", "bold red"), exc.one_line()), highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
