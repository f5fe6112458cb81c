"""Command line: parse arguments, call the library, print tables. No logic that Python users cannot reach."""
from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table
from rich.text import Text

from hardneg.errors import HardnegError
from hardneg.io import claim_output
from hardneg.mining import strategy as strategy_mod

# Wide tables even when piped to a file or CI log (rich falls back to 80 columns there).
console = Console(stderr=True, width=None if sys.stderr.isatty() else 140)
out_console = Console(width=None if sys.stdout.isatty() else 140)

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None,
                  help="hardneg: positive-aware hard-negative mining and embedding fine-tuning (NV-Retriever).")

CacheOpt = Annotated[Optional[Path], typer.Option(
    "--cache", help="Cache folder for embeddings, pools and models [default: $HARDNEG_CACHE or ~/.cache/hardneg].")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")]
SearchOpt = Annotated[str, typer.Option(
    "--search", help="Search backend: exact (default), faiss-flat (also exact), faiss-ivf[:nlist=N,nprobe=N], "
                     "faiss-hnsw[:hnsw_m=N,ef_search=N] (approximate: check recall first, docs/scale.md) or "
                     "ray[:ray_address=ADDR] (exact, sharded over a Ray cluster; none starts a local one).")]
PrecisionOpt = Annotated[str, typer.Option(
    help="Encoder compute precision: fp32 (exact), bf16 (CPUs with avx512_bf16/amx_bf16 or a bf16 GPU: ~2.4x "
         "faster, cosine to fp32 >= 0.99997) or auto (bf16 where native and its fidelity probe passes, else fp32).")]


@app.callback()
def _root() -> None:
    """Positive-aware hard-negative mining and fine-tuning."""


def _setup(quiet: bool) -> None:
    """Logging and progress for one command; ``-q`` leaves nothing on either stream but an error line."""
    logging.basicConfig(level=logging.ERROR if quiet else logging.INFO, format="%(message)s", force=True,
                        handlers=[RichHandler(console=console, show_path=False, show_time=False)])
    for noisy in ("sentence_transformers", "transformers", "datasets", "httpx", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.ERROR if quiet else logging.WARNING)
    console.quiet = out_console.quiet = quiet
    if quiet:
        warnings.simplefilter("ignore")
        # Read by tqdm when a bar is created (hardneg, sentence-transformers, transformers' Trainer).
        os.environ["TQDM_DISABLE"] = "1"
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        os.environ["TRANSFORMERS_VERBOSITY"] = "error"
        for mod, fn in (("transformers.utils.logging", "disable_progress_bar"),
                        ("datasets.utils.logging", "disable_progress_bar"),
                        ("huggingface_hub.utils", "disable_progress_bars")):
            if mod.split(".")[0] in sys.modules:  # only libraries already imported: no import cost for -q
                getattr(__import__(mod, fromlist=[fn]), fn)()


def _search(text: str):
    """The ``--search`` value as a SearchSpec (imported here: the search package loads torch)."""
    from hardneg.search.spec import SearchSpec

    return SearchSpec.parse(text)


def _inputs(*values: object) -> list[Path]:
    """The values that name existing files or folders (a hub id or a dataset name is not an input path)."""
    return [Path(v).expanduser() for v in values
            if isinstance(v, (str, Path)) and str(v) and Path(v).expanduser().exists()]


def _cache(cache: Path | None) -> Path:
    from hardneg.encode.models import default_cache_dir

    return cache if cache is not None else default_cache_dir()


def _doc(module: str) -> str:
    """A module's docstring read from its source, without importing it (``--help`` must not load torch)."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec(module)
    source = Path(spec.origin).read_text(encoding="utf-8") if spec and spec.origin else ""
    return ast.get_docstring(ast.parse(source)) or ""


def _verbatim(text: str) -> str:
    """Keep a docstring's layout in --help (click rewraps paragraphs unless they start with \\b); reST's
    ``literal`` and trailing ``::`` are shown as `literal` and ``:``."""
    text = re.sub(r"::$", ":", text.replace("``", "`"), flags=re.M)
    paras = [p.strip("\n") for p in text.strip().split("\n\n")]
    return "\n\n".join("\b\n" + p for p in paras if p.strip())


MINE_HELP = ("Mine hard negatives with one teacher and one or more strategies (encode and search once).\n\n"
             + _verbatim(_doc("hardneg.mining.strategy").split("\n\n", 1)[1]))


@app.command(help=MINE_HELP)
def mine(
    data: Annotated[str, typer.Option(help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/), a BEIR name, a JSONL "
                                           'of pairs {"query": ..., "pos": [...]}, or hf:NAME[:SPLIT].')],
    out: Annotated[Path, typer.Option(help="Output folder: one sub-folder per strategy.")],
    strategy: Annotated[list[str], typer.Option(
        "--strategy", "-s", help='Strategy string, repeatable, e.g. "percpos(0.95)+topk(4)".')],
    split: Annotated[str, typer.Option(help="Qrels split to mine for.")] = "train",
    teacher: Annotated[list[str], typer.Option(
        help="Teacher, repeatable (best first): an alias (minilm, mpnet, minilm-int8; hash is a test-only fake), a folder, a hub id, or "
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
    precision: PrecisionOpt = "fp32",
    search: SearchOpt = "exact",
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
                       trust_remote_code=trust_remote_code, precision=precision)
    cfg = MineConfig(teacher=spec, strategies=strategies, depth=depth, seed=seed, exports=exports,
                     short_policy=short, search=_search(search))  # type: ignore[arg-type]
    cache_dir = _cache(cache)
    with claim_output(out, "mine", inputs=_inputs(data, corpus, cache_dir, *teacher)):
        dataset = load_dataset(data, split, cache_dir=cache_dir, corpus=corpus)
        from hardneg.data.inject import manifest_for
        from hardneg.data.thin import hidden_for

        manifest = manifest_for(data, split) or hidden_for(data, split)
        summary = run_mine(dataset, cfg, out, cache_dir, progress=not quiet, manifest=manifest)
    _print_mine_table(summary)
    if manifest is not None:
        from hardneg.mining.trap import hidden_table, trap_table

        for key, table in (("traps", trap_table), ("hidden", hidden_table)):
            rates = {k: v[key] for k, v in summary["strategies"].items() if key in v}
            if rates:
                out_console.print(table(rates), markup=False, highlight=False)
    console.print(f"wrote {out}  (timings, s: {summary['timings']}); look at the negatives: hardneg browse {out} "
                  f"--out browse.html --data {data}", markup=False)


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


@app.command(help="Write a copy of a BEIR dataset with thinned labels: per query of the split, keep K positives "
                  "(highest grade first, equal grades in a seeded order; or --order random) and move the others to "
                  "hidden.json: they stay in the corpus, unlabelled, as known false negatives. Every other file (the "
                  "test split included) is copied byte for byte, and judgements of grade 0 stay. Evaluation on such "
                  "a folder puts the hidden positives back; `hardneg mine` on it reports each strategy's "
                  "hidden-positive recall.\n\nExample: hardneg thin --data ../shared/data/nfcorpus --out nfcorpus-k1 "
                  "--keep 1")
def thin(
    data: Annotated[Path, typer.Option(help="Source BEIR folder.")],
    out: Annotated[Path, typer.Option(help="Destination folder (must not exist, or be an earlier thinned folder with "
                                           "--overwrite).")],
    keep: Annotated[int, typer.Option(help="Positives kept per query (K >= 1).")],
    order: Annotated[str, typer.Option(help="Which positives are kept: grade (highest grade first, ties in a seeded "
                                            "order) or random (a seeded order).")] = "grade",
    seed: Annotated[int, typer.Option(help="Seed of the order among equal grades (or of the random order).")] = 0,
    split: Annotated[str, typer.Option(help="Split whose positives are thinned.")] = "train",
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier thinned folder at --out.")] = False,
    quiet: QuietOpt = False,
) -> None:
    _setup(quiet)
    import json

    from hardneg.data.thin import thin_dataset

    man = thin_dataset(data, out, keep=keep, order=order, seed=seed, split=split, overwrite=overwrite)
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
    precision: PrecisionOpt = "fp32",
    search: SearchOpt = "exact",
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
    backend = _search(search)
    cache_dir = _cache(cache)
    with claim_output(out, "diagnose", inputs=_inputs(data, cache_dir, *teacher)):
        dataset = load_dataset(data, split, cache_dir=cache_dir)
        pools, q_embs = {}, {}
        for ref in refs:
            spec = EncoderSpec(model=str(ref), max_seq_length=max_seq_length, precision=precision)
            pools[str(ref)] = get_pool(spec, dataset, depth, cache_dir, progress=not quiet, search=backend)
            if ref.kind == "single":
                q_embs[str(ref)] = encode_cached(load_encoder(spec, cache_dir), dataset.queries.ids,
                                                 dataset.queries.texts, "query", cache_dir, progress=not quiet)
        res = run_diagnostics(dataset, pools, strategies, seed=seed, q_embs=q_embs,
                              near_dup_threshold=near_dup_threshold, out=out)
    out_console.print(render_markdown(res), markup=False, highlight=False)


@app.command(help=_verbatim(_doc("hardneg.mining.audit")))
def audit(
    mined: Annotated[Path, typer.Argument(
        help="A mined set: hardneg mined.jsonl or a `hardneg mine --out` folder, a sentence-transformers dataset "
             "(save_to_disk folder or JSONL; triplet, n-tuple, labeled-pair, labeled-list) or a FlagEmbedding JSONL "
             "(query, pos, neg).")],
    data: Annotated[str, typer.Option(help="The BEIR folder (or name) the set was mined from.")],
    out: Annotated[Path, typer.Option(help="Folder for audit.jsonl (one line per flagged negative) and audit.json.")],
    split: Annotated[str, typer.Option(help="Qrels split of --data.")] = "train",
    teacher: Annotated[Optional[str], typer.Option(
        help="Teacher for the near_copy and suspected_fn checks [default: the one in a mine_config.json beside "
             "MINED; without one those checks are skipped].")] = None,
    n: Annotated[Optional[int], typer.Option(
        "--n", help="Negatives of a full row [default: the most any row has].")] = None,
    tau: Annotated[float, typer.Option(help="near_copy: doc-doc cosine to a positive at or above which a negative is "
                                            "a near copy.")] = 0.95,
    fail_on: Annotated[Optional[str], typer.Option(
        help="Comma-separated reasons that make the command exit 1 when found, e.g. "
             "labelled_positive,near_copy.")] = None,
    fix: Annotated[Optional[Path], typer.Option(
        help="Write a cleaned copy to this folder: flagged negatives dropped, refilled from the teacher's cached "
             "candidate pool when there is one.")] = None,
    depth: Annotated[int, typer.Option(help="--fix: depth of the candidate pool to refill from.")] = 100,
    cache: CacheOpt = None,
    quiet: QuietOpt = False,
) -> None:
    _setup(quiet)
    from hardneg.mining.audit import run_audit

    cache_dir = _cache(cache)
    with contextlib.ExitStack() as stack:
        stack.enter_context(claim_output(out, "audit", inputs=_inputs(mined, data, cache_dir)))
        if fix is not None:
            stack.enter_context(claim_output(fix, "audit", inputs=_inputs(mined, data, cache_dir, out), flag="--fix"))
        res = run_audit(mined, data, out, split=split, teacher=teacher, cache_dir=cache_dir, n=n, tau=tau,
                        fail_on=[fail_on] if fail_on else [], fix=fix, depth=depth)
    out_console.print(res["table"], markup=False, highlight=False)
    cleaned = f"; cleaned copy: {res['fix']['file']}" if fix is not None else ""
    console.print(f"wrote {out / 'audit.jsonl'} and {out / 'audit.json'}{cleaned}; see them: hardneg browse {mined} "
                  f"--out browse.html --audit {out / 'audit.jsonl'}", markup=False)
    if res["failed"]:
        found = [k for k in res["fail_on"] if res["counts"][k]]
        console.print("audit failed (--fail-on): " + ", ".join(f"{k} x{res['counts'][k]:,}" for k in found),
                      markup=False)
        raise typer.Exit(1)


@app.command(help=_verbatim(_doc("hardneg.mining.calibrate")))
def calibrate(
    data: Annotated[str, typer.Option(help="BEIR folder or BEIR dataset name (a `hardneg inject` folder adds trap "
                                           "recall).")],
    out: Annotated[Path, typer.Option(help="Folder for calibrate.md, .csv, .json and .png.")],
    filter: Annotated[str, typer.Option("--filter", help="Filter to sweep: percpos, marginpos, abs or posnbr.")],
    teacher: Annotated[str, typer.Option(help="Teacher (alias, folder, hub id, fusion(a,b)); its pool is read from "
                                              "the cache when `hardneg mine` built it.")] = "minilm",
    n: Annotated[int, typer.Option("--n", help="Negatives per row the strategy asks for (topk(n)).")] = 4,
    split: Annotated[str, typer.Option(help="Qrels split.")] = "train",
    depth: Annotated[int, typer.Option(help="Candidates per query (as mined).")] = 100,
    max_seq_length: Annotated[Optional[int], typer.Option(help="Teacher truncation in tokens (as mined).")] = None,
    ref: Annotated[str, typer.Option(help="Positive reference of percpos / marginpos: min (default), max, mean or "
                                          "row (each row's own positive).")] = "min",
    precision: PrecisionOpt = "fp32",
    cache: CacheOpt = None,
    quiet: QuietOpt = False,
) -> None:
    _setup(quiet)
    from hardneg.encode.encoder import EncoderSpec
    from hardneg.mining.calibrate import run_calibrate
    from hardneg.mining.teachers import parse_teacher

    spec = EncoderSpec(model=str(parse_teacher(teacher)), max_seq_length=max_seq_length, precision=precision)
    cache_dir = _cache(cache)
    with claim_output(out, "calibrate", inputs=_inputs(data, cache_dir, teacher)):
        res = run_calibrate(data, spec, filter, out, n=n, split=split, depth=depth, cache_dir=cache_dir,
                            progress=not quiet, ref=ref)
    out_console.print(res["markdown"], markup=False, highlight=False)
    console.print(f"wrote {', '.join(res['files'])} to {out}", markup=False)


@app.command(help="Evaluate a model on a BEIR split with BEIR-exact metrics (pytrec_eval): nDCG@10, Recall@100, "
                  "MRR@10 and more. Exact search over the whole corpus.")
def evaluate(
    model: Annotated[str, typer.Option(help="Alias (minilm, mpnet, minilm-int8; hash is a test-only fake), model folder or hub id.")],
    data: Annotated[str, typer.Option(help="BEIR folder or BEIR dataset name.")],
    split: Annotated[str, typer.Option(help="Qrels split; its qrels define the query set.")] = "test",
    out: Annotated[Optional[Path], typer.Option(help="Folder for metrics.json, per_query.json and run.trec.")] = None,
    query_prompt: Annotated[str, typer.Option(help="Text prepended to every query.")] = "",
    doc_prompt: Annotated[str, typer.Option(help="Text prepended to every document.")] = "",
    max_seq_length: Annotated[Optional[int], typer.Option(help="Truncation in tokens [default: the model's].")] = None,
    precision: PrecisionOpt = "fp32",
    search: SearchOpt = "exact",
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
                       batch_size=batch_size, trust_remote_code=trust_remote_code, precision=precision)
    cache_dir = _cache(cache)
    claim = (contextlib.nullcontext() if out is None
             else claim_output(out, "evaluate", inputs=_inputs(data, model, cache_dir)))
    with claim:
        dataset = load_eval_dataset(data, split, cache_dir=cache_dir)
        res = evaluate_model(spec, dataset, cache_dir=cache_dir, depth=depth,
                             ignore_identical_ids=ignore_identical_ids, progress=not quiet,
                             search=_search(search))
        if out is not None:
            write_eval(res, out, {"model": spec.to_dict(), "dataset": dataset.name, "split": split, "depth": depth,
                                  **({} if search == "exact" else {"search": _search(search).to_dict()})})
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
    mask_false_negatives: Annotated[str, typer.Option(
        help="In-batch false-negative masking: none, id (same positive id), text (same text) or score(m) (scores "
             "above the positive + m).")] = "none",
    bf16: Annotated[str, typer.Option(
        help="bf16 mixed precision: auto (where the GPU or CPU has native bf16: 1.5-2.4x faster steps on an "
             "avx512_bf16 CPU), true (required) or false (fp32).")] = "false",
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = 0.01,
    lora_dropout: Annotated[float, typer.Option(help="LoRA dropout.")] = 0.1,
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
        report_to=tuple(report_to or ()), mask_false_negatives=mask_false_negatives,
        bf16={"true": True, "false": False}.get(bf16.lower(), bf16), weight_decay=weight_decay,
        lora_dropout=lora_dropout))
    with claim_output(out, "train", inputs=_inputs(mined, student)):
        rows = read_mined(mined)
        train_fn(rows, cfg, out, progress=not quiet)
    console.print(f"wrote {out}")


RUN_HELP = ("Mine -> train -> evaluate from one TOML config, with section.key=value overrides. Each stage is "
            "stored under a folder named by the hash of its spec and skipped when it exists, so a killed run "
            "resumes. Prints base vs fine-tuned metrics and writes results.json.")


@app.command(help=RUN_HELP + "\n\n" + _verbatim(_doc("hardneg.experiments.config").split("\n\n", 1)[1]))
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


@app.command(help=_verbatim(_doc("hardneg.experiments.ablate")))
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


@app.command(help=_verbatim(_doc("hardneg.report")))
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
    console.print(f"wrote {', '.join(files)} to {out}; look at a point's negatives: hardneg browse "
                  f"{results.parent / 'stages'}/mine-<hash> --out browse.html", markup=False)


@app.command("fn-report", help=_verbatim(_doc("hardneg.report_rates")))
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


@app.command(help="Write one self-contained HTML page (inline CSS, JS and data; no network; opens from file://) to "
                  "inspect mined sets of the same data side by side: a query list with search (query text, qid, "
                  "docid) and filters; per query the positives and each strategy's negatives with score, raw rank, "
                  "teacher and badges (a labelled positive or a duplicate of one mined, an injected trap from "
                  "injected.json, a hidden positive from hidden.json, audit reasons, the candidates the filters "
                  "removed); per strategy the positive vs top-1 negative score distributions (the paper's Fig. 4). "
                  "Built for up to 250,000 rows (110k rows x 2 strategies: about 19 MB); --limit N keeps the first "
                  "N queries.\n\nExample: hardneg browse runs/mine --out browse.html --data ../shared/data/scifact")
def browse(
    mined: Annotated[list[Path], typer.Argument(
        help="mined.jsonl files, strategy folders or `hardneg mine --out` folders (every strategy in it), all of "
             "the same dataset and split.")],
    out: Annotated[Path, typer.Option(help="The HTML file to write (an earlier browse page there is replaced; any "
                                           "other existing file is refused).")],
    data: Annotated[Optional[str], typer.Option(
        help="The BEIR folder (or name) the sets were mined from: its qrels, the traps of `hardneg inject` "
             "(injected.json), the hidden positives of `hardneg thin` (hidden.json) and, with the cache of "
             "`hardneg mine`, the candidates the filters removed.")] = None,
    audit: Annotated[Optional[list[Path]], typer.Option(
        help='Audit JSONL, repeatable: one flagged negative per line {"qid", "docid", "reasons": [...], '
             '"scores": {...}}.')] = None,
    limit: Annotated[Optional[int], typer.Option(
        help="Keep only the first N queries (with all their rows): a lighter page for big runs.")] = None,
    split: Annotated[Optional[str], typer.Option(
        help="Split of --data [default: the one in the mine summary, else train].")] = None,
    removed: Annotated[bool, typer.Option(
        help="With --data: show the candidates each strategy's filters removed, from the candidate pool cached by "
             "`hardneg mine` (never encodes or searches; skipped when the pool is not cached).")] = True,
    cache: CacheOpt = None,
    quiet: QuietOpt = False,
) -> None:
    _setup(quiet)
    from hardneg.browse import write_browse

    res = write_browse(mined, out, data=data, audit=audit or [], limit=limit, split=split, cache_dir=_cache(cache),
                       removed=removed)
    console.print(f"wrote {res['out']}: {res['queries']:,} of {res['queries_total']:,} queries, {res['rows']:,} "
                  f"rows, {len(res['sets'])} mined sets, {res['bytes'] / 1e6:.1f} MB", markup=False)


# Every verb's help ends with an example and the files it writes (kept here, beside each other, to stay uniform).
EXAMPLES: dict[str, tuple[str, str]] = {
    "mine": ("hardneg mine --data ../shared/data/scifact --teacher minilm -s 'percpos(0.95)+topk(4)' -s 'topk(4)' "
             "--out mined/",
             "OUT/<strategy>/mined.jsonl and stats.json (+ st/, st.jsonl, flag.jsonl, triplets.jsonl with --export), "
             "OUT/mine_config.json, OUT/summary.json"),
    "inject": ("hardneg inject --data ../shared/data/scifact --out scifact-r30 --rate 0.3",
               "a BEIR folder at OUT with injected.json"),
    "thin": ("hardneg thin --data ../shared/data/nfcorpus --out nfcorpus-k1 --keep 1",
             "a BEIR folder at OUT with hidden.json"),
    "diagnose": ("hardneg diagnose --data ../shared/data/scifact --out diag/ -s 'percpos(0.95)+topk(4)'",
                 "OUT/diagnostics.json, diagnostics.md, scores-<teacher>.png"),
    "audit": ("hardneg audit mined/topk-4 --data ../shared/data/scifact --out audit/ --fail-on labelled_positive",
              "OUT/audit.jsonl, OUT/audit.json (+ a cleaned copy with --fix)"),
    "calibrate": ("hardneg calibrate --data ../shared/data/scifact --teacher minilm --filter percpos --out calib/",
                  "OUT/calibrate.md, .csv, .json, .png"),
    "evaluate": ("hardneg evaluate --model minilm --data ../shared/data/scifact --split test --out eval/",
                 "with --out: OUT/metrics.json, per_query.json, run.trec"),
    "train": ("hardneg train --mined mined/percpos-0.95_topk-4/mined.jsonl --out model/ --bf16 auto",
              "a sentence-transformers model folder at OUT with train_config.json and loss_curve.json/.png"),
    "run": ("hardneg run configs/scifact.toml train.epochs=2",
            "run.out/config.resolved.json, results.json, timings.json and run.out/stages/<kind>-<hash>/"),
    "ablate": ("hardneg ablate configs/ablate-scifact.toml --strategy 'topk(4)' --seed 0",
               "run.out/results.jsonl (one line per point), ablation.json, stages/"),
    "report": ("hardneg report runs/ablate/results.jsonl --out report/",
               "OUT/table.md, table.csv, best.md, mining.md, cost.md, fig*.png (+ teachers.md, sampling.md)"),
    "fn-report": ("hardneg fn-report --rate 0=a/results.jsonl --rate 0.3=b/results.jsonl --out fn/",
                  "OUT/table.md, table.csv, fig_rates.png"),
    "recipe": ("hardneg recipe configs/nv-retriever-v1.toml stage1.max_steps=10",
               "recipe.out/config.resolved.json, results.json and stages/"),
    "browse": ("hardneg browse mined/ --out browse.html --data ../shared/data/scifact",
               "one HTML file at OUT"),
}
for _info in app.registered_commands:
    _name = _info.name or _info.callback.__name__.replace("_", "-")
    if _name in EXAMPLES:
        _ex, _writes = EXAMPLES[_name]
        _info.help = (_info.help or "").split("\n\nExample:")[0] + f"\n\n\b\nExample:\n  {_ex}\n\nWrites: {_writes}."


def _error(text: str) -> None:
    console.quiet = False  # errors show even with -q
    # Text, not markup: messages quote user input such as "[train] unknown key", which rich would eat.
    console.print(Text.assemble(("error: ", "bold red"), text), highlight=False, soft_wrap=True)


def main() -> None:
    """Entry point: user errors (ours and the argument parser's) become one line on stderr and exit code 2;
    Ctrl-C prints one line and exits 130."""
    try:
        code = app(standalone_mode=False)
    except HardnegError as exc:
        _error(exc.one_line())
        sys.exit(2)
    except typer.TyperException as exc:  # the argument parser's usage errors (typer's own click)
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            out_console.print(ctx.get_help(), markup=False, highlight=False)
            sys.exit(2)
        where = ctx.command_path if ctx is not None else "hardneg"
        what = " ".join(exc.format_message().split()).rstrip(".")
        _error(f"{where}: {what}. Fix: see `{where} --help`")
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        code = 130
    if code == 130:  # typer turns Ctrl-C inside a command into a silent exit code 130
        verb = next((a for a in sys.argv[1:] if not a.startswith("-")), "the command")
        console.quiet = False
        console.print(f"interrupted: hardneg {verb} stopped; finished files and cached embeddings are kept, and "
                      "rerunning the same command resumes", markup=False, highlight=False, soft_wrap=True)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
