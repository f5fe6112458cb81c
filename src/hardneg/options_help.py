"""The help sentence of each config field whose dataclass is declared in a module that carries none (``EncoderSpec``,
``TrainConfig``, ``SearchSpec``, ...): ``hardneg.options`` reads names, types and defaults from those classes' source
and the sentence from here. Plain data, no imports, so ``--help`` stays fast.
"""
from __future__ import annotations

# Help of the fields of dataclasses owned by modules that declare none (their source stays the authority for the
# names, types and defaults; only the sentence lives here).
HELP: dict[str, dict[str, str]] = {
    "EncoderSpec": {
        "model": "Encoder: an alias (minilm, mpnet, minilm-int8; hash is a test-only fake), a folder or a hub id.",
        "query_prompt": "Text prepended to every query.", "doc_prompt": "Text prepended to every document.",
        "max_seq_length": "Truncation in tokens [default: the model's].", "batch_size": "Encoding batch size.",
        "normalize": "L2-normalise embeddings (scores are cosines).",
        "dtype": "Storage dtype of cached embeddings: float32 or float16.",
        "backend": "Encoder runtime: torch or onnx.",
        "trust_remote_code": "Allow a hub model's own Python code (off by default).",
        "precision": "Compute precision: fp32, bf16 or auto (bf16 where native and its fidelity probe passes; "
                     "fp32 for a mining teacher, whose ranking bf16 changes).",
    },
    "SearchSpec": {
        "backend": "Search backend: exact, faiss-flat, faiss-ivf, faiss-hnsw or ray (docs/scale.md).",
        "nlist": "faiss-ivf: inverted lists [default: ~4 sqrt(n)].", "nprobe": "faiss-ivf: lists probed [nlist/8].",
        "hnsw_m": "faiss-hnsw: links per node [32].", "ef_search": "faiss-hnsw: search width [max(2k, 64)].",
        "ray_address": "ray: cluster address (ray://host:10001 or auto) [default: a local Ray].",
    },
    "EncodeBackend": {
        "backend": "Where encoders run: local (this process) or ray (an actor pool; same embeddings and cache "
                   "entries, never part of a key; docs/scale.md).",
        "ray_address": "ray: cluster address (ray://host:10001, host:6379 or auto) [default: $RAY_ADDRESS, else a "
                       "local Ray].",
        "workers": "ray: encoder actors [default: the cluster's CPUs // cpus_per_worker].",
        "cpus_per_worker": "ray: CPUs each actor reserves (and its torch threads).",
        "chunk_size": "ray: texts per task [default: ~4 tasks per worker per call, at least the batch size].",
    },
    "TrainConfig": {
        "student": "Alias, model folder or hub id.",
        "n_negatives": "Hard negatives per row [default: the most any row has].",
        "short_rows": "Rows short of n negatives: drop, or pad with other rows' negatives.",
        "in_batch_negatives": "Also use the other documents of the batch as negatives.",
        "temperature": "InfoNCE temperature (scale = 1/temperature; 0.05 = scale 20).",
        "loss": "infonce, or cached_infonce (GradCache: large batches in small memory).",
        "mini_batch_size": "cached_infonce: rows per forward pass.", "learning_rate": "AdamW learning rate.",
        "warmup_ratio": "Linear warm-up as a fraction of the steps.",
        "warmup_steps": "Linear warm-up steps (replaces warmup_ratio).", "epochs": "Training epochs.",
        "max_steps": "Stop after this many steps (overrides epochs).", "batch_size": "Queries per batch.",
        "grad_accum": "Gradient accumulation steps.", "weight_decay": "AdamW weight decay.",
        "query_max_length": "Query truncation in tokens.", "doc_max_length": "Document truncation in tokens.",
        "query_prompt": "Text prepended to queries.", "doc_prompt": "Text prepended to documents.",
        "seed": "Seed of shuffling, padding and initialisation.",
        "lora": "Train LoRA adapters (peft) instead of all weights; merged on save.",
        "lora_rank": "LoRA rank (NV-Retriever-v1: 16).", "lora_alpha": "LoRA alpha (NV-Retriever-v1: 32).",
        "lora_dropout": "LoRA dropout.",
        "lora_target_modules": "LoRA target modules, repeatable [default: peft's for the architecture].",
        "report_to": "Trainer loggers, repeatable: tensorboard, wandb, ...",
        "eval_steps": "With eval rows: evaluate every n steps [default: once, after training].",
        "gradient_checkpointing": "Recompute activations in the backward pass (large students).",
        "checkpoint_every_n_layers": "With gradient_checkpointing: recompute only every n-th layer (less "
                                     "recompute, more memory; 1 = all).",
        "bf16": "bf16 mixed precision: auto (where the GPU or CPU has native bf16: 1.5-2.4x faster steps on an "
                "avx512_bf16 CPU), true (required) or false (fp32).",
        "mask_false_negatives": "In-batch false-negative masking: none, id (same positive id), text (same text) or "
                                "score(m) (scores above the positive + m).",
    },
}
