"""The recipe's TOML config: ``[recipe]``, ``[model]``, ``[lora]``, ``[train]``, ``[stage1]``/``[stage2]`` with
``[[stageN.data]]`` sources, ``[mine]`` and ``[evaluate]``, validated with every problem reported at once.

The file is read by ``hardneg.experiments.config.read_toml`` and ``section.key=value`` overrides are parsed by
its ``parse_override``, like ``hardneg run`` and ``hardneg ablate`` configs; the sections are the recipe's own.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hardneg.errors import ConfigErrors, HardnegError
from hardneg.llm.decoder import DEFAULT_LORA_TARGETS, DecoderConfig
from hardneg.llm.stage import KINDS, LLMTrainExtras

STAGE_KEYS_NOT_TRAIN = ("data", "include_stage1_data")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class DataSource:
    """A training source: ``mined`` (a mined.jsonl) or ``beir`` (a BEIR folder/name, mined with ``[mine]``).

    ``name`` defaults to the dataset folder name; ``instruction`` defaults, for retrieval sources, to the
    dataset descriptor's E5-Mistral task definition (``hardneg.data.descriptors``) and must be given for the
    others (``""`` = no instruction). ``max_rows``: keep a seeded random subset (Table 7 caps sources).
    """

    kind: str = "retrieval"
    mined: str | None = None
    beir: str | None = None
    split: str = "train"
    name: str | None = None
    instruction: str | None = None
    max_rows: int | None = None

    def __post_init__(self) -> None:
        p: list[str] = []
        if self.kind not in KINDS:
            p.append(f"kind={self.kind!r}: must be one of {', '.join(KINDS)}")
        if (self.mined is None) == (self.beir is None):
            p.append("give exactly one of mined = \"path/mined.jsonl\" or beir = \"path or name\"")
        for k in ("mined", "beir", "name", "instruction"):
            v = getattr(self, k)
            if v is not None and not isinstance(v, str):
                p.append(f"{k}={v!r}: must be a string")
        if self.beir is not None and self.kind != "retrieval":
            p.append(f"beir={self.beir!r}: only retrieval sources can be mined from a BEIR folder; give "
                     "non-retrieval data as a mined.jsonl of (query, positive, negatives)")
        if self.kind != "retrieval" and self.instruction is None:
            p.append(f"kind={self.kind!r} needs an instruction (\"\" for none), e.g. "
                     "\"Classify the intent of the given banking query\"")
        if not isinstance(self.split, str) or not self.split:
            p.append(f"split={self.split!r}: must be a split name")
        if self.max_rows is not None and (not _is_int(self.max_rows) or self.max_rows < 1):
            p.append(f"max_rows={self.max_rows!r}: must be an integer >= 1")
        if p:
            raise ConfigErrors(p, where="data source")

    @property
    def resolved_name(self) -> str:
        if self.name:
            return self.name
        src = self.beir if self.beir is not None else self.mined
        p = Path(str(src))
        # a mined file sits in <strategy>/mined.jsonl: name it after the folder above the strategy folder
        if p.name == "mined.jsonl" and p.parent.parent.name:
            return p.parent.parent.name
        return p.stem if p.suffix else p.name

    @property
    def resolved_instruction(self) -> str:
        if self.instruction is not None:
            return self.instruction
        from hardneg.data.descriptors import descriptor_for

        return descriptor_for(self.resolved_name).instruction


@dataclass(frozen=True)
class StageSpec:
    """One stage: its TrainConfig knobs (``train``), extras and data sources."""

    train: Any  # TrainConfig (student filled in at run time)
    extras: LLMTrainExtras
    data: tuple[DataSource, ...]
    include_stage1_data: bool = False

    def to_dict(self) -> dict[str, Any]:
        t = self.train.to_dict()
        t.pop("student", None)
        return {"train": t, "extras": self.extras.to_dict(), "data": [dataclasses.asdict(d) for d in self.data],
                "include_stage1_data": self.include_stage1_data}


@dataclass(frozen=True)
class MineSpec:
    teacher: Any  # EncoderSpec
    strategy: str = "percpos(0.95)+topk(5)"
    depth: int = 100
    seed: int = 0


@dataclass(frozen=True)
class EvalSpec:
    datasets: tuple[str, ...] = ()
    split: str = "test"
    models: tuple[str, ...] = ("base", "stage1", "stage2")
    max_seq_length: int | None = 512
    batch_size: int = 32
    depth: int = 1000
    instructions: dict[str, str] = field(default_factory=dict)  # dataset name -> instruction (else descriptor)
    splits: dict[str, str] = field(default_factory=dict)  # dataset name -> split (else ``split``)


@dataclass(frozen=True)
class RecipeConfig:
    model: DecoderConfig
    stage1: StageSpec
    stage2: StageSpec | None
    mine: MineSpec | None
    evaluate: EvalSpec
    out: str = "runs/nv-retriever-v1"
    cache: str | None = None
    seed: int = 0
    raw: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "recipe": {"out": self.out, "cache": self.cache, "seed": self.seed},
            "model": self.model.to_dict(),
            "stage1": self.stage1.to_dict(),
            "stage2": self.stage2.to_dict() if self.stage2 is not None else None,
            "mine": None if self.mine is None else {"teacher": self.mine.teacher.to_dict(),
                                                     "strategy": self.mine.strategy, "depth": self.mine.depth,
                                                     "seed": self.mine.seed},
            "evaluate": {**dataclasses.asdict(self.evaluate), "datasets": list(self.evaluate.datasets),
                         "models": list(self.evaluate.models)},
        }


_SECTIONS = ("recipe", "model", "lora", "train", "mine", "stage1", "stage2", "evaluate")
_LORA_KEYS = {"rank": "lora_rank", "alpha": "lora_alpha", "dropout": "lora_dropout",
              "target_modules": "lora_target_modules", "enabled": "lora"}


def _section(raw: dict[str, Any], name: str, problems: list[str]) -> dict[str, Any]:
    v = raw.get(name, {})
    if v is None:
        return {}
    if not isinstance(v, dict):
        problems.append(f"[{name}] must be a table")
        return {}
    return dict(v)


def _try(problems: list[str], prefix: str, fn: Any, *args: Any, **kw: Any) -> Any:
    try:
        return fn(*args, **kw)
    except ConfigErrors as exc:
        problems.extend(f"{prefix} {p}" for p in exc.problems)
    except HardnegError as exc:
        problems.append(f"{prefix} {exc.what}")
    except TypeError as exc:
        problems.append(f"{prefix} {exc}")
    return None


def _stage(name: str, shared: dict[str, Any], table: dict[str, Any], lora: dict[str, Any], seed: int,
           problems: list[str]) -> StageSpec | None:
    from hardneg.train.config import TrainConfig

    train_fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"student"}
    extra_fields = {f.name for f in dataclasses.fields(LLMTrainExtras)}
    merged = {**shared, **{k: v for k, v in table.items() if k not in STAGE_KEYS_NOT_TRAIN}}
    for k in sorted(set(merged) - train_fields - extra_fields):
        problems.append(f"[{name}] unknown key {k!r} (training keys: {', '.join(sorted(train_fields | extra_fields))})")
    if "query_prompt" in merged:
        problems.append(f"[{name}] query_prompt: the recipe prompts each source's queries with its own instruction "
                        "(\"{instruction}: \"); set instruction = ... on the [[stageN.data]] entry instead")
    tkw = {k: v for k, v in merged.items() if k in train_fields}
    tkw.setdefault("seed", seed)
    tkw = {**{"lora": True}, **lora, **tkw}
    train = _try(problems, f"[{name}]", TrainConfig, student="(set by the recipe)", **tkw)
    extras = _try(problems, f"[{name}]", LLMTrainExtras, **{k: v for k, v in merged.items() if k in extra_fields})
    data_raw = table.get("data", [])
    if not isinstance(data_raw, list) or not all(isinstance(d, dict) for d in data_raw):
        problems.append(f"[{name}] data must be a list of tables ([[{name}.data]])")
        data_raw = []
    data = []
    for i, d in enumerate(data_raw):
        ds = _try(problems, f"[{name}.data #{i + 1}]", DataSource, **d)
        if ds is not None:
            data.append(ds)
    include = table.get("include_stage1_data", name == "stage2")
    if not isinstance(include, bool):
        problems.append(f"[{name}] include_stage1_data={include!r}: must be true or false")
    if train is None or extras is None:
        return None
    return StageSpec(train=train, extras=extras, data=tuple(data),
                     include_stage1_data=bool(include) and name != "stage1")

def _apply_overrides(raw: dict[str, Any], overrides: Sequence[str], problems: list[str]) -> dict[str, Any]:
    from hardneg.experiments.config import parse_override

    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for o in overrides:
        section, k, v = parse_override(o)
        if section not in _SECTIONS:
            problems.append(f"override {o!r}: unknown section {section!r} (valid: {', '.join(_SECTIONS)})")
            continue
        if not isinstance(raw.get(section, {}), dict):
            raw[section] = {}
        raw.setdefault(section, {})[k] = v
    for s in sorted(set(raw) - set(_SECTIONS)):
        problems.append(f"unknown section [{s}] (valid: {', '.join(_SECTIONS)})")
    return raw


def _recipe_section(raw: dict[str, Any], problems: list[str]) -> tuple[Any, Any, int]:
    rec = _section(raw, "recipe", problems)
    for k in sorted(set(rec) - {"out", "cache", "seed"}):
        problems.append(f"[recipe] unknown key {k!r} (valid: out, cache, seed)")
    out, cache, seed = rec.get("out", "runs/nv-retriever-v1"), rec.get("cache"), rec.get("seed", 0)
    if not isinstance(out, str) or not out:
        problems.append(f"[recipe] out={out!r}: must be a folder path")
    if cache is not None and (not isinstance(cache, str) or not cache):
        problems.append(f"[recipe] cache={cache!r}: must be a folder path")
    if not _is_int(seed) or seed < 0:
        problems.append(f"[recipe] seed={seed!r}: must be an integer >= 0")
        seed = 0
    return out, cache, seed


def _model_section(raw: dict[str, Any], problems: list[str]) -> DecoderConfig | None:
    model_t = _section(raw, "model", problems)
    known_model = {f.name for f in dataclasses.fields(DecoderConfig)}
    for k in sorted(set(model_t) - known_model):
        problems.append(f"[model] unknown key {k!r} (valid: {', '.join(sorted(known_model))})")
    if "base" not in model_t:
        problems.append("[model] base is required, e.g. base = \"mistralai/Mistral-7B-v0.1\"")
        return None
    return _try(problems, "[model]", DecoderConfig, **{k: v for k, v in model_t.items() if k in known_model})


def _lora_section(raw: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    lora_t = _section(raw, "lora", problems)
    for k in sorted(set(lora_t) - set(_LORA_KEYS)):
        problems.append(f"[lora] unknown key {k!r} (valid: {', '.join(_LORA_KEYS)})")
    lora = {_LORA_KEYS[k]: v for k, v in lora_t.items() if k in _LORA_KEYS}
    lora.setdefault("lora_target_modules", list(DEFAULT_LORA_TARGETS))
    return lora


def _mine_section(raw: dict[str, Any], stages: Sequence[StageSpec | None], seed: int, problems: list[str]
                  ) -> MineSpec | None:
    from hardneg.encode.encoder import EncoderSpec
    from hardneg.mining.pipeline import parse_plan

    mine_t = _section(raw, "mine", problems)
    if not mine_t:
        if any(d.beir is not None for s in stages if s is not None for d in s.data):
            problems.append("data sources given as beir = ... need a [mine] section (teacher, strategy, depth)")
        return None
    for k in sorted(set(mine_t) - {"teacher", "strategy", "depth", "seed"}):
        problems.append(f"[mine] unknown key {k!r} (valid: teacher, strategy, depth, seed)")
    teacher_t = mine_t.get("teacher", {"model": "minilm"})
    if isinstance(teacher_t, str):
        teacher_t = {"model": teacher_t}
    teacher = _try(problems, "[mine.teacher]", EncoderSpec.from_dict, teacher_t) \
        if isinstance(teacher_t, dict) else None
    strategy = mine_t.get("strategy", "percpos(0.95)+topk(5)")
    plan = _try(problems, "[mine]", parse_plan, strategy) if isinstance(strategy, str) else None
    if not isinstance(strategy, str):
        problems.append(f"[mine] strategy={strategy!r}: must be a strategy string")
    depth, mseed = mine_t.get("depth", 100), mine_t.get("seed", seed)
    if not _is_int(depth) or depth < 1:
        problems.append(f"[mine] depth={depth!r}: must be an integer >= 1")
    if not _is_int(mseed) or mseed < 0:
        problems.append(f"[mine] seed={mseed!r}: must be an integer >= 0")
    if teacher is None or plan is None:
        return None
    return MineSpec(teacher=teacher, strategy=str(plan), depth=depth, seed=mseed)


def _evaluate_section(raw: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    """The ``EvalSpec`` keywords of ``[evaluate]`` (built by the caller once no problem is left)."""
    ev_t = _section(raw, "evaluate", problems)
    known_ev = {f.name for f in dataclasses.fields(EvalSpec)}
    for k in sorted(set(ev_t) - known_ev):
        problems.append(f"[evaluate] unknown key {k!r} (valid: {', '.join(sorted(known_ev))})")
    ev_kw = {k: v for k, v in ev_t.items() if k in known_ev}
    for k in ("datasets", "models"):
        if k in ev_kw:
            if not isinstance(ev_kw[k], list) or not all(isinstance(x, str) for x in ev_kw[k]):
                problems.append(f"[evaluate] {k}={ev_kw[k]!r}: must be a list of strings")
            ev_kw[k] = tuple(ev_kw[k]) if isinstance(ev_kw[k], list) else ()
    bad_models = [m for m in ev_kw.get("models", ()) if m not in ("base", "stage1", "stage2")]
    if bad_models:
        problems.append(f"[evaluate] models: unknown {bad_models} (choose from base, stage1, stage2)")
    for k in ("batch_size", "depth"):
        if k in ev_kw and (not _is_int(ev_kw[k]) or ev_kw[k] < 1):
            problems.append(f"[evaluate] {k}={ev_kw[k]!r}: must be an integer >= 1")
    msl = ev_kw.get("max_seq_length", 512)
    if msl is not None and (not _is_int(msl) or msl < 1):
        problems.append(f"[evaluate] max_seq_length={msl!r}: must be an integer >= 1")
    for k in ("instructions", "splits"):
        if k in ev_kw and (not isinstance(ev_kw[k], dict) or not all(isinstance(v, str) for v in ev_kw[k].values())):
            problems.append(f"[evaluate] {k} must be a table of dataset name = \"text\"")
    return ev_kw


def recipe_from_dict(raw: dict[str, Any], overrides: Sequence[str] = (), *, where: str = "recipe") -> RecipeConfig:
    """Validate a parsed recipe TOML (plus ``section.key=value`` overrides), reporting every problem at once."""
    problems: list[str] = []
    raw = _apply_overrides(raw, overrides, problems)
    out, cache, seed = _recipe_section(raw, problems)
    model = _model_section(raw, problems)
    lora = _lora_section(raw, problems)
    shared = _section(raw, "train", problems)
    s1 = _stage("stage1", shared, _section(raw, "stage1", problems), lora, seed, problems)
    s2_t = _section(raw, "stage2", problems)
    s2 = _stage("stage2", shared, s2_t, lora, seed, problems) if s2_t else None
    if s1 is not None and not s1.data:
        problems.append("[stage1] needs at least one [[stage1.data]] source")
    if s2 is not None and not s2.data and not s2.include_stage1_data:
        problems.append("[stage2] has no data: add [[stage2.data]] or set include_stage1_data = true")
    mine = _mine_section(raw, (s1, s2), seed, problems)
    ev_kw = _evaluate_section(raw, problems)
    evaluate = EvalSpec(**ev_kw) if not problems else None
    if problems:
        raise ConfigErrors(problems, where=where)
    assert model is not None and s1 is not None and evaluate is not None
    return RecipeConfig(model=model, stage1=s1, stage2=s2, mine=mine, evaluate=evaluate, out=out, cache=cache,
                        seed=seed, raw=raw)


def load_recipe(path: str | Path, overrides: Sequence[str] = ()) -> RecipeConfig:
    """Read and validate a recipe TOML (e.g. ``configs/nv-retriever-v1.toml``) with ``section.key=value``
    overrides; relative paths inside it are taken as given (relative to the working directory)."""
    from hardneg.experiments.config import read_toml

    return recipe_from_dict(read_toml(path), overrides, where=str(path))
