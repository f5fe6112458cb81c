"""hardneg: positive-aware hard-negative mining and embedding fine-tuning (NV-Retriever, arXiv 2407.15831)."""

__version__ = "0.1.0"
