"""Command line: parse arguments, call the library, print tables. No logic that Python users cannot reach."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from hardneg.errors import HardnegError
from hardneg.mining import strategy as strategy_mod

console = Console(stderr=True)
out_console = Console()

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


def _cache(cache: Path | None) -> Path:
    from hardneg.encode.models import default_cache_dir

    return cache if cache is not None else default_cache_dir()


MINE_HELP = "Mine hard negatives with one teacher and one or more strategies (encode and search once).\n\n" + (
    strategy_mod.__doc__ or "")


@app.command(help=MINE_HELP)
def mine(
    data: Annotated[str, typer.Option(help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/) or a BEIR name.")],
    out: Annotated[Path, typer.Option(help="Output folder: one sub-folder per strategy.")],
    strategy: Annotated[list[str], typer.Option(
        "--strategy", "-s", help='Strategy string, repeatable, e.g. "percpos(0.95)+topk(4)".')],
    split: Annotated[str, typer.Option(help="Qrels split to mine for.")] = "train",
    teacher: Annotated[str, typer.Option(help="Teacher: alias (minilm, mpnet, minilm-int8, hash), folder or hub id.")] = "minilm",
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
    cache: CacheOpt = None,
    quiet: QuietOpt = False,
) -> None:
    _setup(quiet)
    from hardneg.data.load import load_dataset
    from hardneg.encode.encoder import EncoderSpec
    from hardneg.mining.pipeline import MineConfig, run_mine

    strategies = tuple(strategy_mod.parse_strategy(s) for s in strategy)
    exports = tuple(sorted({e for x in (export or []) for e in (("st", "flag", "triplets") if x == "all" else (x,))}))
    spec = EncoderSpec(model=teacher, query_prompt=query_prompt, doc_prompt=doc_prompt,
                       max_seq_length=max_seq_length, batch_size=batch_size, normalize=normalize, dtype=dtype,
                       trust_remote_code=trust_remote_code)
    cfg = MineConfig(teacher=spec, strategies=strategies, depth=depth, seed=seed, exports=exports,
                     short_policy=short)  # type: ignore[arg-type]
    if out.exists() and not out.is_dir():
        raise HardnegError("the output folder is an existing file", where=out, fix="pass a folder path for --out")
    cache_dir = _cache(cache)
    dataset = load_dataset(data, split, cache_dir=cache_dir)
    summary = run_mine(dataset, cfg, out, cache_dir, progress=not quiet)
    _print_mine_table(summary)
    console.print(f"wrote {out}  (timings, s: {summary['timings']})")


def _print_mine_table(summary: dict) -> None:
    t = Table(title=f"mined {summary['dataset']['name']}/{summary['dataset']['split']} "
                    f"with {summary['config']['teacher']['model']}")
    for col in ("strategy", "rows", "short", "empty", "removed/row", "pos q50", "top1 neg q50", "pos-top1 q50"):
        t.add_column(col, justify="right" if col != "strategy" else "left")
    for name, s in summary["strategies"].items():
        removed = sum(s["removed_per_row"].values())
        fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        t.add_row(name, str(s["rows"]), str(s["rows_short"]), str(s["rows_empty"]), f"{removed:.1f}",
                  fmt(s["pos_score"]["q50"]), fmt(s["top1_neg_score"]["q50"]), fmt(s["pos_minus_top1_neg"]["q50"]))
    out_console.print(t)


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    try:
        app()
    except HardnegError as exc:
        console.print(f"[bold red]error:[/] {exc.one_line()}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
