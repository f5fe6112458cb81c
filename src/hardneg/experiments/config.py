"""``hardneg run`` configuration: a TOML file plus ``section.key=value`` overrides, validated all at once.

Sections (every key optional; the defaults follow the README's SciFact recipe except ``train.doc_max_length``,
which defaults to 256 where the recipe sets 128)::

    [data]      path, train_split, test_split, dev (fraction carved from train, a split name, or false), dev_seed
    [teacher]   an encoder: model, query_prompt, doc_prompt, max_seq_length, batch_size, normalize, dtype, ...
    [mine]      strategy, depth, seed
    [train]     see hardneg.train.config.TrainConfig (student, epochs, batch_size, temperature, ...)
    [evaluate]  max_seq_length, batch_size, depth, splits, precision
    [search]    backend (exact, faiss-flat, faiss-ivf, faiss-hnsw, ray), nlist, nprobe, hnsw_m, ef_search, ray_address
    [encode]    backend (local, ray), ray_address, workers, cpus_per_worker, chunk_size: where encoders run
    [run]       out, cache

Every key is also a flag of ``hardneg run`` / ``hardneg ablate``, ``--section.key VALUE`` (``_`` written as ``-``,
e.g. ``--train.max-steps 10``), and the config may be the ``config.resolved.json`` of an earlier run.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hardneg.encode.backend import EncodeBackend
from hardneg.encode.encoder import EncoderSpec
from hardneg.errors import ConfigErrors, HardnegError
from hardneg.search.depth import MAX_DEPTH, depth_problem
from hardneg.mining.pipeline import Plan, parse_plan
from hardneg.experiments.tables import RUN_TABLES
from hardneg.options import merge, opt
from hardneg.search.spec import SearchSpec
from hardneg.train.config import MAX_BATCH, MAX_LENGTH, TrainConfig


@dataclass(frozen=True)
class DataSection:
    path: str = opt("../shared/data/scifact", "BEIR folder or BEIR dataset name.")
    train_split: str = opt("train", "Qrels split to mine and train on.")
    test_split: str = opt("test", "Qrels split of the final evaluation.")
    dev: float | str | bool = opt(0.1, "Dev queries: a fraction carved from the train split, a split name, or "
                                       "false (none).")
    dev_seed: int = opt(0, "Seed of the dev carving.")

    def __post_init__(self) -> None:
        p = []
        if not isinstance(self.path, str) or not self.path:
            p.append(f"path={self.path!r}: must be a BEIR folder or dataset name")
        for k in ("train_split", "test_split"):
            if not isinstance(getattr(self, k), str) or not getattr(self, k):
                p.append(f"{k}={getattr(self, k)!r}: must be a split name")
        if isinstance(self.dev, bool):
            if self.dev:
                p.append("dev=true: give a fraction (e.g. 0.1), a split name, or false")
        elif isinstance(self.dev, (int, float)):
            if not 0 < self.dev < 1:
                p.append(f"dev={self.dev!r}: a carved fraction must be between 0 and 1")
        elif not isinstance(self.dev, str) or not self.dev:
            p.append(f"dev={self.dev!r}: give a fraction (e.g. 0.1), a split name, or false")
        if not _is_int(self.dev_seed):
            p.append(f"dev_seed={self.dev_seed!r}: must be an integer")
        if p:
            raise ConfigErrors(p, where="data")


@dataclass(frozen=True)
class MineSection:
    strategy: str = opt("percpos(0.95)+topk(4)", "Mining strategy (see `hardneg mine --help`).")
    depth: int = opt(100, "Candidates kept per query (positives excluded).")
    seed: int = opt(0, "Seed of the sampled strategies.")

    def __post_init__(self) -> None:
        p = []
        if not isinstance(self.strategy, str):
            p.append(f"strategy={self.strategy!r}: must be a strategy string")
        else:
            try:
                object.__setattr__(self, "strategy", str(parse_plan(self.strategy)))  # canonical form
            except HardnegError as exc:
                p.append(f"strategy={self.strategy!r}: {exc.what}")
        if (problem := depth_problem(self.depth)) is not None:
            p.append(f"depth={_shown(self.depth)}: {problem}")
        if not _is_int(self.seed):
            p.append(f"seed={self.seed!r}: must be an integer")
        if p:
            raise ConfigErrors(p, where="mine")

    @property
    def parsed(self) -> Plan:
        return parse_plan(self.strategy)


@dataclass(frozen=True)
class EvalSection:
    max_seq_length: int | None = opt(256, "Truncation of the evaluated encoders in tokens.")
    batch_size: int = opt(32, "Encoding batch size.")
    depth: int = opt(1000, "Results kept per query in the run (BEIR uses 1000).")
    splits: tuple[str, ...] = opt(("dev", "test"), "Splits evaluated: dev and/or test.")
    precision: str = opt("fp32", "Compute precision of the evaluated encoders: auto, fp32 or bf16.")

    def __post_init__(self) -> None:
        if isinstance(self.splits, list):
            object.__setattr__(self, "splits", tuple(self.splits))
        p = []
        if self.precision not in ("auto", "fp32", "bf16"):
            p.append(f"precision={self.precision!r}: must be auto, fp32 or bf16")
        for k, hi in (("max_seq_length", MAX_LENGTH), ("batch_size", MAX_BATCH), ("depth", MAX_DEPTH)):
            v = getattr(self, k)
            if (v is not None or k != "max_seq_length") and (not _is_int(v) or not 1 <= v <= hi):
                p.append(f"{k}={_shown(v)}: must be an integer >= 1 and <= {hi:,}")
        if not isinstance(self.splits, tuple) or not all(s in ("dev", "test") for s in self.splits) or not self.splits:
            p.append(f"splits={list(self.splits) if isinstance(self.splits, tuple) else self.splits!r}: "
                     "a list of 'dev' and/or 'test'")
        if p:
            raise ConfigErrors(p, where="evaluate")


@dataclass(frozen=True)
class RunSection:
    out: str = opt("runs/scifact", "Output folder: config.resolved.json, results.json, stages/.")
    cache: str | None = opt(None, "Cache folder [default: $HARDNEG_CACHE or ~/.cache/hardneg].")

    def __post_init__(self) -> None:
        p = []
        if not isinstance(self.out, str) or not self.out:
            p.append(f"out={self.out!r}: must be a folder path")
        if self.cache is not None and (not isinstance(self.cache, str) or not self.cache):
            p.append(f"cache={self.cache!r}: must be a folder path")
        if p:
            raise ConfigErrors(p, where="run")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _shown(v: Any) -> str:
    """``repr`` for messages, cut when long; a huge integer is not printed in full."""
    r = "a huge integer" if _is_int(v) and abs(v) >= 10 ** 30 else repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def nondefault(obj: Any) -> dict[str, Any]:
    """The fields of a dataclass value that differ from their defaults (JSON-ready).

    Stage and grid-point identities hash this, not every field, so adding a setting with a default to a later
    version keeps the hashes (and the finished work) of earlier runs valid.
    """
    out = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if f.default is not dataclasses.MISSING:
            d = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            d = f.default_factory()  # type: ignore[misc]
        else:
            d = dataclasses.MISSING
        if v != d:
            out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


@dataclass(frozen=True)
class RunConfig:
    data: DataSection = field(default_factory=DataSection)
    teacher: EncoderSpec = field(default_factory=lambda: EncoderSpec(model="minilm"))
    mine: MineSection = field(default_factory=MineSection)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvalSection = field(default_factory=EvalSection)
    search: SearchSpec = field(default_factory=SearchSpec)
    encode: EncodeBackend = field(default_factory=EncodeBackend)
    run: RunSection = field(default_factory=RunSection)

    def identity(self) -> dict[str, Any]:
        """Per section, the settings that differ from their defaults (see ``nondefault``). Sections added later
        (``LATER_SECTIONS``) appear only when set, so results and stages keyed before they existed stay valid;
        ``[encode]`` never does (where encoders run does not change their embeddings)."""
        out = {f.name: nondefault(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name not in UNKEYED}
        return {k: v for k, v in out.items() if v or k not in LATER_SECTIONS}

    def to_dict(self) -> dict[str, Any]:
        """Every section (``[encode]`` only when not local: configs resolved before it existed keep their bytes)."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "encode" and v.is_local:
                continue
            d = v.to_dict() if hasattr(v, "to_dict") else dataclasses.asdict(v)
            out[f.name] = {k: list(x) if isinstance(x, tuple) else x for k, x in d.items()}
        return out


LATER_SECTIONS = ("search",)  # added after results were keyed: absent from identity() while at their defaults
UNKEYED = ("encode",)  # never in identity(): the same embeddings wherever they are computed
_SECTIONS: dict[str, type] = {"data": DataSection, "teacher": EncoderSpec, "mine": MineSection,
                              "train": TrainConfig, "evaluate": EvalSection, "search": SearchSpec,
                              "encode": EncodeBackend, "run": RunSection}
_BASE = {"teacher": {"model": "minilm"}}  # required fields' defaults, to check other keys one by one


def _build(name: str, cls: type, good: dict[str, Any], problems: list[str]) -> Any:
    """Construct section ``name`` from its known keys, appending each bad value's problem to ``problems``."""
    before = len(problems)
    base = {**_BASE.get(name, {})}
    for k in [k for k in base if k in good]:  # a required key's own value, when valid, is the base of the others
        try:
            cls(**{**base, k: good[k]})
            base[k] = good[k]
        except (HardnegError, TypeError):
            pass
    for k, v in good.items():  # each key alone, so one bad value cannot hide another
        try:
            cls(**{**base, k: v})
        except ConfigErrors as exc:
            problems.extend(f"[{name}] {p}" for p in exc.problems)
        except HardnegError as exc:
            problems.append(f"[{name}] {k}={v!r}: {exc.what}")
        except TypeError as exc:
            problems.append(f"[{name}] {k}={v!r}: {exc}")
    if len(problems) > before:
        return None
    try:
        return cls(**{**base, **good})
    except ConfigErrors as exc:
        problems.extend(f"[{name}] {p}" for p in exc.problems)
    except HardnegError as exc:
        problems.append(f"[{name}] {exc.what}")
    return None


def config_from_dict(raw: dict[str, Any], overrides: list[str] = (), *, where: str = "config",
                     extra_problems: list[str] = (), flags: dict[tuple[str, str], Any] | None = None) -> RunConfig:
    """Apply overrides, then flags ((section, key) -> value, e.g. from ``--train.epochs``), to a parsed config
    (``hardneg.options.merge``, as every verb) and validate everything, reporting all problems together."""
    problems: list[str] = list(extra_problems)
    tables = merge(RUN_TABLES, raw, list(overrides), flags, where=where, problems=problems)
    return config_from_tables(tables, problems, where=where)


def config_from_tables(tables: dict[str, dict[str, Any]], problems: list[str], *, where: str) -> RunConfig:
    """The ``RunConfig`` of merged tables (``hardneg.options.merge``), with ``problems`` found so far."""
    built = {name: _build(name, cls, tables.get(name, {}), problems) for name, cls in _SECTIONS.items()}
    if problems:
        raise ConfigErrors(problems, where=where)
    return RunConfig(**built)


def load_config(path: str | Path | None, overrides: list[str] = (),
                flags: dict[tuple[str, str], Any] | None = None) -> RunConfig:
    """Read a config (TOML, or a config.resolved.json; None: all defaults), apply overrides and flags, validate,
    reporting all problems together."""
    from hardneg.options import read_config

    raw = read_config(path) if path is not None else {}
    return config_from_dict(raw, overrides, where=str(path) if path else "config", flags=flags)
