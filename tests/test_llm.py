"""hardneg.llm: decoder-LLM students (NV-Retriever-v1) on tiny random decoders built here (no download).

Bidirectional attention against transformers' mask machinery (eager and sdpa), instruction-masked mean pooling
by hand, LoRA (only adapters train; merged folder round-trips through hardneg's encoder), gradient
checkpointing, the two-stage recipe (stage 2 starts from stage 1's weights) and `hardneg run` with an LLM student.
"""
from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hardneg.errors import ConfigErrors, HardnegError
from hardneg.llm.decoder import (
    DEFAULT_LORA_TARGETS,
    DecoderConfig,
    build_decoder_embedder,
    instruction_prompt,
    is_bidirectional,
    make_decoder_student,
    prompt_boundary_report,
    weights_digest,
)
from hardneg.llm.testing import make_tiny_causal_lm
from hardneg.testing import WORDS, write_tiny_beir

ROOT = Path(__file__).resolve().parents[1]
INSTRUCTION = "Given a scientific claim, retrieve documents that support or refute the claim"
QUERIES = ["cancer study of genes", "tumor cells in the liver", "Heart blood drug dose"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> object:
    """One torch thread: the tiny model's ops are too small to share and a busy 2-core box makes threads spin."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("llm")


@pytest.fixture(scope="module")
def bases(root: Path) -> dict[str, Path]:
    """Tiny base LLM folders: Mistral with a SentencePiece-style tokenizer (like Mistral-7B), Qwen2 with a
    byte-level one, Llama with a word-level one."""
    return {"mistral": make_tiny_causal_lm(root / "base-mistral", arch="mistral", tokenizer="metaspace"),
            "qwen2": make_tiny_causal_lm(root / "base-qwen2", arch="qwen2", tokenizer="bytelevel"),
            "llama": make_tiny_causal_lm(root / "base-llama", arch="llama", tokenizer="wordlevel"),
            "gemma": make_tiny_causal_lm(root / "base-gemma", arch="gemma", tokenizer="bytelevel")}


@pytest.fixture(scope="module")
def student(root: Path, bases: dict[str, Path]) -> Path:
    """The NV-Retriever-v1 embedder of the tiny Mistral, saved as a sentence-transformers folder."""
    return make_decoder_student(DecoderConfig(base=str(bases["mistral"])), root / "student")


def _rows(n: int, n_neg: int, seed: int, tag: str) -> list[dict]:
    rng = np.random.default_rng(seed)

    def text(k: int, t: str) -> str:
        return " ".join(rng.choice(WORDS, size=k)) + f" {t}"

    return [{"qid": f"{tag}q{i}", "query": text(4, f"q{i}"),
             "pos": {"docid": f"{tag}p{i}", "text": text(10, f"p{i}")},
             "neg": [{"docid": f"{tag}n{i}x{j}", "text": text(10, f"n{i}x{j}")} for j in range(n_neg)]}
            for i in range(n)]


def _first_token_state(model, text: str) -> torch.Tensor:
    feats = model.preprocess([text])
    with torch.no_grad():
        return model[0](feats)["token_embeddings"][0, 0]


# ---------------------------------------------------------------- bidirectional attention


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("arch", ["mistral", "qwen2", "llama", "gemma"])
def test_bidirectional_attention_sees_later_tokens_and_causal_does_not(bases, arch, attn):
    for bidirectional in (True, False):
        model = build_decoder_embedder(DecoderConfig(base=str(bases[arch]), bidirectional=bidirectional,
                                                     attn_implementation=attn))
        assert model.transformers_model.config._attn_implementation == attn
        assert is_bidirectional(model) is bidirectional
        a = _first_token_state(model, "cancer study of genes")
        b = _first_token_state(model, "cancer study of tumor")  # only the last word differs
        assert (not torch.allclose(a, b, atol=1e-6)) is bidirectional, (arch, attn, bidirectional)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_bidirectional_padding_is_masked(bases, attn):
    """A right-padded text embeds as it does alone: pads are hidden from the real tokens in both directions."""
    model = build_decoder_embedder(DecoderConfig(base=str(bases["mistral"]), attn_implementation=attn))
    short, long = "cancer study", "tumor cells in the liver kidney brain heart blood drug dose"
    alone = model.encode([short], convert_to_tensor=True)
    batched = model.encode([short, long], convert_to_tensor=True, batch_size=2)
    assert torch.allclose(alone[0], batched[0], atol=1e-5)


def test_saved_folder_stays_bidirectional_through_hardneg_encoder(student):
    from hardneg.encode.encoder import EncoderSpec, STEncoder

    cfg = json.loads((student / "config.json").read_text())
    assert cfg["is_causal"] is False and cfg["use_cache"] is False
    assert json.loads((student / "1_Pooling" / "config.json").read_text())["include_prompt"] is False
    enc = STEncoder(EncoderSpec(model=str(student)))
    assert is_bidirectional(enc.model)
    a = _first_token_state(enc.model, "cancer study of genes")
    b = _first_token_state(enc.model, "cancer study of tumor")
    assert not torch.allclose(a, b, atol=1e-6)


# ---------------------------------------------------------------- instruction masking


def _hand_pooled(model, prompt: str, text: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the last hidden states of the query tokens only (tokens holding any character after the
    instruction's colon), and of all tokens; both L2-normalised like the model's Normalize module."""
    tok = model.tokenizer
    enc = tok(prompt + text, return_offsets_mapping=True, return_tensors="pt")
    ends = enc["offset_mapping"][0, :, 1]
    is_query = ends > len(prompt.rstrip())
    with torch.no_grad():
        hidden = model.transformers_model(input_ids=enc["input_ids"],
                                          attention_mask=enc["attention_mask"]).last_hidden_state[0]
    assert 0 < int(is_query.sum()) < hidden.shape[0]
    out = []
    for rows in (hidden[is_query], hidden):
        v = rows.mean(0)
        out.append((v / v.norm()).numpy())
    return out[0], out[1]


@pytest.mark.parametrize("arch", ["mistral", "qwen2", "llama"])
def test_instruction_tokens_are_excluded_from_mean_pooling(bases, arch):
    model = build_decoder_embedder(DecoderConfig(base=str(bases[arch])))
    prompt = instruction_prompt(INSTRUCTION)
    assert prompt == INSTRUCTION + ": "
    for q in QUERIES:
        got = model.encode([q], prompt=prompt)[0]
        query_only, everything = _hand_pooled(model, prompt, q)
        np.testing.assert_allclose(got, query_only, atol=1e-5)
        assert not np.allclose(got, everything, atol=1e-3)  # the mask matters
    # documents carry no prompt: every token (BOS included) is pooled
    doc = "tumor cells in the liver"
    enc = model.tokenizer(doc, return_tensors="pt")
    with torch.no_grad():
        h = model.transformers_model(**enc).last_hidden_state[0].mean(0)
    np.testing.assert_allclose(model.encode([doc])[0], (h / h.norm()).numpy(), atol=1e-5)
    assert prompt_boundary_report(model, prompt, QUERIES).exact


@pytest.mark.parametrize("arch", ["mistral", "qwen2"])
def test_without_the_boundary_fix_bpe_tokenizers_mask_one_query_token_too_many(bases, arch):
    """Why exact_prompt_boundary exists: ST tokenizes the prompt alone, where the trailing space is a token."""
    model = build_decoder_embedder(DecoderConfig(base=str(bases[arch]), exact_prompt_boundary=False))
    report = prompt_boundary_report(model, instruction_prompt(INSTRUCTION), QUERIES)
    assert report.offsets.get(1, 0) >= 1 and not report.exact


def test_instruction_prompt_rules():
    assert instruction_prompt("Given a claim: ") == "Given a claim: "
    assert instruction_prompt("  ") == ""
    with pytest.raises(HardnegError):
        instruction_prompt(3)  # type: ignore[arg-type]


# ---------------------------------------------------------------- one stage: LoRA, masking in training, checkpointing


def _train_cfg(student: Path, **kw):
    from hardneg.train import TrainConfig

    base = dict(student=str(student), n_negatives=1, batch_size=4, max_steps=3, learning_rate=1e-3,
                warmup_steps=0, query_max_length=48, doc_max_length=24, lora=True,
                lora_target_modules=DEFAULT_LORA_TARGETS)
    return TrainConfig(**{**base, **kw})


def test_lora_trains_only_adapters_and_the_merged_folder_round_trips(student, root, monkeypatch):
    import hardneg.llm.recipe as recipe
    import hardneg.llm.stage as stage
    from hardneg.encode.encoder import EncoderSpec, load_encoder
    from sentence_transformers import SentenceTransformer

    seen: dict[str, list[str]] = {}
    real_add = stage.add_decoder_lora

    def spy(model, cfg):
        info = real_add(model, cfg)
        seen["trainable"] = [n for n, p in model.named_parameters() if p.requires_grad]
        return info

    monkeypatch.setattr(stage, "add_decoder_lora", spy)
    before = {k: v.clone() for k, v in SentenceTransformer(str(student)).transformers_model.state_dict().items()}
    data = [recipe.StageData("scifact", "retrieval", _rows(12, 2, 1, "a"), INSTRUCTION)]
    res = recipe.fit_stage(data, _train_cfg(student), recipe.LLMTrainExtras(), root / "lora", progress=False)

    assert seen["trainable"] and all("lora_" in n for n in seen["trainable"])
    hf = res.model.transformers_model
    layers, r = hf.config.num_hidden_layers, 16
    h, i = hf.config.hidden_size, hf.config.intermediate_size
    kv = hf.config.num_key_value_heads * (h // hf.config.num_attention_heads)
    per_layer = r * ((h + h) + 2 * (h + kv) + (h + h) + 2 * (h + i) + (i + h))  # q, k+v, o, gate+up, down
    assert res.record["lora"]["trainable_params"] == layers * per_layer
    after = hf.state_dict()
    assert set(after) == set(before)  # merged: no peft names left
    for name, w in after.items():
        target = any(f".{t}." in name for t in DEFAULT_LORA_TARGETS)
        assert torch.equal(w, before[name]) is (not target), name  # only adapted projections moved
    assert res.record["weights"]["final_sha256"] == weights_digest(res.model)
    assert res.record["gradient_checkpointing_active"] is True
    assert res.record["precision"] == {"bf16": False, "weights_dtype": "float32",
                                       "reason": "auto: no CUDA device with bf16 (fp32)"}

    prompt = instruction_prompt(INSTRUCTION)
    enc = load_encoder(EncoderSpec(model=str(root / "lora"), query_prompt=prompt))
    np.testing.assert_allclose(enc.encode(QUERIES, "query", progress=False),
                               res.model.encode(QUERIES, prompt=prompt), atol=1e-5)
    np.testing.assert_allclose(enc.encode(QUERIES, "doc", progress=False), res.model.encode(QUERIES), atol=1e-5)
    assert is_bidirectional(enc.model)


def test_training_masks_each_sources_instruction_like_encode(student, root, monkeypatch):
    """Batches are drawn from one source at a time, so each anchor batch carries that source's prompt length,
    the same number encode() uses; document columns carry none."""
    import hardneg.llm.recipe as recipe
    from sentence_transformers.sentence_transformer.modules import Pooling

    lengths: list[int | None] = []
    real = Pooling.forward

    def spy(self, features, **kw):
        pl = features.get("prompt_length")
        lengths.append(None if pl is None else int(pl[0]) if torch.is_tensor(pl) else int(pl))
        return real(self, features, **kw)

    monkeypatch.setattr(Pooling, "forward", spy)
    short = "Classify the intent of the given banking query"
    data = [recipe.StageData("scifact", "retrieval", _rows(8, 1, 1, "a"), INSTRUCTION),
            recipe.StageData("banking", "classification", _rows(8, 1, 2, "b"), short)]
    res = recipe.fit_stage(data, _train_cfg(student, max_steps=4), recipe.LLMTrainExtras(gradient_checkpointing=False),
                           root / "masking", progress=False)
    expect = {res.model[0]._get_prompt_length(instruction_prompt(t)) for t in (INSTRUCTION, short)}
    assert len(expect) == 2
    anchors = [x for x in lengths if x is not None]
    assert set(anchors) == expect  # both sources trained, each with its own instruction masked
    assert lengths.count(None) == len(anchors)  # one document forward per anchor forward
    assert res.record["losses"]["scifact"]["class"] == "MultipleNegativesRankingLoss"
    assert res.record["losses"]["banking"]["class"] == "OwnNegativesInfoNCELoss"


def test_an_instruction_longer_than_the_query_budget_is_refused(student, root):
    import hardneg.llm.recipe as recipe

    data = [recipe.StageData("scifact", "retrieval", _rows(4, 1, 1, "a"), INSTRUCTION)]
    with pytest.raises(HardnegError, match="no query token"):
        recipe.fit_stage(data, _train_cfg(student, query_max_length=8), recipe.LLMTrainExtras(), root / "short",
                         progress=False)
    assert not (root / "short").exists()


def test_sources_get_their_own_batch_sampler():
    from datasets import Dataset, DatasetInfo
    from sentence_transformers.base.sampler import DefaultBatchSampler, NoDuplicatesBatchSampler

    from hardneg.llm.recipe import kind_batch_sampler

    cols = {"anchor": ["a", "b"], "positive": ["c", "d"]}
    kw = dict(batch_size=2, drop_last=False, valid_label_columns=None, generator=torch.Generator(), seed=0)
    retrieval = Dataset.from_dict(cols, info=DatasetInfo(description="hardneg:retrieval"))
    other = Dataset.from_dict(cols, info=DatasetInfo(description="hardneg:classification"))
    assert isinstance(kind_batch_sampler(True)(retrieval, **kw), NoDuplicatesBatchSampler)
    assert not isinstance(kind_batch_sampler(True)(other, **kw), NoDuplicatesBatchSampler)
    assert isinstance(kind_batch_sampler(False)(retrieval, **kw), DefaultBatchSampler)


def test_data_source_names_and_instructions():
    from hardneg.llm.recipe import DataSource

    src = DataSource(mined="runs/mine/scifact/percpos-0.95_topk-5/mined.jsonl")
    assert src.resolved_name == "scifact"
    assert src.resolved_instruction.startswith("Given a scientific claim")
    assert DataSource(beir="../shared/data/nfcorpus").resolved_name == "nfcorpus"
    assert DataSource(mined="x.jsonl", kind="sts", instruction="").resolved_instruction == ""


def test_gradient_checkpointing_gives_the_same_weights(student, root):
    import hardneg.llm.recipe as recipe

    data = [recipe.StageData("scifact", "retrieval", _rows(8, 1, 3, "c"), INSTRUCTION)]
    digests = []
    for gc in (True, False):
        res = recipe.fit_stage(data, _train_cfg(student, max_steps=2), recipe.LLMTrainExtras(gradient_checkpointing=gc),
                               root / f"gc-{gc}", progress=False)
        assert res.record["gradient_checkpointing_active"] is gc
        digests.append({k: v.clone() for k, v in res.model.transformers_model.state_dict().items()})
    for k in digests[0]:
        assert torch.allclose(digests[0][k], digests[1][k], atol=1e-6), k


def test_bf16_is_detected_not_assumed(monkeypatch):
    import hardneg.llm.decoder as decoder
    from hardneg.llm.recipe import LLMTrainExtras, resolve_precision

    monkeypatch.setattr(decoder, "bf16_supported", lambda: False)
    assert resolve_precision(LLMTrainExtras()).bf16 is False
    assert resolve_precision(LLMTrainExtras()).weights_dtype == "float32"
    with pytest.raises(HardnegError, match="bfloat16"):
        resolve_precision(LLMTrainExtras(bf16=True))
    monkeypatch.setattr(decoder, "bf16_supported", lambda: True)
    p = resolve_precision(LLMTrainExtras())
    assert (p.bf16, p.weights_dtype) == (True, "bfloat16")
    assert resolve_precision(LLMTrainExtras(bf16=False)).weights_dtype == "float32"


# ---------------------------------------------------------------- the recipe: config and two stages


def test_shipped_recipe_states_table_9():
    from hardneg.llm.recipe import load_recipe

    cfg = load_recipe(ROOT / "configs" / "nv-retriever-v1.toml")
    m = cfg.model
    assert (m.base, m.bidirectional, m.mask_instruction, m.normalize) == ("mistralai/Mistral-7B-v0.1", True, True, True)
    s1, s2 = cfg.stage1, cfg.stage2
    assert s2 is not None and s2.include_stage1_data
    for s, neg, bs, acc in ((s1, 1, 32, 4), (s2, 5, 8, 16)):
        t = s.train
        assert (t.learning_rate, t.warmup_steps, t.epochs, t.n_negatives, t.batch_size, t.grad_accum) == \
            (1e-5, 100, 12.0, neg, bs, acc)
        assert (t.lora, t.lora_rank, t.lora_alpha, t.lora_dropout) == (True, 16, 32, 0.1)
        assert set(t.lora_target_modules) == set(DEFAULT_LORA_TARGETS)
        assert (t.query_max_length, t.doc_max_length, t.in_batch_negatives) == (192, 512, True)
        assert (s.extras.optimizer, s.extras.gradient_checkpointing, s.extras.bf16) == ("adamw_torch", True, "auto")
    assert {d.kind for d in s1.data} == {"retrieval"}
    assert len(s1.data) == 15 and sum(d.max_rows for d in s1.data) == 728_160  # Table 7
    assert {"classification", "clustering", "sts"} <= {d.kind for d in s2.data}
    assert cfg.mine is not None and cfg.mine.strategy == "percpos(0.95)+topk(5)"


def test_bad_recipe_lists_every_problem():
    from hardneg.llm.recipe import recipe_from_dict

    raw = {"model": {"base": "x", "dtype": "int8"}, "lora": {"rnak": 4},
           "stage1": {"batch_size": 0, "nope": 1, "data": [{"kind": "sts", "mined": "a.jsonl"}]},
           "evaluate": {"models": ["teacher"]}, "extra": {}}
    with pytest.raises(ConfigErrors) as exc:
        recipe_from_dict(raw, ["train.bf16=maybe"])
    msg = " ".join(exc.value.problems)
    for needle in ("dtype='int8'", "rnak", "batch_size=0", "'nope'", "needs an instruction", "teacher",
                   "unknown section [extra]", "bf16='maybe'"):
        assert needle in msg, (needle, msg)


def test_two_stage_recipe_runs_and_stage2_starts_from_stage1(root, bases, monkeypatch):
    import hardneg.llm.recipe as recipe

    data = write_tiny_beir(root / "scifact", n_docs=40, n_queries=16)
    cls_rows = _rows(8, 5, 7, "k")  # a classification source: (text, same-label text, other-label texts)
    cls_file = root / "banking77.jsonl"
    cls_file.write_text("".join(json.dumps(r) + "\n" for r in cls_rows))
    toml = root / "recipe.toml"
    toml.write_text(f"""
[recipe]
out = "{root / 'recipe-out'}"
cache = "{root / 'cache'}"
[model]
base = "{bases['mistral']}"
max_seq_length = 64
[lora]
rank = 4
alpha = 8
[train]
learning_rate = 1e-3
warmup_steps = 0
query_max_length = 48
doc_max_length = 24
short_rows = "pad"
[mine]
teacher = {{ model = "hash" }}
strategy = "percpos(0.95)+topk(5)"
depth = 12
[stage1]
n_negatives = 1
batch_size = 4
max_steps = 2
[[stage1.data]]
beir = "{data}"
name = "scifact"
[stage2]
n_negatives = 5
batch_size = 2
max_steps = 3
include_stage1_data = true
[[stage2.data]]
mined = "{cls_file}"
kind = "classification"
instruction = "Classify the intent of the given banking query"
[evaluate]
datasets = ["{data}"]
max_seq_length = 32
depth = 20
""")
    res = recipe.run_recipe(recipe.load_recipe(toml), progress=False)
    w = res["weights"]
    assert w["stage2"]["initial"] == w["stage1"]["final"] != w["stage1"]["initial"]
    assert w["stage2"]["final"] != w["stage2"]["initial"]
    out = root / "recipe-out"
    s2 = json.loads((out / "stages" / res["stages"]["stage2"] / "train_config.json").read_text())
    assert s2["student_path"] == str(out / "stages" / res["stages"]["stage1"])
    assert s2["n_negatives"] == 5 and set(s2["sources"]) == {"scifact", "banking77"}
    assert s2["losses"]["banking77"]["in_batch_negatives"] is False
    assert s2["sources"]["scifact"]["query_prompt"] == instruction_prompt(
        "Given a scientific claim, retrieve documents that support or refute the claim")
    metrics = json.loads((out / "results.json").read_text())["metrics"]["scifact"]
    assert set(metrics) == {"base", "stage1", "stage2"} and all("ndcg@10" in m for m in metrics.values())
    assert [(r["dataset"], r["model"]) for r in recipe.summary_rows(res)] == \
        [("scifact", "base"), ("scifact", "stage1"), ("scifact", "stage2")]

    def boom(*a, **k):
        raise AssertionError("a finished stage ran again")

    monkeypatch.setattr(recipe, "fit_stage", boom)
    monkeypatch.setattr("hardneg.evaluate.pipeline.evaluate_model", boom)
    again = recipe.run_recipe(recipe.load_recipe(toml), progress=False)
    assert again["stages"] == res["stages"] and again["metrics"] == res["metrics"]


# ---------------------------------------------------------------- `hardneg run` with an LLM student


def test_hardneg_run_trains_and_evaluates_an_llm_student(root, student):
    from hardneg.experiments.config import load_config
    from hardneg.experiments.run import run_pipeline

    data = write_tiny_beir(root / "run-data", n_docs=40, n_queries=16)
    cfg = root / "run.toml"
    cfg.write_text(f"""
[data]
path = "{data}"
dev = 0.25
[teacher]
model = "hash"
[mine]
strategy = "percpos(0.95)+topk(2)"
depth = 10
[train]
student = "{student}"
max_steps = 3
batch_size = 4
learning_rate = 1e-3
query_max_length = 48
doc_max_length = 24
short_rows = "pad"
lora = true
lora_target_modules = {json.dumps(list(DEFAULT_LORA_TARGETS))}
query_prompt = "{instruction_prompt(INSTRUCTION)}"
[evaluate]
max_seq_length = 32
depth = 20
[run]
out = "{root / 'run-out'}"
cache = "{root / 'cache'}"
""")
    res = run_pipeline(load_config(cfg), progress=False)
    saved = json.loads((root / "run-out" / "results.json").read_text())
    for split in ("dev", "test"):
        assert set(saved["metrics"][split]) == {"base", "finetuned"}
        assert all("ndcg@10" in m for m in saved["metrics"][split].values())
    tuned = root / "run-out" / "stages" / res["stages"]["train"]
    assert json.loads((tuned / "config.json").read_text())["is_causal"] is False
    assert json.loads((tuned / "1_Pooling" / "config.json").read_text())["include_prompt"] is False
    assert json.loads((tuned / "train_config.json").read_text())["lora"]["target_modules"] == \
        sorted(DEFAULT_LORA_TARGETS)
