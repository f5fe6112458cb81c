"""hardneg.train: config validation, row preparation, losses by hand, and short runs on a tiny random BERT."""
from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from hardneg.errors import ConfigErrors, HardnegError
from hardneg.train import TrainConfig

WORDS = ("cells genes protein cancer tumor patients study brain heart blood liver kidney drug dose trial "
         "mice rats virus bacteria immune response signal pathway receptor enzyme").split()
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> object:
    """One torch thread for the tiny model: its ops are too small to share, and a busy 2-core box makes
    OpenMP threads spin (3x slower wall time measured). Restored for the other test modules."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def tiny_student(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer BERT (hidden 32) with mean pooling, saved as a sentence-transformers folder."""
    from hardneg.testing import make_tiny_student

    return make_tiny_student(tmp_path_factory.mktemp("tiny"))


def _text(rng: np.random.Generator, n: int, tag: str) -> str:
    return " ".join(rng.choice(WORDS, size=n)) + f" {tag}"


def fake_rows(n_rows: int = 16, n_neg: int = 3, short_every: int = 0, seed: int = 0) -> list[dict]:
    """Mined rows with distinct texts; every ``short_every``-th row has a single negative."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_rows):
        k = 1 if short_every and i % short_every == 0 else n_neg
        rows.append({"qid": f"q{i}", "query": _text(rng, 4, f"q{i}"),
                     "pos": {"docid": f"p{i}", "text": _text(rng, 12, f"p{i}"), "score": 0.9},
                     "neg": [{"docid": f"n{i}x{j}", "text": _text(rng, 12, f"n{i}x{j}"), "score": 0.5, "rank": j}
                             for j in range(k)]})
    return rows


def tiny_cfg(student: Path, **kw) -> TrainConfig:
    base = dict(student=str(student), batch_size=4, max_steps=3, learning_rate=1e-3, query_max_length=8,
                doc_max_length=24, warmup_ratio=0.0)
    base.update(kw)
    return TrainConfig(**base)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tensors(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


# ---------------------------------------------------------------- config

def test_config_defaults_round_trip_and_scale() -> None:
    cfg = TrainConfig()
    assert cfg.scale == pytest.approx(20.0)  # temperature 0.05 == sentence-transformers' default scale 20
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and hash(again) == hash(cfg)
    tuned = TrainConfig.from_dict({"lora_target_modules": ["query", "value"], "report_to": ["tensorboard"],
                                   "epochs": 2})
    assert tuned.lora_target_modules == ("query", "value") and tuned.epochs == 2.0


def test_config_reports_every_bad_value_at_once() -> None:
    with pytest.raises(ConfigErrors) as err:
        TrainConfig(temperature=0, batch_size=0, loss="nope", short_rows="keep", report_to=("none",),
                    learning_rate=-1, lora_target_modules=(), n_negatives=-2, warmup_ratio=1.5, epochs=True,
                    checkpoint_every_n_layers=0)
    text = str(err.value)
    for key in ("temperature", "batch_size", "loss", "short_rows", "report_to", "learning_rate",
                "lora_target_modules", "n_negatives", "warmup_ratio", "epochs", "checkpoint_every_n_layers"):
        assert f"{key}=" in text
    assert len(err.value.problems) == 11


def test_from_dict_lists_unknown_keys_and_bad_values_together() -> None:
    with pytest.raises(ConfigErrors) as err:
        TrainConfig.from_dict({"lr": 1e-5, "batchsize": 8, "temperature": -1.0})
    text = str(err.value)
    assert "'batchsize'" in text and "'lr'" in text and "temperature=" in text and "valid keys" in text


def test_in_batch_off_needs_negatives() -> None:
    with pytest.raises(ConfigErrors, match="n_negatives"):
        TrainConfig(in_batch_negatives=False, n_negatives=0)


# ---------------------------------------------------------------- losses, by hand

def _cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def _nll(logits: list[float], target: int) -> float:
    m = max(logits)
    return -(logits[target] - (m + math.log(sum(math.exp(v - m) for v in logits))))


Q = [[1.0, 0.0, 0.5], [0.2, 1.0, -0.3]]
P = [[0.9, 0.1, 0.4], [0.0, 0.8, 0.1]]
N1 = [[0.5, 0.5, 0.0], [0.3, 0.9, -0.5]]
N2 = [[-0.2, 0.3, 1.0], [1.0, 0.0, 0.0]]
SCALE = 20.0


def _t(x: list[list[float]]) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


def test_mnrl_with_hard_negatives_equals_hand_computation() -> None:
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    loss = MultipleNegativesRankingLoss(model=None, scale=SCALE)
    got = loss.compute_loss_from_embeddings([_t(Q), _t(P), _t(N1), _t(N2)], None).item()
    # Row i: softmax over all positives, then all negative_1, then all negative_2; target = its own positive.
    docs = P + N1 + N2
    want = sum(_nll([SCALE * _cos(Q[i], d) for d in docs], i) for i in range(2)) / 2
    assert got == pytest.approx(want, rel=1e-9)


def test_own_negatives_loss_equals_hand_computation() -> None:
    from hardneg.train.losses import OwnNegativesInfoNCELoss

    loss = OwnNegativesInfoNCELoss(model=None, scale=SCALE)
    got = loss.compute_loss_from_embeddings([_t(Q), _t(P), _t(N1), _t(N2)]).item()
    # Row i: softmax over [its positive, its negative_1, its negative_2] only.
    want = sum(_nll([SCALE * _cos(Q[i], d) for d in (P[i], N1[i], N2[i])], 0) for i in range(2)) / 2
    assert got == pytest.approx(want, rel=1e-9)
    # Sanity: the in-batch version is a different (larger) number on the same embeddings.
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    assert MultipleNegativesRankingLoss(None, scale=SCALE).compute_loss_from_embeddings(
        [_t(Q), _t(P), _t(N1), _t(N2)], None).item() > got


def test_cached_own_negatives_matches_value_and_embedding_gradients() -> None:
    from hardneg.train.losses import CachedOwnNegativesInfoNCELoss, OwnNegativesInfoNCELoss

    cols = [_t(Q), _t(P), _t(N1), _t(N2)]
    plain = [c.clone().requires_grad_() for c in cols]
    want = OwnNegativesInfoNCELoss(None, scale=SCALE).compute_loss_from_embeddings(plain)
    want.backward()
    cached = CachedOwnNegativesInfoNCELoss(None, scale=SCALE, mini_batch_size=1)
    # reps: per column, a list of mini-batches (here rows one by one), as GradCache produces them.
    reps = [[c[i:i + 1].clone().requires_grad_() for i in range(2)] for c in cols]
    got = cached.calculate_loss(reps, with_backward=True)
    assert got.item() == pytest.approx(want.item(), rel=1e-12)
    for p, mbs in zip(plain, reps):
        assert torch.allclose(torch.cat([m.grad for m in mbs]), p.grad, atol=1e-12)


# ---------------------------------------------------------------- rows -> columns

def test_prepare_rows_drop_policy_and_n_from_data() -> None:
    from hardneg.train.trainer import prepare_rows, resolve_n_negatives

    rows = fake_rows(8, n_neg=3, short_every=4)  # rows 0 and 4 have one negative
    rows.append({**rows[1], "neg": rows[1]["neg"] + rows[2]["neg"][:1]})  # a row with 4 -> n = 4
    assert resolve_n_negatives(rows, None) == 4
    prep = prepare_rows(rows, 3, "drop", seed=0)
    assert (prep.n_rows_in, prep.n_rows_used, prep.n_rows_dropped, prep.n_rows_truncated) == (9, 7, 2, 1)
    assert list(prep.columns) == ["anchor", "positive", "negative_1", "negative_2", "negative_3"]
    assert all(len(v) == 7 for v in prep.columns.values())
    assert prep.columns["negative_3"][-1] == rows[1]["neg"][2]["text"]  # cut to the first n, in rank order


def test_prepare_rows_pad_policy_is_seeded_and_never_uses_own_positives() -> None:
    from hardneg.train.trainer import prepare_rows

    rows = fake_rows(12, n_neg=3, short_every=3)
    # q0 also has a second positive whose doc appears as another row's negative: it must never pad q0.
    rows.append({**rows[0], "pos": {"docid": "n5x0", "text": rows[5]["neg"][0]["text"], "score": 0.8}})
    rows.append({**rows[0], "neg": []})  # zero negatives: padded entirely
    a = prepare_rows(rows, 3, "pad", seed=7)
    b = prepare_rows(rows, 3, "pad", seed=7)
    assert a == b and a.n_rows_used == len(rows) and a.n_rows_dropped == 0
    assert a.n_rows_padded == 6 and a.n_pad_negatives == 2 * 5 + 3
    banned = {rows[5]["neg"][0]["text"], rows[0]["pos"]["text"]}
    for i, r in enumerate(rows):
        negs = [a.columns[f"negative_{j}"][i] for j in (1, 2, 3)]
        assert len(set(negs)) == 3 and r["pos"]["text"] not in negs
        if r["qid"] == "q0":
            assert not banned & set(negs)
    assert prepare_rows(rows, 3, "pad", seed=8) != a
    with pytest.raises(HardnegError, match="cannot pad"):
        prepare_rows(fake_rows(2, n_neg=1), 5, "pad", seed=0)


def test_malformed_rows_and_nothing_left_are_user_errors(tiny_student: Path, tmp_path: Path) -> None:
    from hardneg.train import train

    with pytest.raises(HardnegError, match="row 2"):
        train([fake_rows(2)[0], {"qid": "x", "query": "y"}], tiny_cfg(tiny_student), tmp_path / "o")
    with pytest.raises(HardnegError, match="no training rows left"):
        train(fake_rows(4, n_neg=1), tiny_cfg(tiny_student, n_negatives=2), tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_collator_truncates_queries_and_documents_separately(tiny_student: Path) -> None:
    from sentence_transformers import SentenceTransformer

    from hardneg.train.trainer import make_collator

    model = SentenceTransformer(str(tiny_student))
    cfg = tiny_cfg(tiny_student, query_max_length=6, doc_max_length=20, query_prompt="cells ")
    cols = ["anchor", "positive", "negative_1"]
    long = " ".join(WORDS * 3)
    batch = make_collator(model, cfg, cols)([{c: long for c in cols}] * 2)
    assert batch["anchor_input_ids"].shape == (2, 6)
    assert batch["positive_input_ids"].shape == (2, 20) and batch["negative_1_input_ids"].shape == (2, 20)
    assert int(batch["anchor_prompt_length"]) == 2  # [CLS] cells
    assert "positive_prompt_length" not in batch  # no doc prompt


# ---------------------------------------------------------------- training runs on the tiny BERT

def test_train_changes_weights_and_saved_folder_reloads(tiny_student: Path, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    from hardneg.train.trainer import fit

    rows = fake_rows(16, n_neg=3, short_every=5)
    res = fit(rows, tiny_cfg(tiny_student), tmp_path / "out", progress=False, eval_rows=fake_rows(4, seed=1))
    out = res.out_dir
    assert {"model.safetensors", "modules.json", "train_config.json", "loss_curve.json",
            "loss_curve.png"} <= set(os.listdir(out))
    assert not [p for p in out.iterdir() if p.suffix in (".bin", ".pt", ".pkl")]  # safetensors only
    assert not list(tmp_path.glob(".out.*"))  # the temporary sibling was renamed away
    before, after = tensors(tiny_student), tensors(out)
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)

    record = json.loads((out / "train_config.json").read_text())
    assert record["data"] == {"n_negatives": 3, "rows_in": 16, "rows_used": 12, "rows_dropped": 4,
                              "rows_padded": 0, "pad_negatives": 0, "rows_truncated": 0}
    assert record["loss"]["class"] == "MultipleNegativesRankingLoss" and record["loss"]["scale"] == 20.0
    assert record["result"]["steps"] == 3 and "sentence-transformers" in record["versions"]
    curve = json.loads((out / "loss_curve.json").read_text())
    assert [r["step"] for r in curve["train"]] == [1, 2, 3]
    assert all(math.isfinite(r["loss"]) and "learning_rate" in r for r in curve["train"])
    assert len(curve["eval"]) == 1 and math.isfinite(curve["eval"][0]["eval_loss"])

    texts = ["cells genes protein", "heart blood dose trial mice"]
    reloaded = SentenceTransformer(str(out))
    np.testing.assert_allclose(reloaded.encode(texts), res.model.encode(texts), rtol=0, atol=1e-6)


def test_same_rows_config_and_seed_give_identical_weights(tiny_student: Path, tmp_path: Path) -> None:
    from hardneg.train import train

    rows = fake_rows(12)
    cfg = tiny_cfg(tiny_student, max_steps=2)
    a = train(rows, cfg, tmp_path / "a", progress=False)
    b = train(rows, cfg, tmp_path / "b", progress=False)
    assert sha(a / "model.safetensors") == sha(b / "model.safetensors")
    assert (a / "loss_curve.json").read_bytes() == (b / "loss_curve.json").read_bytes()


def test_checkpointing_every_layer_or_every_second_gives_the_plain_weights(tiny_student: Path,
                                                                          tmp_path: Path) -> None:
    """Recomputing activations (non-reentrant, RNG state restored: dropout draws the same masks) changes no
    weight; ``checkpoint_every_n_layers = 2`` on the 2-layer student recomputes layer 0 only."""
    from hardneg.train.trainer import fit

    rows = fake_rows(12)
    runs = {name: fit(rows, tiny_cfg(tiny_student, max_steps=2, **kw), tmp_path / name, progress=False)
            for name, kw in {"plain": {}, "all": {"gradient_checkpointing": True},
                             "every2": {"gradient_checkpointing": True, "checkpoint_every_n_layers": 2}}.items()}
    flags = {name: [layer.gradient_checkpointing for layer in r.model.transformers_model.encoder.layer]
             for name, r in runs.items()}
    assert flags == {"plain": [False, False], "all": [True, True], "every2": [True, False]}
    plain = tensors(tmp_path / "plain")
    for name in ("all", "every2"):
        other = tensors(tmp_path / name)
        assert all(torch.equal(plain[k], other[k]) for k in plain), name


def test_in_batch_off_cached_run_trains(tiny_student: Path, tmp_path: Path) -> None:
    from hardneg.train.trainer import fit

    cfg = tiny_cfg(tiny_student, in_batch_negatives=False, loss="cached_infonce", mini_batch_size=2,
                   short_rows="pad", max_steps=2)
    res = fit(fake_rows(8, short_every=4), cfg, tmp_path / "o", progress=False)
    assert res.record["loss"]["class"] == "CachedOwnNegativesInfoNCELoss"
    assert res.record["data"]["rows_padded"] == 2
    before, after = tensors(tiny_student), tensors(res.out_dir)
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_lora_trains_only_adapters_and_saves_a_merged_plain_model(tiny_student: Path, tmp_path: Path) -> None:
    pytest.importorskip("peft")
    from sentence_transformers import SentenceTransformer

    from hardneg.train.trainer import fit

    cfg = tiny_cfg(tiny_student, lora=True, lora_rank=4, lora_alpha=8, lora_target_modules=("query", "value"),
                   max_steps=2, learning_rate=1e-2)
    res = fit(fake_rows(8), cfg, tmp_path / "o", progress=False)
    lora = res.record["lora"]
    assert lora["target_modules"] == ["query", "value"] and lora["trainable_params"] == 2 * 2 * (2 * 4 * 32)
    files = set(os.listdir(res.out_dir))
    assert "adapter_config.json" not in files and "adapter_model.safetensors" not in files
    before, after = tensors(tiny_student), tensors(res.out_dir)
    assert before.keys() == after.keys()  # merged: same tensor names as the base model, no lora_A / lora_B
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    # Only the adapted Linear weights moved (the merge W + B A); biases and everything else are untouched.
    assert changed == {f"encoder.layer.{i}.attention.self.{m}.weight" for i in (0, 1) for m in ("query", "value")}
    texts = ["cells genes protein", "heart blood dose trial mice"]
    np.testing.assert_allclose(SentenceTransformer(str(res.out_dir)).encode(texts), res.model.encode(texts),
                               rtol=0, atol=1e-6)


# ---------------------------------------------------------------- the real MiniLM (slow)

def _scifact_rows(n: int) -> list[dict]:
    """n (query, positive) rows from SciFact train with 2 'negatives' taken from the next corpus lines."""
    corpus: dict[str, str] = {}
    with open(DATA / "corpus.jsonl", encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            corpus[d["_id"]] = (d.get("title", "") + " " + d["text"]).strip()
    queries = {}
    with open(DATA / "queries.jsonl", encoding="utf-8") as fh:
        for line in fh:
            q = json.loads(line)
            queries[q["_id"]] = q["text"]
    pairs = []
    with open(DATA / "qrels" / "train.tsv", encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            qid, docid, score = line.split()
            if int(score) > 0 and docid in corpus and qid in queries:
                pairs.append((qid, docid))
            if len(pairs) == n:
                break
    ids = list(corpus)
    rows = []
    for i, (qid, docid) in enumerate(pairs):
        negs = [d for d in ids[10 * i:10 * i + 4] if d != docid][:2]
        rows.append({"qid": qid, "query": queries[qid], "pos": {"docid": docid, "text": corpus[docid], "score": 1.0},
                     "neg": [{"docid": d, "text": corpus[d], "score": 0.5, "rank": r} for r, d in enumerate(negs)]})
    return rows


@pytest.mark.slow
def test_minilm_two_steps_on_scifact(tmp_path: Path) -> None:
    if not DATA.exists():
        pytest.skip("SciFact slice not available")
    from hardneg.encode.models import resolve_model

    rows = _scifact_rows(8)
    cfg = TrainConfig(student="minilm", batch_size=4, max_steps=2, doc_max_length=64, query_max_length=32)
    from hardneg.train import train

    out = train(rows, cfg, tmp_path / "minilm", progress=False)
    before, after = tensors(Path(resolve_model("minilm"))), tensors(out)
    assert set(after) <= set(before)  # the hub file also stores the position_ids buffer
    assert any(not torch.equal(before[k], after[k]) for k in after)
    assert json.loads((out / "train_config.json").read_text())["result"]["steps"] == 2


def test_lora_without_target_modules_uses_peft_default(tiny_student: Path, tmp_path: Path) -> None:
    """No lora_target_modules (the CLI's --lora): peft picks the architecture's default, BERT's query and value."""
    pytest.importorskip("peft")
    from hardneg.train.trainer import fit

    res = fit(fake_rows(8), tiny_cfg(tiny_student, lora=True, lora_rank=4, max_steps=1), tmp_path / "o",
              progress=False)
    assert res.record["lora"]["target_modules"] == ["query", "value"]
    assert res.record["lora"]["trainable_params"] == 2 * 2 * (2 * 4 * 32)  # 2 layers x 2 modules x (A + B)
