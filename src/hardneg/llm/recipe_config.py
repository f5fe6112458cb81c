"""The recipe's config, validated with every problem reported at once: the tables of
``hardneg.llm.recipe_tables`` (``[recipe]``, ``[model]``, ``[lora]``, ``[train]``, ``[stage1]``/``[stage2]`` with
``[[stageN.data]]`` sources, ``[mine]``, ``[evaluate]``) read from a TOML / JSON file, ``table.key=value`` overrides
and ``--table.key`` flags by ``hardneg.options`` (``read_config``, ``merge``), the one path of every verb.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hardneg.errors import ConfigErrors, HardnegError
from hardneg.llm.decoder import DecoderConfig
from hardneg.llm.recipe_tables import TABLES, LoraSection, MineSection, RecipeSection
from hardneg.llm.stage import KINDS, LLMTrainExtras
from hardneg.options import merge, opt, plain, read_config

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
    datasets: tuple[str, ...] = opt((), "BEIR datasets (names or folders) to evaluate on, repeatable.")
    split: str = opt("test", "Qrels split evaluated (see splits).")
    models: tuple[str, ...] = opt(("base", "stage1", "stage2"), "Models evaluated, repeatable: base, stage1, stage2.")
    max_seq_length: int | None = opt(512, "Truncation of queries and passages alike in tokens.")
    batch_size: int = opt(32, "Encoding batch size.")
    depth: int = opt(1000, "Results kept per query in the run (BEIR uses 1000).")
    instructions: dict[str, str] = field(default_factory=dict, metadata={
        "help": "Query instruction per dataset name, a table {name = \"text\"} [default: the dataset descriptor's]."})
    splits: dict[str, str] = field(default_factory=dict, metadata={
        "help": "Split per dataset name, a table {name = \"split\"} [default: split], e.g. {msmarco = \"dev\"}."})


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

    def resolved(self) -> dict[str, Any]:
        """The config as the recipe's tables (file, overrides and flags merged): what ``config.resolved.json``
        holds, so ``hardneg recipe --config`` on it gives this config again. Each stage's full training config
        is its ``train_config.json``."""
        return plain(self.raw)

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


_LORA_KEYS = {"rank": "lora_rank", "alpha": "lora_alpha", "dropout": "lora_dropout",
              "target_modules": "lora_target_modules", "enabled": "lora"}
_PROMPT_HINT = ("query_prompt: the recipe prompts each source's queries with its own instruction "
                "(\"{instruction}: \"); set instruction = ... on the [[stageN.data]] entry instead")


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
    """``[stageN]``: its training keys over ``[train]``'s over ``[lora]``'s, and its sources."""
    from hardneg.train.config import TrainConfig

    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    extra_fields = {f.name for f in dataclasses.fields(LLMTrainExtras)}
    merged = {**shared, **{k: v for k, v in table.items() if k not in STAGE_KEYS_NOT_TRAIN}}
    tkw = {"seed": seed, **lora, **{k: v for k, v in merged.items() if k in train_fields}}
    train = _try(problems, f"[{name}]", TrainConfig, student="(set by the recipe)", **tkw)
    extras = _try(problems, f"[{name}]", LLMTrainExtras, **{k: v for k, v in merged.items() if k in extra_fields})
    data = []
    for i, d in enumerate(table.get("data", ())):
        if not isinstance(d, dict):
            problems.append(f"[{name}.data #{i + 1}] {d!r}: must be a table, e.g. {{beir = \"scifact\"}}")
            continue
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


def _model_section(model: dict[str, Any], problems: list[str]) -> DecoderConfig | None:
    if "base" not in model:
        problems.append("[model] base is required, e.g. base = \"mistralai/Mistral-7B-v0.1\"")
        return None
    return _try(problems, "[model]", DecoderConfig, **model)


def _lora_section(lora: dict[str, Any]) -> dict[str, Any]:
    """``[lora]`` as TrainConfig keywords (``rank`` -> ``lora_rank``, ...), its defaults filled in."""
    sec = LoraSection(**lora)
    return {_LORA_KEYS[f.name]: getattr(sec, f.name) for f in dataclasses.fields(sec)}


def _mine_section(mine: dict[str, Any], stages: Sequence[StageSpec | None], seed: int, problems: list[str]
                  ) -> MineSpec | None:
    from hardneg.encode.encoder import EncoderSpec
    from hardneg.mining.pipeline import parse_plan

    if not mine:
        if any(d.beir is not None for s in stages if s is not None for d in s.data):
            problems.append("data sources given as beir = ... need a [mine] section (teacher, strategy, depth)")
        return None
    m = MineSection(**mine)
    teacher_t = {"model": m.teacher} if isinstance(m.teacher, str) else m.teacher
    teacher = _try(problems, "[mine.teacher]", EncoderSpec.from_dict, teacher_t) \
        if isinstance(teacher_t, dict) else None
    if not isinstance(teacher_t, dict):
        problems.append(f"[mine] teacher={m.teacher!r}: must be a model name or a table of encoder keys")
    plan = _try(problems, "[mine]", parse_plan, m.strategy) if isinstance(m.strategy, str) else None
    if not isinstance(m.strategy, str):
        problems.append(f"[mine] strategy={m.strategy!r}: must be a strategy string")
    mseed = seed if m.seed is None else m.seed
    if not _is_int(m.depth) or m.depth < 1:
        problems.append(f"[mine] depth={m.depth!r}: must be an integer >= 1")
    if not _is_int(mseed) or mseed < 0:
        problems.append(f"[mine] seed={mseed!r}: must be an integer >= 0")
    if teacher is None or plan is None:
        return None
    return MineSpec(teacher=teacher, strategy=str(plan), depth=m.depth, seed=mseed)


def _evaluate_section(ev_kw: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    """The checked ``EvalSpec`` keywords of ``[evaluate]`` (built by the caller once no problem is left)."""
    for k in ("datasets", "models"):
        if k in ev_kw and not all(isinstance(x, str) for x in ev_kw[k]):
            problems.append(f"[evaluate] {k}={list(ev_kw[k])!r}: must be a list of strings")
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


def recipe_from_dict(raw: dict[str, Any], overrides: Sequence[str] = (), *, where: str = "recipe",
                     flags: dict[tuple[str, str], Any] | None = None) -> RecipeConfig:
    """Validate a parsed recipe config with ``table.key=value`` overrides and ``(table, key)`` flags over it,
    reporting every problem (unknown tables and keys included) at once."""
    problems: list[str] = []
    t = merge(TABLES, raw, list(overrides), flags, where=where, problems=problems)
    problems[:] = [p.split(" unknown key")[0] + " " + _PROMPT_HINT if "unknown key 'query_prompt'" in p else p
                   for p in problems]
    rec = _try(problems, "[recipe]", RecipeSection, **t["recipe"]) or RecipeSection()
    model = _model_section(t["model"], problems)
    lora = _lora_section(t["lora"])
    s1 = _stage("stage1", t["train"], t["stage1"], lora, rec.seed, problems)
    s2 = _stage("stage2", t["train"], t["stage2"], lora, rec.seed, problems) if t["stage2"] else None
    if s1 is not None and not s1.data:
        problems.append("[stage1] needs at least one [[stage1.data]] source")
    if s2 is not None and not s2.data and not s2.include_stage1_data:
        problems.append("[stage2] has no data: add [[stage2.data]] or set include_stage1_data = true")
    mine = _mine_section(t["mine"], (s1, s2), rec.seed, problems)
    ev_kw = _evaluate_section(t["evaluate"], problems)
    if problems:
        raise ConfigErrors(problems, where=where, verb="recipe")
    assert model is not None and s1 is not None
    return RecipeConfig(model=model, stage1=s1, stage2=s2, mine=mine, evaluate=EvalSpec(**ev_kw), out=rec.out,
                        cache=rec.cache, seed=rec.seed, raw=t)


def load_recipe(path: str | Path | None, overrides: Sequence[str] = (), *,
                flags: dict[tuple[str, str], Any] | None = None) -> RecipeConfig:
    """Read and validate a recipe config (TOML, e.g. ``configs/nv-retriever-v1.toml``, or JSON; ``None``: flags
    and overrides only) with ``table.key=value`` overrides and ``(table, key)`` flags; relative paths inside it
    are taken as given (relative to the working directory)."""
    raw = read_config(path) if path is not None else {}
    return recipe_from_dict(raw, overrides, where=str(path) if path is not None else "hardneg recipe", flags=flags)
