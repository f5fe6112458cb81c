"""``hardneg run`` configuration: a TOML file plus ``section.key=value`` overrides, validated all at once.

Sections (every key optional; the defaults follow the README's SciFact recipe except ``train.doc_max_length``,
which defaults to 256 where the recipe sets 128)::

    [data]      path, train_split, test_split, dev (fraction carved from train, a split name, or false), dev_seed
    [teacher]   an encoder: model, query_prompt, doc_prompt, max_seq_length, batch_size, normalize, dtype, ...
    [mine]      strategy, depth, seed
    [train]     see hardneg.train.config.TrainConfig (student, epochs, batch_size, temperature, ...)
    [evaluate]  max_seq_length, batch_size, depth, splits, precision
    [search]    backend (exact, faiss-flat, faiss-ivf, faiss-hnsw, ray), nlist, nprobe, hnsw_m, ef_search, ray_address
    [run]       out, cache
"""
from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hardneg.encode.encoder import EncoderSpec
from hardneg.errors import ConfigErrors, HardnegError
from hardneg.search.depth import MAX_DEPTH, depth_problem
from hardneg.mining.pipeline import Plan, parse_plan
from hardneg.search.spec import SearchSpec
from hardneg.train.config import MAX_BATCH, MAX_LENGTH, TrainConfig


@dataclass(frozen=True)
class DataSection:
    path: str = "../shared/data/scifact"
    train_split: str = "train"
    test_split: str = "test"
    dev: float | str | bool = 0.1
    dev_seed: int = 0

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
    strategy: str = "percpos(0.95)+topk(4)"
    depth: int = 100
    seed: int = 0

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
    max_seq_length: int | None = 256
    batch_size: int = 32
    depth: int = 1000
    splits: tuple[str, ...] = ("dev", "test")
    precision: str = "fp32"  # compute precision of the evaluated encoders: auto, fp32, bf16 (encode.precision)

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
    out: str = "runs/scifact"
    cache: str | None = None

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
    run: RunSection = field(default_factory=RunSection)

    def identity(self) -> dict[str, Any]:
        """Per section, the settings that differ from their defaults (see ``nondefault``). Sections added later
        (``LATER_SECTIONS``) appear only when set, so results and stages keyed before they existed stay valid."""
        out = {f.name: nondefault(getattr(self, f.name)) for f in dataclasses.fields(self)}
        return {k: v for k, v in out.items() if v or k not in LATER_SECTIONS}

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            d = v.to_dict() if hasattr(v, "to_dict") else dataclasses.asdict(v)
            out[f.name] = {k: list(x) if isinstance(x, tuple) else x for k, x in d.items()}
        return out


LATER_SECTIONS = ("search",)  # added after results were keyed: absent from identity() while at their defaults
_SECTIONS: dict[str, type] = {"data": DataSection, "teacher": EncoderSpec, "mine": MineSection,
                              "train": TrainConfig, "evaluate": EvalSection, "search": SearchSpec,
                              "run": RunSection}
_BASE = {"teacher": {"model": "minilm"}}  # required fields' defaults, to check other keys one by one


def _build(name: str, cls: type, d: dict[str, Any], problems: list[str]) -> Any:
    """Construct section ``name``, appending every problem (unknown keys and each bad value) to ``problems``."""
    known = {f.name for f in dataclasses.fields(cls)}
    before = len(problems)
    for k in sorted(set(d) - known):
        problems.append(f"[{name}] unknown key {k!r} (valid: {', '.join(sorted(known))})")
    good = {k: v for k, v in d.items() if k in known}
    base = {**_BASE.get(name, {})}
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


def parse_override(text: str) -> tuple[str, str, Any]:
    """``section.key=value``; the value is read as TOML (``2``, ``0.1``, ``true``, ``"x"``, ``[1, 2]``) or a bare string."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise HardnegError(f"bad override {text!r}", fix="write section.key=value, e.g. train.epochs=2")
    key, raw = text.split("=", 1)
    section, k = key.strip().split(".", 1)
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except (ValueError, RecursionError):  # TOMLDecodeError, an over-long integer, nesting too deep
        value = raw.strip()  # a bare string; the section's validation reports it if it must be a number
    return section, k.strip(), value


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file with a one-line error on a missing file, bad encoding or bad syntax."""
    p = Path(path)
    if not p.is_file():
        raise HardnegError("config file not found", where=p, fix="pass a TOML file, e.g. configs/scifact.toml")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8-sig"))  # -sig: a leading byte-order mark is skipped
    except UnicodeDecodeError:
        raise HardnegError("config is not UTF-8 text", where=p, fix="save it as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise HardnegError(f"invalid TOML ({exc})", where=p, fix="fix the TOML syntax") from None
    except RecursionError:
        raise HardnegError("invalid TOML (arrays or tables nested too deeply)", where=p,
                           fix="flatten the nesting") from None
    except ValueError as exc:  # tomllib lets int()'s digit limit through
        raise HardnegError(f"invalid TOML ({str(exc).split(';')[0]})", where=p,
                           fix="write numbers with fewer digits") from None


def config_from_dict(raw: dict[str, Any], overrides: list[str] = (), *, where: str = "config",
                     extra_problems: list[str] = ()) -> RunConfig:
    """Apply overrides to a parsed config and validate everything, reporting all problems together."""
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    problems: list[str] = list(extra_problems)
    for o in overrides:
        section, k, v = parse_override(o)
        if section not in _SECTIONS:
            problems.append(f"override {o!r}: unknown section {section!r}")
            continue
        raw.setdefault(section, {})[k] = v
    for s in sorted(set(raw) - set(_SECTIONS)):
        problems.append(f"unknown section [{s}] (valid: {', '.join(_SECTIONS)})")
    built = {}
    for name, cls in _SECTIONS.items():
        d = raw.get(name, {})
        if not isinstance(d, dict):
            problems.append(f"[{name}] must be a table")
            continue
        built[name] = _build(name, cls, d, problems)
    if problems:
        raise ConfigErrors(problems, where=where)
    return RunConfig(**built)


def load_config(path: str | Path | None, overrides: list[str] = ()) -> RunConfig:
    """Read a TOML config (None: all defaults), apply overrides, validate, reporting all problems together."""
    raw = read_toml(path) if path is not None else {}
    return config_from_dict(raw, overrides, where=str(path) if path else "config")
