"""One config interface for every verb (issue 19, item 2): each config field is settable by its flag, by its
``--config`` TOML key and by a ``table.key=value`` override, and all three resolve to the same config; flags beat
overrides beat the file beat the defaults; the resolved config is written beside the output and reproduces it."""
from __future__ import annotations

import dataclasses
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_cli
from hardneg import cli, verbs
from hardneg.options import MISSING, Field, plain

# Required fields, given in the base file of every case (a case's own value then wins over them).
BASE: dict[str, dict[str, dict]] = {
    "mine": {"mine": {"data": "d", "out": "o", "strategy": ["topk(1)"]}},
    "diagnose": {"diagnose": {"data": "d", "out": "o", "strategy": ["topk(1)"]}},
    "evaluate": {"evaluate": {"model": "hash", "data": "d"}},
    "train": {"train": {"mined": "m.jsonl", "out": "o"}},
    "inject": {"inject": {"data": "d", "out": "o", "rate": 0.5}},
    "thin": {"thin": {"data": "d", "out": "o", "keep": 1}},
    "audit": {"audit": {"mined": "m.jsonl", "data": "d", "out": "o"}},
    "calibrate": {"calibrate": {"data": "d", "out": "o", "filter": "percpos"}},
    "report": {"report": {"results": "r.jsonl", "out": "o"}},
    "fn-report": {"fn-report": {"rate": ["0=r.jsonl"], "out": "o"}},
    "browse": {"browse": {"mined": ["m.jsonl"], "out": "b.html"}},
    "run": {},
    "ablate": {"grid": {"strategies": ["topk(1)"]}},
    "recipe": {"model": {"base": "b"}, "stage1": {"data": [{"mined": "m.jsonl"}]}},
}
# Valid non-default values where the generic ones (below) would be rejected by validation.
SAMPLES = {
    ("train", "short_rows"): "pad", ("train", "loss"): "cached_infonce", ("train", "bf16"): "auto",
    ("train", "mask_false_negatives"): "id", ("train", "student"): "hash", ("train", "report_to"): ("tensorboard",),
    ("teacher", "model"): "hash", ("teacher", "dtype"): "float16", ("teacher", "backend"): "onnx",
    ("teacher", "precision"): "bf16", ("evaluate", "precision"): "bf16", ("evaluate", "splits"): ("test",),
    ("mine", "strategy"): "topk(2)", ("search", "backend"): "faiss-ivf", ("search", "ray_address"): "auto",
    ("encode", "backend"): "ray", ("encode", "ray_address"): "auto",
    ("data", "dev"): 0.2, ("grid", "strategies"): ("topk(2)", "topk(3)"), ("grid", "teachers"): ("hash", "hash:32"),
}

_STAGE = {"short_rows": "pad", "loss": "cached_infonce", "bf16": True, "mask_false_negatives": "id",
          "report_to": ("tensorboard",), "weights_dtype": "float32", "sampler": "round_robin",
          "attn_implementation": "eager", "lora": False}  # lora: on by default in the recipe
# The recipe's tables, where they differ from run's (its [train] is TrainConfig + LLMTrainExtras, bf16 "auto" is
# already the default there; a stage table takes the same keys and its sources).
RECIPE_SAMPLES = {
    **{(t, k): v for t in ("train", "stage1", "stage2") for k, v in _STAGE.items()},
    ("model", "dtype"): "float32", ("model", "attn_implementation"): "eager", ("mine", "teacher"): "hash",
    ("stage1", "data"): ({"mined": "a.jsonl", "max_rows": 5}, {"mined": "n.jsonl", "name": "n"}),
    ("stage2", "data"): ({"mined": "c.jsonl", "kind": "sts", "instruction": "Retrieve similar text"},),
    ("evaluate", "models"): ("base",), ("evaluate", "splits"): {"msmarco": "dev"},
    ("evaluate", "instructions"): {"scifact": "Find the evidence"},
}

# Settings that only count together with another one (the base file of those cases gets it).
CONTEXT = {("teacher", "backend"): {"teacher": {"model": "minilm-int8"}},
           **{("search", k): {"search": {"backend": "faiss-ivf"}} for k in ("nlist", "nprobe")},
           **{("search", k): {"search": {"backend": "faiss-hnsw"}} for k in ("hnsw_m", "ef_search")},
           ("search", "ray_address"): {"search": {"backend": "ray"}},
           **{("encode", k): {"encode": {"backend": "ray"}}
              for k in ("ray_address", "workers", "cpus_per_worker", "chunk_size")}}


def sample(verb: str, f: Field):
    samples = {**SAMPLES, **RECIPE_SAMPLES} if verb == "recipe" else SAMPLES
    if (f.table, f.name) in samples:
        v = samples[f.table, f.name]
        return (v,) if f.multi and isinstance(v, str) else v
    if f.multi:
        return (1, 2) if f.kind == "int" else ("a-value", "b-value")
    if f.kind == "int":
        return 3 if f.default in (MISSING, None) else f.default + 1
    return {"float": 0.25, "bool": not f.default, "boolstr": "auto", "literal": 0.2, "str": "x-value"}[f.kind]


def flag_args(f: Field, bare: bool, value) -> list[str]:
    key = f.name.replace("_", "-") if bare else f"{f.table}.{f.name.replace('_', '-')}"
    if f.kind == "bool":
        return [f"--{key}" if value else f"--no-{key}"]
    return [x for v in (value if f.multi else (value,)) for x in (f"--{key}", v if isinstance(v, str) else toml(v))]


def resolve(verb: str, args: list[str]):
    """What `hardneg VERB ARGS` would run with (parsed by the real command, nothing executed)."""
    ctx = cli.app.commands[verb].make_context(verb, list(args))
    config, overrides, flags = cli.parse(verb, ctx, ctx.params)
    return plain(verbs.resolve(verb, config, overrides, flags))


def toml(value) -> str:
    """A value as TOML text (tables inline)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    return json.dumps(value)


def toml_file(path: Path, tables: dict) -> Path:
    lines = []
    for table, values in tables.items():
        lines.append(f'["{table}"]' if "-" in table else f"[{table}]")
        lines += [f"{k} = {toml(v)}" for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


CASES = [(verb, t.bare, f) for verb, tables in verbs.TABLES.items() for t in tables for f in t.fields()]


def test_every_verb_has_config_tables():
    assert set(BASE) == set(verbs.TABLES) and all(verbs.TABLES.values())
    assert {"mine", "evaluate", "train", "diagnose", "run", "ablate", "recipe"} <= set(BASE)


@pytest.mark.parametrize("verb,bare,f", CASES, ids=[f"{v}-{f.table}.{f.name}" for v, _, f in CASES])
def test_field_is_settable_by_flag_toml_key_and_override_alike(verb, bare, f, tmp_path):
    value = sample(verb, f)
    base = {t: dict(v) for t, v in BASE[verb].items()}
    for t, v in CONTEXT.get((f.table, f.name), {}).items():
        base.setdefault(t, {}).update(v)
    plain_file = toml_file(tmp_path / "base.toml", base)
    with_key = toml_file(tmp_path / "key.toml", {**base, f.table: {**base.get(f.table, {}), f.name: value}})
    default = resolve(verb, ["--config", str(plain_file)])
    by_flag = resolve(verb, ["--config", str(plain_file), *flag_args(f, bare, value)])
    by_key = resolve(verb, ["--config", str(with_key)])
    override = f"{f.table}.{f.name}={toml(value)}"
    by_override = resolve(verb, ["--config", str(plain_file), override])
    assert by_flag == by_key == by_override
    if (f.table, f.name) != ("teacher", "backend"):  # onnx is the only backend of minilm-int8 (set by the model)
        assert by_flag != default, f"{f.table}.{f.name}={value!r} left the config unchanged"


def test_every_field_has_help_and_the_source_reader_matches_the_dataclasses():
    for verb, tables in verbs.TABLES.items():
        for t in tables:
            fields = t.fields()
            real = {}  # a name two classes share is the first one's; excluded names are no keys
            for x in (x for ref in t.classes for x in dataclasses.fields(_cls(ref)) if x.name not in t.exclude):
                real.setdefault(x.name, x)
            assert [f.name for f in fields] == list(real), (verb, t.name)
            for f, x in zip(fields, real.values()):
                assert f.help, f"{t.name}.{f.name} has no help text"
                d = x.default if x.default is not dataclasses.MISSING else MISSING
                if x.default_factory is not dataclasses.MISSING and f.default is not MISSING:
                    d = x.default_factory()
                assert f.default == d or (f.default is MISSING and x.default_factory is not dataclasses.MISSING), \
                    (t.name, f.name, f.default, d)


def _cls(ref: str) -> type:
    module, name = ref.split(":")
    return getattr(importlib.import_module(module), name)


def test_precedence_flags_over_overrides_over_file_over_defaults(tmp_path):
    cfg = toml_file(tmp_path / "c.toml", {"mine": {"data": "d", "out": "o", "strategy": "topk(1)", "depth": 5}})
    assert resolve("mine", ["--data", "d", "--out", "o", "-s", "topk(1)"])["depth"] == 100
    assert resolve("mine", ["--config", str(cfg)])["depth"] == 5
    assert resolve("mine", ["--config", str(cfg), "mine.depth=6"])["depth"] == 6
    assert resolve("mine", ["--config", str(cfg), "mine.depth=6", "--depth", "7"])["depth"] == 7
    assert resolve("mine", ["--config", str(cfg)])["strategy"] == ["topk(1)"]  # one string is a list of one
    run = toml_file(tmp_path / "r.toml", {"train": {"epochs": 2}})
    assert resolve("run", [str(run)])["train"]["epochs"] == 2.0  # the config as the first argument, as before
    assert resolve("run", [str(run), "train.epochs=3", "--train.epochs", "4"])["train"]["epochs"] == 4.0


def test_recipe_takes_its_config_overrides_and_flags_like_run():
    shipped = str(Path(__file__).resolve().parents[1] / "configs" / "nv-retriever-v1.toml")
    smoke = resolve("recipe", [shipped, 'model.base="Qwen/Qwen2-0.5B"', "stage1.max_steps=10"])  # as documented
    assert smoke == resolve("recipe", [shipped, "--model.base", "Qwen/Qwen2-0.5B", "--stage1.max-steps", "10"])
    assert smoke == resolve("recipe", ["--config", shipped, "stage1.max_steps=5", "--stage1.max-steps", "10",
                                       "--model.base", "Qwen/Qwen2-0.5B"])  # flags beat overrides
    assert (smoke["model"]["base"], smoke["stage1"]["train"]["max_steps"]) == ("Qwen/Qwen2-0.5B", 10)
    s1, s2 = smoke["stage1"]["train"], smoke["stage2"]["train"]
    assert s1["learning_rate"] == s2["learning_rate"] == 1e-5 and s2["max_steps"] is None  # [train] is shared
    assert (s1["lora"], s1["lora_rank"], s2["lora_alpha"]) == (True, 16, 32)  # [lora] reaches both stages
    lr = resolve("recipe", [shipped, "--train.learning-rate", "2e-5", "--stage2.learning-rate", "3e-5"])
    assert (lr["stage1"]["train"]["learning_rate"], lr["stage2"]["train"]["learning_rate"]) == (2e-5, 3e-5)
    assert len(lr["stage1"]["data"]) == 15 and lr["mine"]["teacher"]["model"] == "intfloat/e5-mistral-7b-instruct"


def test_positional_fields_and_their_flags_agree(tmp_path):
    a = resolve("audit", ["m.jsonl", "--data", "d", "--out", "o"])
    assert a == resolve("audit", ["--mined", "m.jsonl", "--data", "d", "--out", "o"])
    assert resolve("browse", ["a", "b", "--out", "x.html"])["mined"] == ["a", "b"]


@pytest.mark.parametrize("args,needle", [
    (["mine", "--data", "d", "--out", "o"], "Missing option '--strategy' (or mine.strategy in --config)"),
    (["mine", "--data", "d", "--out", "o", "-s", "topk(1)", "mine.nope=1"], "[mine] unknown key 'nope'"),
    (["mine", "--data", "d", "--out", "o", "-s", "topk(1)", "train.epochs=1"], "unknown section [train]"),
    (["train", "--mined", "m", "--out", "o", "train.epochs=0"], "epochs=0"),
    (["run", "--train.loss", "triplet"], "loss"),
    (["mine", "--config", "nope.toml"], "config file not found"),
    (["recipe", "--model.base", "b"], "[stage1] needs at least one [[stage1.data]] source"),
    (["recipe", "--model.base", "b", "--stage1.data", '{mined = "m.jsonl"}', "train.query_prompt=q"],
     "set instruction = ... on the [[stageN.data]] entry"),
    (["recipe", "--model.base", "b", "--stage1.data", "m.jsonl"], "[stage1.data #1] 'm.jsonl': must be a table"),
])
def test_bad_config_input_is_one_line(args, needle, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(args + ["-q"], capsys)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1 and "Fix:" in err, err
    assert not (tmp_path / "o").exists()


def test_mine_writes_its_resolved_config_and_it_reproduces_the_output(tiny_beir, tmp_path, capsys):
    args = ["--data", str(tiny_beir), "--teacher", "hash", "--cache", str(tmp_path / "cache"), "--depth", "5",
            "-s", "topk(2)", "-s", "sampled(4,2)", "--seed", "3", "-q"]
    code, _, err = run_cli(["mine", "--out", str(tmp_path / "a"), *args], capsys)
    assert code == 0, err
    saved = json.loads((tmp_path / "a" / verbs.RESOLVED).read_text())
    assert saved == {"mine": resolve("mine", ["--out", str(tmp_path / "a"), *args[:-1]])}
    assert saved["mine"]["seed"] == 3 and saved["mine"]["strategy"] == ["topk(2)", "sampled(4,2)"]
    code, _, err = run_cli(["mine", "--config", str(tmp_path / "a" / verbs.RESOLVED), "--out", str(tmp_path / "b"),
                            "-q"], capsys)
    assert code == 0, err
    for s in ("topk-2", "sampled-4-2"):
        for name in ("mined.jsonl", "stats.json"):
            assert (tmp_path / "b" / s / name).read_bytes() == (tmp_path / "a" / s / name).read_bytes()


def test_python_callers_get_the_one_line_error_for_a_wrong_type():
    from hardneg.errors import HardnegError

    with pytest.raises(HardnegError, match="expected MineOptions, got dict"):
        verbs.mine({"data": "d"})  # type: ignore[arg-type]


def test_every_verb_help_answers_without_torch_and_names_an_example_and_its_files():
    code = ("import sys, io, contextlib\nfrom hardneg import cli\nout = {}\n"
            "for verb in sorted(cli.app.commands):\n    sys.argv = ['hardneg', verb, '--help']\n"
            "    buf = io.StringIO()\n    with contextlib.redirect_stdout(buf):\n        try:\n"
            "            cli.main()\n        except SystemExit:\n            pass\n    out[verb] = buf.getvalue()\n"
            "import json\nprint(json.dumps([out, 'torch' in sys.modules, 'sentence_transformers' in sys.modules]))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    helps, torch, st = json.loads(res.strip().splitlines()[-1])
    assert not torch and not st
    assert len(helps) == 14
    for verb, text in helps.items():
        assert "Example:" in text and "Writes:" in text and f"hardneg {verb}" in text, verb
        assert "--config" in text, verb


def test_a_run_config_resolved_json_loads_back_to_the_same_config_and_identity(tmp_path):
    from hardneg.experiments.config import load_config

    root = Path(__file__).resolve().parents[1]
    cfg = load_config(root / "configs" / "scifact.toml", ["train.epochs=2"], flags={("mine", "depth"): 50})
    assert cfg.train.epochs == 2.0 and cfg.mine.depth == 50
    (tmp_path / "config.resolved.json").write_text(json.dumps(cfg.to_dict()), encoding="utf-8")
    again = load_config(tmp_path / "config.resolved.json")
    assert again == cfg and again.identity() == cfg.identity()


def test_a_recipe_config_resolved_json_loads_back_to_the_same_config(tmp_path):
    """What the recipe writes as config.resolved.json (file + overrides + flags merged) is a recipe config again."""
    from hardneg.llm.recipe_config import load_recipe

    root = Path(__file__).resolve().parents[1]
    cfg = load_recipe(root / "configs" / "nv-retriever-v1.toml", ["lora.rank=8", "stage2.batch_size=16"],
                      flags={("recipe", "seed"): 3})
    assert cfg.stage1.train.lora_rank == 8 and cfg.stage2.train.batch_size == 16 and cfg.seed == 3
    (tmp_path / "config.resolved.json").write_text(json.dumps(cfg.resolved()), encoding="utf-8")
    again = load_recipe(tmp_path / "config.resolved.json")
    assert again == cfg and again.to_dict() == cfg.to_dict()
