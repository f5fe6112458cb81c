"""Thinned labels: copy a BEIR folder keeping only K positives per query of one split; the rest become hidden.

``thin_dataset`` writes a new BEIR folder whose ``corpus.jsonl``, ``queries.jsonl`` and other splits' qrels are
byte-for-byte copies of the source's (nothing else of the source folder is copied), and whose
``qrels/<split>.tsv`` keeps the source's header and line order (and line endings), minus the rows of
the hidden positives. Judgements with relevance <= 0 (non-relevant) always stay. ``hidden.json`` (the manifest)
lists, per query, the hidden positives and their grades, with the settings and the source's checksums. The hidden
positives are still in the corpus, now unlabelled: false negatives whose identity is known, like the traps of
``hardneg inject`` but real documents with real (human) relevance.

Rules:

- Positives of a query: its rows of the split's qrels with relevance > 0. A query with at most ``keep`` of them
  keeps them all; otherwise the first ``keep`` in the query's order are kept and the rest are hidden.
- Order ``grade``: highest grade first; equal grades by the key ``blake2b("thin", seed, qid, docid)``
  (ascending). Order ``random``: by that key alone. The choice depends only on the seed, the query, the document
  and its grade, never on file order, and the documents kept with K are a subset of those kept with K + 1.
- The manifest ``hidden.json``: ``{"format": 1, "settings": {"split", "keep", "order", "seed"}, "source":
  {"folder", "dataset", "qrels_sha256", "files_sha256": {rel: sha256}}, "stats": {...}, "hidden": {qid: {docid:
  grade}}}`` (``hardneg browse --data`` reads the same file).

Evaluation: ``hardneg.data.load.load_eval_dataset`` (and ``strip_if_injected``, which ``hardneg run`` applies to a
dev carved from train) puts the hidden positives back into the qrels of the thinned split or a part of it
(``eval_manifest``), so every metric on a thinned folder equals the source's; the other splits are byte-identical
copies anyway. Mining (``hardneg.data.load.load_dataset``) sees the thinned qrels.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from hardneg.data.beir import available_splits, load_beir, load_qrels
from hardneg.data.jsonl import read_versioned_json
from hardneg.errors import HardnegError
from hardneg.hashing import h64
from hardneg.io import OUTPUT_MARKER, atomic_path, check_output, dumps_json, sha256_file, write_json
from hardneg.types import Dataset

MANIFEST = "hidden.json"
MANIFEST_FORMAT = 1
ORDERS = ("grade", "random")


# -- manifest ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HiddenManifest:
    """The content of ``hidden.json``: settings, source checksums and the hidden positives per query."""

    settings: dict[str, Any]
    source: dict[str, Any]
    hidden: dict[str, dict[str, int]]            # qid -> {docid: grade}
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def split(self) -> str:
        return str(self.settings["split"])

    @cached_property
    def by_qid(self) -> dict[str, tuple[str, ...]]:
        """qid -> its hidden positives (docids, sorted)."""
        return {q: tuple(sorted(docs)) for q, docs in self.hidden.items() if docs}

    @cached_property
    def ids(self) -> frozenset[str]:
        """Every document hidden for some query."""
        return frozenset(d for docs in self.hidden.values() for d in docs)

    def to_dict(self) -> dict[str, Any]:
        return {"format": MANIFEST_FORMAT, "settings": self.settings, "source": self.source, "stats": self.stats,
                "hidden": {q: dict(sorted(d.items())) for q, d in sorted(self.hidden.items())}}


def is_thinned(folder: str | Path) -> bool:
    """True when ``folder`` was written by ``thin_dataset`` (it holds ``hidden.json``)."""
    return (Path(folder).expanduser() / MANIFEST).is_file()


def load_hidden(folder: str | Path) -> HiddenManifest:
    """Read ``<folder>/hidden.json`` (``folder`` may also be the file itself)."""
    p = Path(folder).expanduser()
    path = p if p.suffix == ".json" else p / MANIFEST
    if not path.is_file():
        raise HardnegError("no hidden-positive manifest", where=path,
                           fix="pass a folder written by `hardneg thin` (it holds hidden.json)")
    raw = read_versioned_json(path, MANIFEST_FORMAT, what="manifest", fix="re-run `hardneg thin`")
    try:
        hidden: dict[str, dict[str, int]] = {}
        for q, docs in raw["hidden"].items():
            if not isinstance(docs, dict) or any(isinstance(g, bool) or not isinstance(g, int) or g <= 0
                                                 for g in docs.values()):
                raise ValueError(f"query {q}: hidden positives must map docid -> grade (an integer > 0)")
            hidden[str(q)] = {str(d): int(g) for d, g in docs.items()}
        man = HiddenManifest(settings=dict(raw["settings"]), source=dict(raw["source"]), hidden=hidden,
                             stats=dict(raw.get("stats", {})))
        man.split  # noqa: B018  (key check)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise HardnegError(f"the manifest is missing or mistypes a field ({exc})", where=path,
                           fix="re-run `hardneg thin`; do not edit hidden.json by hand") from None
    return man


def hidden_for(folder: str | Path, split: str) -> HiddenManifest | None:
    """The manifest of a ``hardneg thin`` folder if its positives were thinned for ``split`` (or a split carved
    from it, e.g. ``train-minus-dev``), else None (also for a plain dataset or a name that is not a folder)."""
    from hardneg.data.splits import source_split

    p = Path(folder).expanduser()
    if not p.is_dir() or not is_thinned(p):
        return None
    man = load_hidden(p)
    return man if man.split == source_split(split) else None


def eval_manifest(folder: str | Path, dataset: Dataset) -> HiddenManifest | None:
    """The manifest whose hidden positives belong back in ``dataset``'s qrels for evaluation, or None.

    Yes when ``folder`` is a ``hardneg thin`` folder and ``dataset`` is its thinned split, that split minus a carved
    dev (``train-minus-dev``), or a dev carved from it: a carved dev is named ``dev`` like an official one, so it
    is recognised by content (each of its queries has exactly the thinned split's judgements).
    """
    from hardneg.data.splits import source_split

    p = Path(folder).expanduser()
    if not p.is_dir() or not is_thinned(p):
        return None
    man = load_hidden(p)
    if source_split(dataset.split) == man.split:
        return man
    if not set(dataset.qrels) & set(man.hidden):
        return None  # nothing to restore (e.g. NFCorpus's own dev and test: other queries)
    thinned, _ = load_qrels(p / "qrels" / f"{man.split}.tsv", split=man.split)
    if all(thinned.get(q) == rels for q, rels in dataset.qrels.items()):
        return man
    return None


def restore_hidden(dataset: Dataset, manifest: HiddenManifest) -> Dataset:
    """``dataset`` with the hidden positives of its queries put back into their qrels (for evaluation; which
    datasets need it: ``eval_manifest``). On the thinned split, or a part of it, this gives the source's qrels,
    so metrics equal the source's."""
    row = dataset.corpus.row
    qrels = {}
    for q, rels in dataset.qrels.items():
        extra = manifest.hidden.get(q, {})
        clash = sorted(set(extra) & set(rels))
        if clash:
            raise HardnegError(f"hidden positive {clash[0]} of query {q} is still judged in the qrels of split "
                               f"{dataset.split}", where=dataset.name,
                               fix="load the dataset from the folder that holds this hidden.json")
        missing = sorted(d for d in extra if d not in row)
        if missing:
            raise HardnegError(f"hidden positive {missing[0]} of query {q} is not in the corpus", where=dataset.name,
                               fix="load the dataset from the folder that holds this hidden.json")
        qrels[q] = {**rels, **extra} if extra else rels
    return replace(dataset, qrels=qrels)


# -- thinning ---------------------------------------------------------------------------------------------------

def _check_args(keep: int, order: str, seed: int, split: str) -> None:
    """The first bad argument, as one error naming its flag."""
    def bad_int(v: Any) -> bool:
        return isinstance(v, bool) or not isinstance(v, int)

    if bad_int(keep) or keep < 1:
        raise HardnegError(f"keep must be an integer >= 1, got {keep!r}", where="thin --keep",
                           fix="keep at least one positive per query, e.g. --keep 1")
    if order not in ORDERS:
        raise HardnegError(f"order must be one of {', '.join(ORDERS)}, got {order!r}", where="thin --order",
                           fix="use --order grade (highest grade first) or --order random")
    if bad_int(seed):
        raise HardnegError(f"seed must be an integer, got {seed!r}", where="thin --seed", fix="use e.g. --seed 0")
    if not isinstance(split, str) or not split:
        raise HardnegError(f"split must be a non-empty string, got {split!r}", where="thin --split",
                           fix="name a split that has qrels, e.g. --split train")


def _check_src(src: Path) -> None:
    from hardneg.data.inject import is_injected

    if is_thinned(src):
        raise HardnegError("the source is already thinned (it holds hidden.json)", where=src,
                           fix="thin the original dataset folder instead (see source.folder in its hidden.json)")
    if is_injected(src):
        raise HardnegError("the source holds injected false negatives (it holds injected.json)", where=src,
                           fix="thin the original dataset folder; hidden positives and injected traps do not mix")


def plan_thinning(qrels: dict[str, dict[str, int]], *, keep: int, order: str = "grade",
                  seed: int = 0) -> dict[str, dict[str, int]]:
    """qid -> {docid: grade} of the positives to hide (queries with nothing hidden are left out); rules: module doc."""
    _check_args(keep, order, seed, "split")
    hidden: dict[str, dict[str, int]] = {}
    for q, rels in qrels.items():
        pos = [(d, g) for d, g in rels.items() if g > 0]
        if len(pos) <= keep:
            continue
        if order == "grade":
            ranked = sorted(pos, key=lambda dg: (-dg[1], h64("thin", seed, q, dg[0]), dg[0]))
        else:
            ranked = sorted(pos, key=lambda dg: (h64("thin", seed, q, dg[0]), dg[0]))
        hidden[q] = dict(ranked[keep:])
    return hidden


def _thinned_qrels_bytes(path: Path, drop_lines: set[int]) -> bytes:
    """The qrels file's bytes without the given (1-based) lines; every other line byte for byte (same splitting
    as ``load_qrels``, so its line numbers apply)."""
    out = []
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if lineno not in drop_lines:
                out.append(raw)
    return b"".join(out)


def thin_dataset(src_folder: str | Path, dst_folder: str | Path, *, keep: int, order: str = "grade",
                 seed: int = 0, split: str = "train", overwrite: bool = False) -> dict[str, Any]:
    """Write a copy of a BEIR folder keeping ``keep`` positives per query of ``split``; returns the manifest (a
    dict). ``corpus.jsonl``, ``queries.jsonl`` and the other splits' qrels are copied byte for byte (any other file
    of the folder is not copied); written atomically (temp folder, rename).
    Bad input (keep < 1, a missing split, an output inside the source, an already thinned or injected source)
    raises HardnegError before anything is written."""
    _check_args(keep, order, seed, split)
    src, dst = Path(src_folder).expanduser(), Path(dst_folder).expanduser()
    if src.is_dir():
        _check_src(src)
    dataset = load_beir(src, split)  # strict validation of the split (ids in corpus and queries)
    if not any(g > 0 for rels in dataset.qrels.values() for g in rels.values()):
        raise HardnegError(f"split {split} has no positive judgement (every grade is <= 0): nothing to thin",
                           where=src / "qrels" / f"{split}.tsv", fix="thin a split with positives, e.g. --split train")
    check_output(dst, "thin", inputs=[src], legacy=is_thinned, overwrite=overwrite)
    qrels_rel = f"qrels/{split}.tsv"
    _, where = load_qrels(src / qrels_rel, split=split)
    for sp in available_splits(src):  # the other splits must be readable too: they are copied as they are
        if sp != split:
            load_qrels(src / "qrels" / f"{sp}.tsv", split=sp)
    hidden = plan_thinning(dataset.qrels, keep=keep, order=order, seed=seed)
    drop = {where[(q, d)] for q, docs in hidden.items() for d in docs}
    thinned = _thinned_qrels_bytes(src / qrels_rel, drop)

    copied = ["corpus.jsonl", "queries.jsonl"] + [f"qrels/{sp}.tsv" for sp in available_splits(src) if sp != split]
    n_pos = {q: sum(1 for g in rels.values() if g > 0) for q, rels in dataset.qrels.items()}
    by_grade: dict[str, int] = {}
    for docs in hidden.values():
        for g in docs.values():
            by_grade[str(g)] = by_grade.get(str(g), 0) + 1
    n_hidden = sum(len(v) for v in hidden.values())
    manifest = HiddenManifest(
        settings={"split": split, "keep": keep, "order": order, "seed": seed},
        source={"folder": str(src.resolve()), "dataset": dataset.name,
                "qrels_sha256": sha256_file(src / qrels_rel),
                "files_sha256": {rel: sha256_file(src / rel) for rel in copied}},
        hidden=hidden,
        stats={"queries": len(dataset.qrels), "queries_thinned": len(hidden),
               "positives": sum(n_pos.values()), "positives_kept": sum(n_pos.values()) - n_hidden,
               "positives_hidden": n_hidden, "hidden_by_grade": dict(sorted(by_grade.items())),
               "judged_not_relevant": sum(1 for rels in dataset.qrels.values() for g in rels.values() if g <= 0),
               "max_positives_per_query": max(n_pos.values(), default=0),
               "qrels_lines_dropped": len(drop)},
    )
    with atomic_path(dst, is_dir=True) as tmp:
        write_json(tmp / OUTPUT_MARKER, {"by": "hardneg", "verb": "thin"})
        (tmp / "qrels").mkdir()
        for rel in copied:
            shutil.copyfile(src / rel, tmp / rel)
        (tmp / qrels_rel).write_bytes(thinned)
        (tmp / MANIFEST).write_text(dumps_json(manifest.to_dict()), encoding="utf-8")
    return manifest.to_dict()


def verify_thinned(folder: str | Path) -> dict[str, Any]:
    """Check a thinned folder against its manifest; raise HardnegError on the first problem, else return counts.

    Checks: the copied files match the source checksums; every query listed in the manifest has qrels in the
    thinned split and keeps exactly ``keep`` positives there; no hidden positive is judged in the thinned qrels;
    each is in the corpus.
    """
    folder = Path(folder).expanduser()
    man = load_hidden(folder)
    for rel, sha in man.source["files_sha256"].items():
        if sha256_file(folder / rel) != sha:
            raise HardnegError("file differs from the source", where=folder / rel, fix="re-run `hardneg thin`")
    ds = load_beir(folder, man.split)
    keep = int(man.settings["keep"])
    for q, docs in man.hidden.items():
        rels = ds.qrels.get(q)
        if rels is None:
            raise HardnegError(f"query {q} of hidden.json has no qrels in split {man.split}", where=folder,
                               fix="re-run `hardneg thin`")
        if sum(1 for g in rels.values() if g > 0) != keep:
            raise HardnegError(f"query {q} does not keep {keep} positives", where=folder, fix="re-run `hardneg thin`")
    restored = restore_hidden(ds, man)  # raises if a hidden positive is judged or not in the corpus
    return {"queries": len(ds.qrels), "queries_thinned": len(man.hidden),
            "hidden": sum(len(v) for v in man.hidden.values()),
            "positives": sum(1 for rels in restored.qrels.values() for g in rels.values() if g > 0)}
