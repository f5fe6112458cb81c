"""Dev splits carved from train with a fixed seed, for selection (nothing is ever selected on test)."""
from __future__ import annotations

import hashlib

from hardneg.errors import HardnegError
from hardneg.types import Dataset


CARVED_SUFFIX = "-minus-dev"  # the split name of train once a dev is carved out of it


def source_split(split: str) -> str:
    """The split a dataset's queries come from: ``train`` for ``train-minus-dev``, else ``split`` itself."""
    return split.removesuffix(CARVED_SUFFIX)


def _order_key(seed: int, qid: str) -> bytes:
    # Unambiguous: a decimal int never holds \x1f, so the first \x1f ends the seed (kept: it fixes every dev carve).
    return hashlib.sha256(f"{seed}\x1f{qid}".encode("utf-8")).digest()


def carve_dev(train: Dataset, fraction: float, seed: int = 0) -> tuple[Dataset, Dataset]:
    """Split ``train`` by query into (train minus dev, dev); which queries go to dev depends only on seed and qid."""
    if not 0.0 < fraction < 1.0:
        raise HardnegError(f"dev fraction must be between 0 and 1, got {fraction}", fix="use e.g. dev = 0.1")
    qids = list(train.queries.ids)
    n_dev = max(1, round(fraction * len(qids)))
    if n_dev >= len(qids):
        raise HardnegError(f"cannot carve {n_dev} dev queries out of {len(qids)}", fix="use a smaller dev fraction")
    dev = set(sorted(qids, key=lambda q: _order_key(seed, q))[:n_dev])
    keep = [q for q in qids if q not in dev]
    dev_ids = [q for q in qids if q in dev]
    return (Dataset(train.name, f"{train.split}{CARVED_SUFFIX}", train.corpus, train.queries.subset(keep),
                    {q: train.qrels[q] for q in keep}, train.source),
            Dataset(train.name, "dev", train.corpus, train.queries.subset(dev_ids), {q: train.qrels[q] for q in dev_ids},
                    train.source))
