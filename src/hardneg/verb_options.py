"""The options of every verb, declared once: one frozen dataclass per verb (each field with its default and help,
which ``hardneg.options`` turns into the flag, the TOML key and the ``table.key=value`` override), the tables each
verb reads (``TABLES``), and ``resolve``: a verb's validated config from ``--config``, overrides and flags.

``hardneg.options`` reads these classes from this file's source (no import), so ``hardneg VERB --help`` stays
fast; ``hardneg.verbs`` holds the functions that run them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hardneg.errors import HardnegError
from hardneg.experiments.tables import GRID_TABLE, RUN_TABLES
from hardneg.llm.recipe_tables import TABLES as RECIPE_TABLES
from hardneg.options import MISSING, Table, build, merge, opt, read_config, require

_TEACHER = ("Teacher, repeatable (best first): an alias (minilm, mpnet, minilm-int8; hash is a test-only fake), a "
            "folder, a hub id, or fusion(a,b[,how=mean]) (sum of the members' scores). Several teachers: each gets "
            "its own pool and output folder, and ensemble strategies combine them.")


_PRECISION = ("Encoder compute precision: fp32 (exact), bf16 (CPUs with avx512_bf16/amx_bf16 or a bf16 GPU: ~2.4x "
              "faster, cosine to fp32 >= 0.99997) or auto (bf16 where native and its fidelity probe passes, else fp32).")


_SEARCH = ("Search backend: exact (default), faiss-flat (also exact), faiss-ivf[:nlist=N,nprobe=N], "
           "faiss-hnsw[:hnsw_m=N,ef_search=N] (approximate: check recall first, docs/scale.md) or "
           "ray[:ray_address=ADDR] (exact, sharded over a Ray cluster; none starts a local one).")


_ENCODE = ("Where the encoders run: local (default, this process) or ray[:ray_address=ADDR,workers=N,"
           "cpus_per_worker=C,chunk_size=N] (an actor pool on a Ray cluster; none starts a local one). Same "
           "embeddings and cache entries either way (docs/scale.md).")


_CACHE = "Cache folder for embeddings, pools and models [default: $HARDNEG_CACHE or ~/.cache/hardneg]."


@dataclass(frozen=True, kw_only=True)
class MineOptions:
    data: str = opt(MISSING, "BEIR folder (corpus.jsonl, queries.jsonl, qrels/), a BEIR name, a JSONL of pairs "
                             '{"query": ..., "pos": [...]}, or hf:NAME[:SPLIT].')
    out: str = opt(MISSING, "Output folder: one sub-folder per strategy.")
    strategy: tuple[str, ...] = opt(MISSING, 'Strategy string, repeatable, e.g. "percpos(0.95)+topk(4)".',
                                    flags=("-s",))
    split: str = opt("train", "Qrels split to mine for.")
    teacher: tuple[str, ...] = opt(("minilm",), _TEACHER)
    depth: int = opt(100, "Candidates kept per query (positives excluded).")
    seed: int = opt(0, "Seed of the sampled strategies and of export padding.")
    query_prompt: str = opt("", "Text prepended to every query.")
    doc_prompt: str = opt("", "Text prepended to every document.")
    max_seq_length: int | None = opt(None, "Teacher truncation in tokens [default: the model's].")
    batch_size: int = opt(32, "Encoding batch size.")
    normalize: bool = opt(True, "L2-normalise embeddings (scores are cosines).")
    dtype: str = opt("float32", "Storage dtype of cached embeddings: float32 or float16.")
    precision: str = opt("fp32", _PRECISION)
    search: str = opt("exact", _SEARCH)
    encode: str = opt("local", _ENCODE)
    export: tuple[str, ...] = opt((), "Extra formats, repeatable: st (sentence-transformers datasets folder + "
                                      "JSONL), flag (FlagEmbedding), triplets, or all.")
    short: str = opt("drop", "Exports only: rows short of n negatives are dropped (drop) or filled with random "
                             "corpus documents (pad).")
    trust_remote_code: bool = opt(False, "Allow a hub model's own Python code (off by default).")
    corpus: str | None = opt(None, "With a pairs file: a BEIR corpus.jsonl whose ids the pairs' pos refer to (and "
                                   "the documents to mine from). Without it, the pairs' own texts are the corpus.")
    cache: str | None = opt(None, _CACHE)


@dataclass(frozen=True, kw_only=True)
class DiagnoseOptions:
    data: str = opt(MISSING, "BEIR folder or BEIR dataset name.")
    out: str = opt(MISSING, "Output folder.")
    strategy: tuple[str, ...] = opt(MISSING, "Strategy, repeatable.", flags=("-s",))
    split: str = opt("train", "Qrels split.")
    teacher: tuple[str, ...] = opt(("minilm",), "Teacher, repeatable (alias, folder, hub id, fusion(a,b)).")
    depth: int = opt(100, "Candidates per query.")
    seed: int = opt(0, "Seed: which positive is hidden, and sampling.")
    near_dup_threshold: float = opt(0.95, "Query cosine at or above which two queries are near-duplicates.")
    max_seq_length: int | None = opt(None, "Teacher truncation in tokens.")
    precision: str = opt("fp32", _PRECISION)
    search: str = opt("exact", _SEARCH)
    encode: str = opt("local", _ENCODE)
    cache: str | None = opt(None, _CACHE)


@dataclass(frozen=True, kw_only=True)
class EvaluateOptions:
    model: str = opt(MISSING, "Alias (minilm, mpnet, minilm-int8; hash is a test-only fake), model folder or hub "
                              "id.")
    data: str = opt(MISSING, "BEIR folder or BEIR dataset name.")
    split: str = opt("test", "Qrels split; its qrels define the query set.")
    out: str | None = opt(None, "Folder for metrics.json, per_query.json and run.trec.")
    query_prompt: str = opt("", "Text prepended to every query.")
    doc_prompt: str = opt("", "Text prepended to every document.")
    max_seq_length: int | None = opt(None, "Truncation in tokens [default: the model's].")
    precision: str = opt("fp32", _PRECISION)
    search: str = opt("exact", _SEARCH)
    encode: str = opt("local", _ENCODE)
    batch_size: int = opt(32, "Encoding batch size.")
    depth: int = opt(1000, "Results kept per query in the run (BEIR uses 1000).")
    ignore_identical_ids: bool | None = opt(None, "Drop a result whose id equals the query id [default: from the "
                                                  "dataset descriptor; on for ArguAna, Quora].")
    trust_remote_code: bool = opt(False, "Allow a hub model's own Python code.")
    cache: str | None = opt(None, _CACHE)


@dataclass(frozen=True, kw_only=True)
class TrainFiles:
    """The files of ``hardneg train``; its other keys are ``TrainConfig``'s (the ``[train]`` table of a run)."""

    mined: str = opt(MISSING, "mined.jsonl written by `hardneg mine`.")
    out: str = opt(MISSING, "Output folder: a sentence-transformers model + train_config.json + loss_curve.json/png.")


def fields(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


@dataclass(frozen=True, kw_only=True)
class InjectOptions:
    data: str = opt(MISSING, "Source BEIR folder.")
    out: str = opt(MISSING, "Destination folder (must not exist, or be an earlier injection with --overwrite).")
    rate: float = opt(MISSING, "Fraction of the split's (query, positive) pairs that get copies.")
    split: str = opt("train", "Split whose positives are copied.")
    copies: int = opt(1, "Near-copies per chosen pair.")
    transform: tuple[str, ...] = opt((), "Transform, repeatable: drop_title, shuffle_sentences, truncate, exact "
                                         "[default: the first three].")
    seed: int = opt(0, "Seed of the pair choice and the transforms.")
    overwrite: bool = opt(False, "Replace an earlier injection at --out.")


@dataclass(frozen=True, kw_only=True)
class ThinOptions:
    data: str = opt(MISSING, "Source BEIR folder.")
    out: str = opt(MISSING, "Destination folder (must not exist, or be an earlier thinned folder with --overwrite).")
    keep: int = opt(MISSING, "Positives kept per query (K >= 1).")
    order: str = opt("grade", "Which positives are kept: grade (highest grade first, ties in a seeded order) or "
                              "random (a seeded order).")
    seed: int = opt(0, "Seed of the order among equal grades (or of the random order).")
    split: str = opt("train", "Split whose positives are thinned.")
    overwrite: bool = opt(False, "Replace an earlier thinned folder at --out.")


@dataclass(frozen=True, kw_only=True)
class AuditOptions:
    mined: str = opt(MISSING, "A mined set: hardneg mined.jsonl or a `hardneg mine --out` folder, a "
                              "sentence-transformers dataset (save_to_disk folder or JSONL; triplet, n-tuple, "
                              "labeled-pair, labeled-list) or a FlagEmbedding JSONL (query, pos, neg).",
                     positional=True)
    data: str = opt(MISSING, "The BEIR folder (or name) the set was mined from.")
    out: str = opt(MISSING, "Folder for audit.jsonl (one line per flagged negative) and audit.json.")
    split: str = opt("train", "Qrels split of --data.")
    teacher: str | None = opt(None, "Teacher for the near_copy and suspected_fn checks [default: the one in a "
                                    "mine_config.json beside MINED; without one those checks are skipped].")
    n: int | None = opt(None, "Negatives of a full row [default: the most any row has].")
    tau: float = opt(0.95, "near_copy: doc-doc cosine to a positive at or above which a negative is a near copy.")
    fail_on: str | None = opt(None, "Comma-separated reasons that make the command exit 1 when found, e.g. "
                                    "labelled_positive,near_copy.")
    fix: str | None = opt(None, "Write a cleaned copy to this folder: flagged negatives dropped, refilled from the "
                                "teacher's cached candidate pool when there is one.")
    depth: int = opt(100, "--fix: depth of the candidate pool to refill from.")
    encode: str = opt("local", _ENCODE)
    cache: str | None = opt(None, _CACHE)


@dataclass(frozen=True, kw_only=True)
class CalibrateOptions:
    data: str = opt(MISSING, "BEIR folder or BEIR dataset name (a `hardneg inject` folder adds trap recall).")
    out: str = opt(MISSING, "Folder for calibrate.md, .csv, .json and .png.")
    filter: str = opt(MISSING, "Filter to sweep: percpos, marginpos, abs or posnbr.")
    teacher: str = opt("minilm", "Teacher (alias, folder, hub id, fusion(a,b)); its pool is read from the cache "
                                 "when `hardneg mine` built it.")
    n: int = opt(4, "Negatives per row the strategy asks for (topk(n)).")
    split: str = opt("train", "Qrels split.")
    depth: int = opt(100, "Candidates per query (as mined).")
    max_seq_length: int | None = opt(None, "Teacher truncation in tokens (as mined).")
    ref: str = opt("min", "Positive reference of percpos / marginpos: min (default), max, mean or row (each row's "
                          "own positive).")
    precision: str = opt("fp32", _PRECISION)
    encode: str = opt("local", _ENCODE)
    cache: str | None = opt(None, _CACHE)


@dataclass(frozen=True, kw_only=True)
class ReportOptions:
    results: str = opt(MISSING, "results.jsonl written by `hardneg ablate`.", positional=True)
    out: str = opt(MISSING, "Folder for the tables and figures.")
    baseline: str = opt("topk(4)", "Strategy the significance tests compare against.")


@dataclass(frozen=True, kw_only=True)
class RateReportOptions:
    rate: tuple[str, ...] = opt(MISSING, "RATE=RESULTS: an injection rate and the results.jsonl of its ablation "
                                         "(repeat; the smallest rate is the reference).")
    out: str = opt(MISSING, "Folder for the table and figure.")
    baseline: str = opt("topk(4)", "Strategy the same-rate tests compare against.")


@dataclass(frozen=True, kw_only=True)
class BrowseOptions:
    mined: tuple[str, ...] = opt(MISSING, "mined.jsonl files, strategy folders or `hardneg mine --out` folders "
                                          "(every strategy in it), all of the same dataset and split.",
                                 positional=True)
    out: str = opt(MISSING, "The HTML file to write (an earlier browse page there is replaced; any other existing "
                            "file is refused).")
    data: str | None = opt(None, "The BEIR folder (or name) the sets were mined from: its qrels, the traps of "
                                 "`hardneg inject` (injected.json), the hidden positives of `hardneg thin` "
                                 "(hidden.json) and, with the cache of `hardneg mine`, the candidates the filters "
                                 "removed.")
    audit: tuple[str, ...] = opt((), 'Audit JSONL, repeatable: one flagged negative per line {"qid", "docid", '
                                     '"reasons": [...], "scores": {...}}.')
    limit: int | None = opt(None, "Keep only the first N queries (with all their rows): a lighter page for big runs.")
    split: str | None = opt(None, "Split of --data [default: the one in the mine summary, else train].")
    removed: bool = opt(True, "With --data: show the candidates each strategy's filters removed, from the candidate "
                              "pool cached by `hardneg mine` (never encodes or searches; skipped when the pool is "
                              "not cached).")
    cache: str | None = opt(None, _CACHE)


def _own(verb: str, *classes: str) -> list[Table]:
    return [Table(verb, classes)]


# verb -> its config tables (every field is a flag, a TOML key and an override)
TABLES: dict[str, list[Table]] = {
    "mine": _own("mine", "hardneg.verb_options:MineOptions"), "inject": _own("inject", "hardneg.verb_options:InjectOptions"),
    "thin": _own("thin", "hardneg.verb_options:ThinOptions"), "diagnose": _own("diagnose", "hardneg.verb_options:DiagnoseOptions"),
    "audit": _own("audit", "hardneg.verb_options:AuditOptions"),
    "calibrate": _own("calibrate", "hardneg.verb_options:CalibrateOptions"),
    "evaluate": _own("evaluate", "hardneg.verb_options:EvaluateOptions"),
    "train": _own("train", "hardneg.verb_options:TrainFiles", "hardneg.train.config:TrainConfig"),
    "run": RUN_TABLES, "ablate": [*RUN_TABLES, GRID_TABLE], "recipe": RECIPE_TABLES,
    "report": _own("report", "hardneg.verb_options:ReportOptions"),
    "fn-report": _own("fn-report", "hardneg.verb_options:RateReportOptions"),
    "browse": _own("browse", "hardneg.verb_options:BrowseOptions"),
}


OPTIONS: dict[str, type] = {"mine": MineOptions, "inject": InjectOptions, "thin": ThinOptions,
                            "diagnose": DiagnoseOptions, "audit": AuditOptions, "calibrate": CalibrateOptions,
                            "evaluate": EvaluateOptions, "report": ReportOptions, "fn-report": RateReportOptions,
                            "browse": BrowseOptions}


def resolve(verb: str, config: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
            flags: dict[tuple[str, str], Any] | None = None) -> Any:
    """A verb's validated config from ``--config`` (TOML or JSON), ``table.key=value`` overrides and flags
    ((table, key) -> value), lowest precedence first: the options value of the verb (``train``: its files and
    ``TrainConfig``; ``run``: a ``RunConfig``; ``ablate``: the base ``RunConfig`` and the ``Grid``; ``recipe``: a
    ``RecipeConfig``)."""
    if verb not in TABLES:
        raise HardnegError(f"no config tables for verb {verb!r}", fix="one of: " + ", ".join(TABLES))
    overrides, flags = list(overrides), dict(flags or {})
    if verb == "run":
        from hardneg.experiments.config import load_config

        return load_config(config, overrides, flags=flags)
    if verb == "ablate":
        from hardneg.experiments.ablate import load_ablation

        return load_ablation(config, overrides, flags=flags)
    if verb == "recipe":
        from hardneg.llm.recipe_config import load_recipe

        return load_recipe(config, overrides, flags=flags)
    raw = read_config(config) if config is not None else {}
    where = str(config) if config is not None else f"hardneg {verb}"
    (table,) = TABLES[verb]
    values = merge(TABLES[verb], raw, overrides, flags, where=where)[table.name]
    require(values, table, verb)
    if verb == "train":
        from hardneg.train.config import TrainConfig

        names = fields(TrainFiles)
        return (build(TrainFiles, {k: v for k, v in values.items() if k in names}, where=where),
                TrainConfig.from_dict({k: v for k, v in values.items() if k not in names}))
    return build(OPTIONS[verb], values, where=where)
