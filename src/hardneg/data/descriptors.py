"""Per-dataset facts that evaluation and training need (BEIR conventions)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Descriptor:
    """``ignore_identical_ids``: drop a retrieved doc whose id equals the query id (BEIR: ArguAna, Quora).

    ``instruction``: the task definition NV-Retriever / E5-Mistral put before queries of this dataset.
    """

    name: str
    ignore_identical_ids: bool = False
    main_metric: str = "ndcg@10"
    dev_split: str | None = None
    instruction: str = "Given a web search query, retrieve relevant passages that answer the query"


_KNOWN = {
    "arguana": Descriptor("arguana", ignore_identical_ids=True,
                          instruction="Given a claim, find documents that refute the claim"),
    "quora": Descriptor("quora", ignore_identical_ids=True, dev_split="dev",
                        instruction="Given a question, retrieve questions that are semantically equivalent to the "
                                    "given question"),
    "scifact": Descriptor("scifact", instruction="Given a scientific claim, retrieve documents that support or "
                                                 "refute the claim"),
    "nfcorpus": Descriptor("nfcorpus", dev_split="dev",
                           instruction="Given a question, retrieve relevant documents that best answer the question"),
    "fiqa": Descriptor("fiqa", dev_split="dev",
                       instruction="Given a financial question, retrieve user replies that best answer the question"),
    "scidocs": Descriptor("scidocs", instruction="Given a scientific paper title, retrieve paper abstracts that are "
                                                 "cited by the given paper"),
    "nq": Descriptor("nq", instruction="Given a question, retrieve Wikipedia passages that answer the question"),
    "hotpotqa": Descriptor("hotpotqa", dev_split="dev", instruction="Given a multi-hop question, retrieve documents "
                                                                    "that can help answer the question"),
    "msmarco": Descriptor("msmarco", dev_split="dev"),
    "trec-covid": Descriptor("trec-covid", instruction="Given a query on COVID-19, retrieve documents that answer "
                                                       "the query"),
}


def descriptor_for(name: str) -> Descriptor:
    """The descriptor of a dataset by (folder) name; unknown datasets get BEIR's defaults."""
    key = name.lower().rstrip("/").split("/")[-1]
    for k, d in _KNOWN.items():
        if key == k or key.startswith(k + "-") or key.startswith(k + "_"):
            return d
    return Descriptor(key)
