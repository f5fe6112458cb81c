"""Read what a browse page shows: mined sets, the data folder's manifests, an audit file, and (optionally) the
candidates each strategy's filters removed, from the cached candidate pool.

Formats read here:

- mined sets: ``mined.jsonl`` files (the project format), a folder holding one, or a ``hardneg mine --out``
  folder (every ``<strategy>/mined.jsonl`` and ``<teacher>/<strategy>/mined.jsonl`` in it, in the order of its
  ``mine_config.json``). A ``stats.json`` beside a file gives its strategy, teacher and n; ``summary.json`` and
  ``mine_config.json`` up to two folders above give the dataset and the teacher settings.
- ``injected.json`` in ``--data`` (written by ``hardneg inject``): the injected traps of each query.
- ``hidden.json`` in ``--data`` (written by ``hardneg thin``): labelled positives removed from the qrels, as
  ``{"<qid>": {"<docid>": grade, ...}, ...}``, or that mapping under a ``"hidden"`` key (other top-level keys,
  e.g. ``"format"``, ``"settings"``, are ignored; a ``"split"`` key, top-level or in ``"settings"``, that differs
  from the mined split means the file is not used). A list of docids stands for grade 1 each.
- ``--audit FILE`` (written by ``hardneg audit``): JSONL, one flagged negative per line:
  ``{"qid", "docid", "reasons": ["...", ...], "scores": {"name": number, ...}}`` (``scores`` optional; a line
  may name its ``"strategy"``: then it only marks that set's negatives).
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hardneg.data.jsonl import field_str, iter_jsonl, read_json_file, require_file
from hardneg.data.mined import read_mined
from hardneg.errors import HardnegError
from hardneg.browse.data import MinedInput

log = logging.getLogger("hardneg")

MINED = "mined.jsonl"
HIDDEN = "hidden.json"


# -- mined sets -------------------------------------------------------------------------------------------------

def _read_json_opt(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        obj = read_json_file(path)
    except (HardnegError, OSError):
        return None
    return obj if isinstance(obj, dict) else None


def _up(path: Path, name: str, levels: int = 2) -> Path | None:
    """``name`` in the folder of ``path`` or up to ``levels`` folders above it."""
    folder = path.parent
    for _ in range(levels + 1):
        if (folder / name).is_file():
            return folder / name
        folder = folder.parent
    return None


def _folder_order(folder: Path, files: list[Path]) -> list[Path]:
    """Files of a `hardneg mine --out` folder in its mine_config.json strategy order (others after, sorted)."""
    cfg = _read_json_opt(folder / "mine_config.json")
    if not cfg or not isinstance(cfg.get("strategies"), list):
        return sorted(files)
    try:
        from hardneg.mining.pipeline import parse_plan

        slugs = [parse_plan(str(s)).slug for s in cfg["strategies"]]
    except (HardnegError, ValueError, TypeError):
        return sorted(files)
    rank = {s: i for i, s in enumerate(slugs)}
    return sorted(files, key=lambda p: (rank.get(p.parent.name, len(rank)), str(p)))


def resolve_mined(paths: Sequence[str | Path]) -> list[Path]:
    """The mined.jsonl files named by ``paths`` (files, strategy folders or `hardneg mine --out` folders)."""
    if not paths:
        raise HardnegError("no mined set given", fix="pass mined.jsonl files or `hardneg mine --out` folders")
    out: list[Path] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if not p.exists():
            raise HardnegError("mined set not found", where=p,
                               fix="pass a mined.jsonl, or a folder written by `hardneg mine --out`")
        if p.is_file():
            found = [p]
        elif (p / MINED).is_file():
            found = [p / MINED]
        else:
            found = [f for f in (*p.glob(f"*/{MINED}"), *p.glob(f"*/*/{MINED}")) if f.is_file()]
            if not found:
                raise HardnegError("no mined set in the folder (no mined.jsonl in it or in its sub-folders)",
                                   where=p, fix="pass a folder written by `hardneg mine --out`, or a mined.jsonl")
            found = _folder_order(p, found)
        for f in found:
            if f.resolve() not in {x.resolve() for x in out}:
                out.append(f)
    return out


def read_set(path: Path, names: set[str], *, teacher_folder: str | None = None) -> MinedInput:
    """Read one mined.jsonl and what its folder says about it (stats.json, summary.json, mine_config.json);
    ``teacher_folder``: the set sits in ``<teacher>/<strategy>/`` of a several-teacher mine folder."""
    rows = read_mined(path)
    stats = _read_json_opt(path.parent / "stats.json")
    summary_path = _up(path, "summary.json")
    summary = _read_json_opt(summary_path) if summary_path else None
    cfg_path = _up(path, "mine_config.json")
    cfg = _read_json_opt(cfg_path) if cfg_path else None
    strategy = str(stats["strategy"]) if stats and isinstance(stats.get("strategy"), str) else None
    teacher = str(stats["teacher"]) if stats and isinstance(stats.get("teacher"), str) else None
    ensemble = bool(stats and "method" in stats)  # an ensemble: every negative names its teacher
    if teacher is None and not ensemble and cfg and isinstance(cfg.get("teacher"), dict):
        teacher = str(cfg["teacher"].get("model")) if cfg["teacher"].get("model") else None
    n = stats.get("n_requested") if stats else None
    n = n if isinstance(n, int) and not isinstance(n, bool) and n >= 0 else None
    if ensemble:  # its folder name says strategy and ensemble
        name = path.parent.name
    elif strategy:
        name = f"{teacher_folder}: {strategy}" if teacher_folder else strategy
    else:
        name = path.parent.name if path.name == MINED else path.stem
    base, k = name, 2
    while name in names:
        name = f"{base} ({k})"
        k += 1
    names.add(name)
    ds = None
    if summary and isinstance(summary.get("dataset"), dict):
        d = summary["dataset"]
        ds = f"{d.get('name')}/{d.get('split')}"
    return MinedInput(name=name, rows=rows, source=str(path), teacher=teacher, n=n, strategy=strategy,
                      stats=stats, dataset=ds, path=path, mine_config=cfg)


def read_sets(paths: Sequence[str | Path]) -> list[MinedInput]:
    names: set[str] = set()
    files = resolve_mined(paths)
    # <root>/<teacher>/<strategy>/mined.jsonl: several teachers, each strategy folder named after its teacher too
    roots = [Path(p).expanduser().resolve() for p in paths if Path(p).expanduser().is_dir()]
    return [read_set(f, names, teacher_folder=f.parent.parent.name
                     if f.resolve().parent.parent.parent in roots and not (f.parent.parent / MINED).exists() else None)
            for f in files]


def mined_split(sets: Sequence[MinedInput]) -> str | None:
    """The split the sets were mined from, from their mine summary (None when unknown)."""
    for s in sets:
        if s.dataset and "/" in s.dataset:
            return s.dataset.rsplit("/", 1)[1]
    return None


# -- audit ------------------------------------------------------------------------------------------------------

def read_audit(path: str | Path) -> list[dict]:
    """Lines of an audit file (module docstring), validated; HardnegError (file:line) on anything else."""
    path = require_file(Path(path).expanduser(), "audit file", "pass the audit.jsonl written by `hardneg audit`")
    try:
        lines = list(iter_jsonl(path))
    except OSError as exc:
        raise HardnegError(f"cannot read the audit file ({exc.strerror})", where=path,
                           fix="check the path and its permissions") from None
    out = []
    for lineno, obj in lines:
        qid = field_str(obj, "qid", path, lineno)
        docid = field_str(obj, "docid", path, lineno)
        reasons = obj.get("reasons")
        if isinstance(reasons, str):
            reasons = [reasons]
        if not isinstance(reasons, list) or not reasons or not all(isinstance(r, str) and r for r in reasons):
            raise HardnegError('"reasons" must be a non-empty list of strings', where=path, line=lineno,
                               fix='write e.g. "reasons": ["posnbr"]')
        scores = obj.get("scores") or {}
        if not isinstance(scores, dict) or not all(
                v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v))
                for v in scores.values()):
            raise HardnegError('"scores" must be an object of finite numbers', where=path, line=lineno,
                               fix='write e.g. "scores": {"posnbr": 0.97}')
        strategy = obj.get("strategy")
        out.append({"qid": qid, "docid": docid, "reasons": list(reasons), "scores": scores,
                    "strategy": str(strategy) if strategy is not None else None})
    return out


def audit_map(lines: list[dict], set_names: Sequence[str], set_strategies: Sequence[str | None]) -> \
        list[dict[tuple[str, str], dict]]:
    """Per set, (qid, docid) -> {"reasons", "scores"} (lines naming a strategy only go to that set)."""
    maps: list[dict[tuple[str, str], dict]] = [{} for _ in set_names]
    for a in lines:
        for i, (name, strat) in enumerate(zip(set_names, set_strategies)):
            if a["strategy"] is not None and a["strategy"] not in (name, strat):
                continue
            e = maps[i].setdefault((a["qid"], a["docid"]), {"reasons": [], "scores": {}})
            e["reasons"].extend(r for r in a["reasons"] if r not in e["reasons"])
            e["scores"].update(a["scores"])
    return maps


# -- hidden positives and traps ----------------------------------------------------------------------------------

def read_hidden(path: Path, split: str | None) -> dict[str, dict[str, Any]] | None:
    """``hidden.json`` (module docstring) as qid -> {docid: grade}; None when it is for another split."""
    raw = read_json_file(path, fix="re-run `hardneg thin`")
    fix = 'write {"<qid>": {"<docid>": grade}} (the format of `hardneg thin`)'
    if not isinstance(raw, dict):
        raise HardnegError("hidden positives must be a JSON object", where=path, fix=fix)
    settings = raw.get("settings") if isinstance(raw.get("settings"), dict) else {}
    want = raw.get("split", settings.get("split"))
    if split is not None and isinstance(want, str) and want not in (split, split.split("-")[0]):
        log.info("%s is for split %s, the mined split is %s: not used", path, want, split)
        return None
    body = raw.get("hidden", raw) if "hidden" in raw else raw
    if body is raw:
        body = {k: v for k, v in raw.items() if k not in ("format", "settings", "split", "source", "stats")}
    if not isinstance(body, dict):
        raise HardnegError('"hidden" must be an object of qid -> {docid: grade}', where=path, fix=fix)
    out: dict[str, dict[str, Any]] = {}
    for q, docs in body.items():
        if isinstance(docs, list):
            docs = {str(d): 1 for d in docs}
        if not isinstance(docs, dict) or not all(
                isinstance(g, (int, float)) and not isinstance(g, bool) for g in docs.values()):
            raise HardnegError(f"the hidden positives of query {q} must map docid -> grade (a number)",
                               where=path, fix=fix)
        out[str(q)] = {str(d): g for d, g in docs.items()}
    return out


def traps_of(manifest) -> dict[str, dict[str, str]]:
    """qid -> {injected docid: "transform of source"} from an injection Manifest."""
    out: dict[str, dict[str, str]] = {}
    for d in manifest.docs:
        for q in d.qids:
            out.setdefault(q, {})[d.id] = f"{d.transform} of {d.source}"
    return out


# -- candidates the filters removed ------------------------------------------------------------------------------

def removed_candidates(s: MinedInput, dataset, cache_dir: Path | None, *, per_row: int = 10) -> \
        tuple[dict[tuple[str, str], list] | None, str | None]:
    """Per (qid, positive docid): the candidates the strategy's filters removed from above the row's last negative
    (for a row short of n: the first removed ones), at most ``per_row``, as (docid, text, score, rank, filter).

    Only from a candidate pool already in the cache (this never encodes or searches), and only when replaying the
    strategy on it gives exactly the mined file's negatives. Returns (mapping or None, a note saying why not).
    """
    from hardneg.encode.encoder import EncoderSpec
    from hardneg.mining.candidates import effective_depth, load_pool
    from hardneg.mining.pipeline import pool_key
    from hardneg.mining.select import apply_strategy, filter_mask, row_layout
    from hardneg.mining.strategy import parse_strategy
    from hardneg.mining.teachers import as_teacher, teacher_fingerprint

    cfg = s.mine_config
    if cache_dir is None:
        return None, "no cache folder"
    if not cfg or not isinstance(cfg.get("teacher"), dict) or not s.strategy or (s.stats or {}).get("method"):
        return None, "not a single-teacher strategy folder of `hardneg mine` (no mine_config.json / stats.json)"
    try:
        strategy = parse_strategy((s.stats or {}).get("resolved") or s.strategy)  # auto thresholds as resolved
        if not strategy.filters:
            return {}, None
        whole = as_teacher(EncoderSpec.from_dict(cfg["teacher"]))
        teacher = whole if whole.kind != "list" else next((t for t in whole.parts() if str(t) == s.teacher), None)
        if teacher is None:
            return None, "teacher of the set not found in mine_config.json"
        depth = effective_depth(int(cfg.get("depth", 100)), len(dataset.corpus))
        fp = teacher_fingerprint(teacher, cache_dir)
        folder = Path(cache_dir) / "pools" / pool_key(fp, dataset, depth)
        if not (folder / "pool.json").is_file():
            return None, "its candidate pool is not in the cache (pass the --cache that `hardneg mine` used)"
        pool = load_pool(folder)
        mined = apply_strategy(pool, strategy, seed=int(cfg.get("seed", 0)))
    except (HardnegError, ValueError, TypeError, OSError) as exc:
        return None, f"the candidate pool could not be replayed ({exc})"
    ids, texts = dataset.corpus.ids, dataset.corpus.encoding_texts
    row_q, row_pos = row_layout(pool)
    keys = [(pool.qids[q], ids[p]) for q, p in zip(row_q.tolist(), pool.pos_idx[row_pos].tolist())]
    # The replay must give the mined file's negatives exactly, or what it says was removed would be wrong.
    by_key = {(str(r["qid"]), str(r["pos"]["docid"])): r for r in s.rows}
    neg_idx, n_neg = mined.neg_idx, mined.n_neg
    for r, k in enumerate(keys):
        row = by_key.get(k)
        if row is None:
            continue
        if [str(d["docid"]) for d in row["neg"] if not d.get("pad")] != [ids[d] for d in neg_idx[r, :n_neg[r]]]:
            return None, "the cached pool does not reproduce this mined file (mined with other settings?)"
    score = pool.cand_score[row_q].astype(np.float64)
    valid = pool.cand_idx[row_q] >= 0
    by = np.full(valid.shape, -1, dtype=np.int16)
    try:
        for fi, f in enumerate(strategy.filters):
            keep = filter_mask(f, score, valid, pool, row_q, row_pos)
            by[valid & ~keep] = fi
            valid = valid & keep
    except (HardnegError, ValueError, TypeError) as exc:  # e.g. posnbr/dedup need arrays beside the pool
        return None, f"the filters could not be replayed ({exc})"
    ncol = mined.neg_col
    last = np.where(n_neg > 0, ncol.max(axis=1, initial=-1), -1)
    limit = np.where(n_neg < strategy.n, pool.depth, last)  # short rows: every removed one (capped below)
    cols = np.arange(pool.depth)[None, :]
    show = (by >= 0) & (cols < limit[:, None])
    show &= np.cumsum(show, axis=1) <= per_row
    names = [str(f) for f in strategy.filters]
    out: dict[tuple[str, str], list] = {}
    rr, cc = np.nonzero(show)
    for r, c in zip(rr.tolist(), cc.tolist()):
        d = int(pool.cand_idx[row_q[r], c])
        out.setdefault(keys[r], []).append((ids[d], texts[d], float(pool.cand_score[row_q[r], c]),
                                            int(pool.cand_rank[row_q[r], c]), names[int(by[r, c])]))
    return out, None
