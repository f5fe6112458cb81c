"""Tiny offline fixtures for tests, demos and the kill/resume script: a BEIR folder and a random student."""
from __future__ import annotations

import json
import zlib
from pathlib import Path

WORDS = ("cells genes protein cancer tumor patients study brain heart blood liver kidney drug dose trial "
         "mice rats virus bacteria immune response signal pathway receptor enzyme").split()


def write_tiny_beir(folder: Path, n_docs: int = 60, n_queries: int = 24, seed: int = 0) -> Path:
    """A synthetic BEIR folder: docs are word bags, each query copies words of its (1 or 2) positives."""
    import numpy as np

    rng = np.random.default_rng(seed)
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    docs = [" ".join(rng.choice(WORDS, size=12)) for _ in range(n_docs)]
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as fh:
        for i, text in enumerate(docs):
            fh.write(json.dumps({"_id": f"d{i}", "title": f"doc {i}", "text": text}) + "\n")
    qrels: dict[str, list[str]] = {}
    with open(folder / "queries.jsonl", "w", encoding="utf-8") as fh:
        for i in range(n_queries):
            pos = [f"d{j}" for j in rng.choice(n_docs, size=1 + (i % 3 == 0), replace=False)]
            words = [w for p in pos for w in docs[int(p[1:])].split()[:4]]
            fh.write(json.dumps({"_id": f"q{i}", "text": " ".join(words)}) + "\n")
            qrels[f"q{i}"] = pos
    split_at = int(n_queries * 0.75)
    for split, qids in (("train", list(qrels)[:split_at]), ("test", list(qrels)[split_at:])):
        with open(folder / "qrels" / f"{split}.tsv", "w", encoding="utf-8") as fh:
            fh.write("query-id\tcorpus-id\tscore\n")
            for q in qids:
                for d in qrels[q]:
                    fh.write(f"{q}\t{d}\t1\n")
    return folder


def tiny_run_config(data: str | Path, student: str | Path, out: str | Path, cache: str | Path, *, dev: str = "0.2",
                    max_steps: int = 3, mine: str = 'strategy = "percpos(0.95)+topk(2)"', evaluate: str = "",
                    extra: str = "") -> str:
    """A ``hardneg run`` / ``hardneg ablate`` TOML for the tiny data: hash teacher, tiny student, a few steps.

    ``mine`` and ``evaluate``: extra lines for those sections; ``extra``: more sections (e.g. a ``[grid]``).
    """
    return f"""
[data]
path = "{data}"
dev = {dev}
[teacher]
model = "hash"
[mine]
{mine}
depth = 10
[train]
student = "{student}"
max_steps = {max_steps}
batch_size = 4
doc_max_length = 32
query_max_length = 16
short_rows = "pad"
[evaluate]
max_seq_length = 32
depth = 50
{evaluate}
[run]
out = "{out}"
cache = "{cache}"
{extra}"""


def make_tiny_student(folder: Path, seed: int = 0) -> Path:
    """A randomly initialised 2-layer BERT (hidden 32, mean pooling) saved as a sentence-transformers folder."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling
    from transformers import BertConfig, BertModel, BertTokenizerFast

    hf = folder / "hf"
    hf.mkdir(parents=True, exist_ok=True)
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *chars, *("##" + c for c in chars)]
    (hf / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(hf)
    BertTokenizerFast(vocab_file=str(hf / "vocab.txt"), do_lower_case=True).save_pretrained(hf)
    module = Transformer(str(hf), max_seq_length=64)
    model = SentenceTransformer(modules=[module, Pooling(module.get_embedding_dimension(), "mean")])
    model.save(str(folder / "st"))
    return folder / "st"


def make_pool(queries: list[tuple[str, list, list[tuple[int, float]]]], depth: int | None = None,
              teacher: str = "hand"):
    """A hand-made CandidatePool. ``queries``: (qid, positives, [(corpus row, score), ...] in rank order).

    Positives are either scores, placed at corpus rows ``10 * (crc32(qid) % 100000) + k`` (stable for a qid
    whatever the other queries) with candidate ranks 1, 2, ...; or (corpus row, score) pairs, and then a
    candidate's raw rank also counts the positives above it (higher score, or equal score and lower row), as a
    real search's does.
    """
    import numpy as np

    from hardneg.types import CandidatePool

    depth = depth or max(max(len(c) for _, _, c in queries), 1)
    q = len(queries)
    cand_idx = np.full((q, depth), -1, dtype=np.int32)
    cand_score = np.full((q, depth), np.nan, dtype=np.float32)
    cand_rank = np.full((q, depth), -1, dtype=np.int32)
    ptr, pidx, pscore = [0], [], []
    for i, (qid, pos, cands) in enumerate(queries):
        explicit = [p for p in pos if isinstance(p, tuple)]
        for j, (row, s) in enumerate(cands):
            above = sum(1 for pr, ps in explicit if ps > s or (ps == s and pr < row))
            cand_idx[i, j], cand_score[i, j], cand_rank[i, j] = row, s, j + 1 + above
        for k, p in enumerate(pos):
            row, s = p if isinstance(p, tuple) else (10 * (zlib.crc32(qid.encode()) % 100_000) + k, p)
            pidx.append(row)
            pscore.append(s)
        ptr.append(len(pidx))
    return CandidatePool(teacher=teacher, qids=tuple(x[0] for x in queries), cand_idx=cand_idx, cand_score=cand_score,
                         cand_rank=cand_rank, pos_ptr=np.asarray(ptr, dtype=np.int64),
                         pos_idx=np.asarray(pidx, dtype=np.int32), pos_score=np.asarray(pscore, dtype=np.float32))
