"""Controlled false negatives: copy a BEIR folder and add near-copies of training positives as unlabelled docs.

``inject_false_negatives`` writes a new BEIR folder whose ``queries.jsonl`` and ``qrels/*.tsv`` are byte-for-byte
copies of the source and whose ``corpus.jsonl`` is the source file, byte for byte, followed by the injected
documents. ``injected.json`` (the manifest) lists every injected document: its id, the source document it copies,
the training pair it was made for, every training query it is (unlabelled) relevant to, and the transform.

Rules (see ``docs/false-negatives.md``):

- Pairs: every (qid, docid) of the split's qrels with relevance > 0. Each pair gets the key
  ``u = blake2b("pair", seed, qid, docid)``; the ``round(rate * pairs)`` pairs with the smallest keys are chosen
  (half rounds up). The choice depends only on the seed and the pair, never on file order, and the pairs chosen
  at a lower rate are a subset of those chosen at a higher rate (same seed).
- Each chosen pair gets ``copies`` injected documents. Copy ``j`` uses
  ``transforms[(o + j) % len(transforms)]`` with ``o = blake2b("transform", seed, qid, docid) % len(transforms)``,
  so the copies of one pair use different transforms while ``copies <= len(transforms)``.
- An injected document is relevant to every query of the split whose positives include its source document;
  all of them are recorded (``qids``), not only the pair's query.
- Transforms (the title is kept unless said otherwise; text words are whitespace-separated):
    ``drop_title``         title removed, text unchanged (a document with an empty text keeps its title as text).
    ``shuffle_sentences``  text split into sentences after ``.``, ``!`` or ``?`` followed by whitespace
                           (``SENTENCE_SPLIT``), reordered by a hash of (seed, qid, docid, copy), joined by one
                           space; an order equal to the original is rotated by one; with < 2 sentences unchanged.
    ``truncate``           text cut to its first ``ceil(TRUNCATE_FRACTION * words)`` words (half), joined by one
                           space; with < 2 words unchanged.
    ``exact``              identical title and text (a control: scores exactly like the positive).
  ``exact`` in the manifest says whether the copy's encoding text equals the source's (then every teacher gives
  it the positive's score).
- Ids: ``inj-`` + 12 hex digits of blake2b(seed, qid, docid, copy); on a clash with an existing or earlier id,
  ``-2``, ``-3``, ... is appended.
"""
from __future__ import annotations

import json
import math
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from hardneg.data.beir import available_splits, load_beir, load_qrels
from hardneg.data.jsonl import read_versioned_json
from hardneg.errors import HardnegError
from hardneg.hashing import h64
from hardneg.io import (OUTPUT_MARKER, atomic_path, check_output, dumps_json, sha256_bytes, sha256_file,
                        write_json)
from hardneg.types import Corpus, Dataset

MANIFEST = "injected.json"
MANIFEST_FORMAT = 1
TRANSFORMS = ("drop_title", "shuffle_sentences", "truncate", "exact")
DEFAULT_TRANSFORMS = ("drop_title", "shuffle_sentences", "truncate")
SENTENCE_SPLIT = r"(?<=[.!?])\s+"
TRUNCATE_FRACTION = 0.5
_SENT_RE = re.compile(SENTENCE_SPLIT)


# -- hashing ----------------------------------------------------------------------------------------------------

# -- transforms -------------------------------------------------------------------------------------------------

def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``: split after ``.``/``!``/``?`` followed by whitespace; empty pieces dropped."""
    return [s for s in _SENT_RE.split(text.strip()) if s]


def transform_doc(title: str, text: str, transform: str, *, seed: int = 0, key: Sequence[object] = ()) -> tuple[str, str]:
    """Apply one transform to (title, text); ``key`` (e.g. qid, docid, copy) seeds ``shuffle_sentences``."""
    if transform == "exact":
        return title, text
    if transform == "drop_title":
        return "", (text if text.strip() else title)
    if transform == "shuffle_sentences":
        sents = split_sentences(text)
        if len(sents) < 2:
            return title, text
        order = sorted(range(len(sents)), key=lambda i: (h64("shuffle", seed, *key, i), i))
        if order == list(range(len(sents))):
            order = order[1:] + order[:1]
        return title, " ".join(sents[i] for i in order)
    if transform == "truncate":
        words = text.split()
        if len(words) < 2:
            return title, text
        return title, " ".join(words[: math.ceil(TRUNCATE_FRACTION * len(words))])
    raise HardnegError(f'unknown transform "{transform}"', fix=f"choose from {', '.join(TRANSFORMS)}")


def _encoding_text(title: str, text: str) -> str:
    return (f"{title} {text}" if title else text).strip()  # = Corpus.encoding_texts


# -- manifest ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class InjectedDoc:
    """One injected near-copy: relevant (unlabelled) to every query in ``qids``."""

    id: str
    source: str                 # docid of the copied positive
    pair_qid: str               # the query of the chosen (query, positive) pair
    qids: tuple[str, ...]       # every query of the split with ``source`` as a positive (qrels order)
    transform: str
    copy: int
    exact: bool                 # encoding text identical to the source's

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "source": self.source, "pair_qid": self.pair_qid, "qids": list(self.qids),
                "transform": self.transform, "copy": self.copy, "exact": self.exact}


@dataclass(frozen=True)
class Manifest:
    """The content of ``injected.json``: settings, source checksums and the injected documents."""

    settings: dict[str, Any]
    source: dict[str, Any]
    docs: tuple[InjectedDoc, ...]
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def split(self) -> str:
        return str(self.settings["split"])

    @cached_property
    def ids(self) -> frozenset[str]:
        return frozenset(d.id for d in self.docs)

    @cached_property
    def by_qid(self) -> dict[str, tuple[str, ...]]:
        """qid -> ids of the injected documents relevant to it (the query's traps)."""
        out: dict[str, list[str]] = {}
        for d in self.docs:
            for q in d.qids:
                out.setdefault(q, []).append(d.id)
        return {q: tuple(v) for q, v in out.items()}

    def to_dict(self) -> dict[str, Any]:
        return {"format": MANIFEST_FORMAT, "settings": self.settings, "source": self.source, "stats": self.stats,
                "docs": [d.to_dict() for d in self.docs]}


def is_injected(folder: str | Path) -> bool:
    """True when ``folder`` was written by ``inject_false_negatives`` (it holds ``injected.json``)."""
    return (Path(folder) / MANIFEST).is_file()


def manifest_for(folder: str | Path, split: str) -> Manifest | None:
    """The manifest of a ``hardneg inject`` folder if its traps were injected for ``split``, else None (also for
    a plain dataset, or a dataset name that is not a folder)."""
    p = Path(folder).expanduser()
    if not is_injected(p):
        return None
    manifest = load_manifest(p)
    return manifest if manifest.split == split else None


def load_manifest(folder: str | Path) -> Manifest:
    """Read ``<folder>/injected.json`` (``folder`` may also be the file itself)."""
    p = Path(folder)
    path = p if p.suffix == ".json" else p / MANIFEST
    if not path.is_file():
        raise HardnegError("no injection manifest", where=path,
                           fix="pass a folder written by `hardneg inject` (it holds injected.json)")
    raw = read_versioned_json(path, MANIFEST_FORMAT, what="manifest", fix="re-run `hardneg inject`")
    try:
        docs = tuple(InjectedDoc(id=str(d["id"]), source=str(d["source"]), pair_qid=str(d["pair_qid"]),
                                 qids=tuple(str(q) for q in d["qids"]), transform=str(d["transform"]),
                                 copy=int(d["copy"]), exact=bool(d["exact"])) for d in raw["docs"])
        man = Manifest(settings=dict(raw["settings"]), source=dict(raw["source"]), docs=docs,
                       stats=dict(raw.get("stats", {})))
        man.split  # noqa: B018  (key check)
    except (KeyError, TypeError, ValueError) as exc:
        raise HardnegError(f"the manifest is missing or mistypes a field ({exc})", where=path,
                           fix="re-run `hardneg inject`; do not edit injected.json by hand") from None
    if len(man.ids) != len(docs):
        raise HardnegError("the manifest lists an injected id twice", where=path, fix="re-run `hardneg inject`")
    return man


# -- injection --------------------------------------------------------------------------------------------------

def _check_args(rate: float, copies: int, transforms: Sequence[str], seed: int, split: str) -> tuple[str, ...]:
    problems = []
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not (0.0 <= float(rate) <= 1.0) \
            or math.isnan(float(rate)):
        problems.append(f"rate must be a number in [0, 1], got {rate!r}")
    if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
        problems.append(f"copies must be an integer >= 1, got {copies!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        problems.append(f"seed must be an integer, got {seed!r}")
    if isinstance(transforms, str):
        transforms = [t.strip() for t in transforms.split(",")]
    ts = tuple(transforms)
    if not ts:
        problems.append("give at least one transform")
    bad = [t for t in ts if t not in TRANSFORMS]
    if bad:
        problems.append(f"unknown transform {', '.join(repr(b) for b in bad)} (choose from {', '.join(TRANSFORMS)})")
    if len(set(ts)) != len(ts):
        problems.append("a transform is listed twice")
    if not isinstance(split, str) or not split:
        problems.append(f"split must be a non-empty string, got {split!r}")
    if problems:
        raise HardnegError("; ".join(problems),
                           fix="use a rate in [0, 1], copies >= 1 and transforms from " + ", ".join(TRANSFORMS))
    return ts


def plan_injection(dataset: Dataset, *, rate: float, copies: int = 1,
                   transforms: Sequence[str] = DEFAULT_TRANSFORMS, seed: int = 0,
                   taken_ids: frozenset[str] | set[str] = frozenset()) -> list[tuple[InjectedDoc, str, str]]:
    """Choose pairs and build the injected documents: [(InjectedDoc, title, text)] in append order.

    Append order: chosen pairs by selection key (then copy index), so it does not depend on file order either.
    """
    ts = _check_args(rate, copies, transforms, seed, dataset.split)
    pairs = [(q, d) for q in dataset.queries.ids for d in dataset.positives(q)]
    n_pick = math.floor(rate * len(pairs) + 0.5)
    keyed = sorted(((h64("pair", seed, q, d), q, d) for q, d in pairs))
    chosen = keyed[:n_pick]
    qids_of: dict[str, list[str]] = {}
    for q, d in pairs:  # qrels order within the dataset's query order
        qids_of.setdefault(d, []).append(q)
    corpus, row = dataset.corpus, dataset.corpus.row
    used = set(taken_ids) | set(corpus.ids)
    out: list[tuple[InjectedDoc, str, str]] = []
    for _, q, d in chosen:
        o = h64("transform", seed, q, d) % len(ts)
        src_title, src_text = corpus.titles[row[d]], corpus.texts[row[d]]
        for j in range(copies):
            t = ts[(o + j) % len(ts)]
            title, text = transform_doc(src_title, src_text, t, seed=seed, key=(q, d, j))
            base = f"inj-{h64('id', seed, q, d, j):016x}"[:16]
            new_id, k = base, 1
            while new_id in used:
                k += 1
                new_id = f"{base}-{k}"
            used.add(new_id)
            doc = InjectedDoc(id=new_id, source=d, pair_qid=q, qids=tuple(qids_of[d]), transform=t, copy=j,
                              exact=_encoding_text(title, text) == _encoding_text(src_title, src_text))
            out.append((doc, title, text))
    return out


def _corpus_line(doc_id: str, title: str, text: str) -> bytes:
    # BEIR style: json.dumps defaults (ASCII escapes); empty metadata so nothing in the corpus marks the copy.
    return (json.dumps({"_id": doc_id, "title": title, "text": text, "metadata": {}}) + "\n").encode("utf-8")


def inject_false_negatives(src_folder: str | Path, dst_folder: str | Path, *, split: str = "train", rate: float,
                           copies: int = 1, transforms: Sequence[str] = DEFAULT_TRANSFORMS, seed: int = 0,
                           overwrite: bool = False) -> dict[str, Any]:
    """Write a copy of a BEIR folder with known false negatives for ``split``; returns the manifest (a dict).

    ``queries.jsonl`` and every ``qrels/*.tsv`` are copied byte for byte; ``corpus.jsonl`` is the source file
    byte for byte followed by one line per injected document. Written atomically (temp folder, rename).
    """
    src, dst = Path(src_folder), Path(dst_folder)
    ts = _check_args(rate, copies, transforms, seed, split)
    dataset = load_beir(src, split)  # strict validation of the split; the other splits are parsed below
    check_output(dst, "inject", inputs=[src], legacy=is_injected, overwrite=overwrite)
    other: dict[str, dict[str, set[str]]] = {}  # split -> docid -> qids with it relevant
    for sp in available_splits(src):
        if sp == split:
            continue
        qr, _ = load_qrels(src / "qrels" / f"{sp}.tsv", split=sp)
        for q, rels in qr.items():
            for d, r in rels.items():
                if r > 0:
                    other.setdefault(sp, {}).setdefault(d, set()).add(q)
    planned = plan_injection(dataset, rate=rate, copies=copies, transforms=ts, seed=seed)
    docs = tuple(p[0] for p in planned)

    corpus_bytes = (src / "corpus.jsonl").read_bytes()
    extra = b"".join(_corpus_line(doc.id, title, text) for doc, title, text in planned)
    sep = b"" if not corpus_bytes or corpus_bytes.endswith(b"\n") else b"\n"
    copied = ["queries.jsonl"] + [f"qrels/{sp}.tsv" for sp in available_splits(src)]
    n_pairs = sum(len(dataset.positives(q)) for q in dataset.queries.ids)
    by_t: dict[str, int] = {}
    for doc in docs:
        by_t[doc.transform] = by_t.get(doc.transform, 0) + 1
    src_also = {sp: sum(1 for doc in docs if doc.source in rel) for sp, rel in sorted(other.items())}
    manifest = Manifest(
        settings={"split": split, "rate": float(rate), "copies": copies, "transforms": list(ts), "seed": seed,
                  "sentence_split": SENTENCE_SPLIT, "truncate_fraction": TRUNCATE_FRACTION},
        source={"folder": str(src.resolve()), "dataset": dataset.name,
                "corpus_sha256": sha256_bytes(corpus_bytes), "corpus_bytes": len(corpus_bytes),
                "corpus_docs": len(dataset.corpus), "corpus_fingerprint": dataset.corpus.fingerprint,
                "files_sha256": {rel: sha256_file(src / rel) for rel in copied}},
        docs=docs,
        stats={"pairs": n_pairs, "pairs_chosen": len({(d.pair_qid, d.source) for d in docs}),
               "injected": len(docs), "by_transform": by_t, "exact_copies": sum(d.exact for d in docs),
               "queries_with_traps": len({q for d in docs for q in d.qids}),
               # injected docs whose source is also relevant in another split: they are false negatives for that
               # split's queries too, so evaluation must run on strip_injected(...) (which removes them all)
               "source_relevant_in_other_splits": src_also},
    )
    with atomic_path(dst, is_dir=True) as tmp:
        write_json(tmp / OUTPUT_MARKER, {"by": "hardneg", "verb": "inject"})
        (tmp / "qrels").mkdir()
        (tmp / "corpus.jsonl").write_bytes(corpus_bytes + sep + extra)
        for rel in copied:
            shutil.copyfile(src / rel, tmp / rel)
        (tmp / MANIFEST).write_text(dumps_json(manifest.to_dict()), encoding="utf-8")
    return manifest.to_dict()


# -- evaluation side --------------------------------------------------------------------------------------------

def _separator_fingerprint(corpus: Corpus) -> str:
    """The corpus fingerprint of manifests written before fingerprints were length-prefixed (a \\x1f join of
    ids and texts): only to keep verifying those manifests, never to key anything."""
    fields = [x for pair in zip(corpus.ids, corpus.encoding_texts) for x in pair]
    return sha256_bytes("\x1f".join(fields).encode("utf-8"))


def strip_injected(dataset: Dataset, manifest: Manifest) -> Dataset:
    """The dataset with every injected document removed from the corpus (for evaluation).

    Checks that each injected id is present and that the remaining corpus has the source corpus's fingerprint
    (same ids, texts and order), so any metric computed on the result equals the one on the source dataset.
    """
    row = dataset.corpus.row
    missing = [i for i in manifest.ids if i not in row]
    if missing:
        raise HardnegError(f"{len(missing)} injected document(s) are not in the corpus (e.g. {sorted(missing)[0]})",
                           where=dataset.name, fix="load the dataset from the folder that holds this injected.json")
    judged = sorted({d for rels in dataset.qrels.values() for d in rels} & manifest.ids)
    if judged:
        raise HardnegError(f"injected document {judged[0]} is judged in the qrels of split {dataset.split}",
                           where=dataset.name, fix="injected documents must stay unlabelled; re-run `hardneg inject`")
    keep = [i for i, d in enumerate(dataset.corpus.ids) if d not in manifest.ids]
    corpus: Corpus = dataset.corpus.subset(keep)
    want = manifest.source.get("corpus_fingerprint")
    if want is not None and want not in (corpus.fingerprint, _separator_fingerprint(corpus)):
        raise HardnegError("the corpus without the injected documents differs from the source corpus",
                           where=dataset.name, fix="the folder was edited after `hardneg inject`; re-run it")
    return replace(dataset, corpus=corpus)


def verify_injected(folder: str | Path) -> dict[str, Any]:
    """Check an injected folder against its manifest; raise HardnegError on the first problem, else return counts.

    Checks: the corpus starts with the source corpus bytes (sha256) and then holds exactly the injected documents,
    each once; queries and qrels files match the source checksums; every source docid is in the source corpus;
    every listed qid has the source as a positive of the injection split, and ``qids`` is complete.
    """
    folder = Path(folder)
    man = load_manifest(folder)
    data = (folder / "corpus.jsonl").read_bytes()
    n = int(man.source["corpus_bytes"])
    if sha256_bytes(data[:n]) != man.source["corpus_sha256"]:
        raise HardnegError("corpus.jsonl does not start with the source corpus", where=folder / "corpus.jsonl",
                           fix="re-run `hardneg inject`")
    for rel, sha in man.source["files_sha256"].items():
        if sha256_file(folder / rel) != sha:
            raise HardnegError("file differs from the source", where=folder / rel, fix="re-run `hardneg inject`")
    ds = load_beir(folder, man.split)
    src_ids = ds.corpus.ids[: int(man.source["corpus_docs"])]
    tail = ds.corpus.ids[int(man.source["corpus_docs"]):]
    if list(tail) != [d.id for d in man.docs]:
        raise HardnegError("the appended documents differ from the manifest", where=folder,
                           fix="re-run `hardneg inject`")
    src_set = set(src_ids)
    qids_of: dict[str, list[str]] = {}
    for q in ds.queries.ids:
        for d in ds.positives(q):
            qids_of.setdefault(d, []).append(q)
    for doc in man.docs:
        if doc.source not in src_set:
            raise HardnegError(f"injected {doc.id}: source {doc.source} is not in the source corpus", where=folder,
                               fix="re-run `hardneg inject`")
        if list(doc.qids) != qids_of.get(doc.source, []) or doc.pair_qid not in doc.qids:
            raise HardnegError(f"injected {doc.id}: its qids are not the {man.split} queries of {doc.source}",
                               where=folder, fix="re-run `hardneg inject`")
    return {"docs": len(ds.corpus), "source_docs": len(src_ids), "injected": len(man.docs)}
