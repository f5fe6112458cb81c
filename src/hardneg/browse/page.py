"""Write the browse page: one self-contained HTML file (inline CSS, JS and data; no network; works from file://).

``write_browse`` is ``hardneg browse``: it reads everything first, so a bad input raises HardnegError before
anything is written, then writes the page atomically.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from hardneg.browse.data import GENERATOR, ROWS_SOFT_LIMIT, Extras, MinedInput, build_page_data
from hardneg.errors import HardnegError
from hardneg.io import write_text

log = logging.getLogger("hardneg")

GENERATOR_META = f'<meta name="generator" content="{GENERATOR}">'
_ASSETS = ("page.html", "page.css", "page.js")


def _asset(name: str) -> str:
    return resources.files("hardneg.browse").joinpath(name).read_text(encoding="utf-8")


def embed_json(data: Any) -> str:
    """JSON safe inside ``<script type="application/json">``: no ``<``, ``>`` or ``&`` survive, so a text holding
    ``</script>`` or ``<!--`` cannot end the element; U+2028/9 are escaped too."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _html_text(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def render_page(data: dict[str, Any]) -> str:
    """The page's HTML for the embedded ``data`` (built by ``build_page_data``)."""
    html, css, js = (_asset(n) for n in _ASSETS)
    if "</script" in js.lower() or "</style" in css.lower():  # pragma: no cover - a packaging mistake
        raise RuntimeError("page assets must not close their own element")
    parts = {"{{TITLE}}": _html_text(str(data.get("title") or GENERATOR)), "{{GENERATOR_META}}": GENERATOR_META,
             "{{CSS}}": css, "{{JS}}": js, "{{DATA}}": embed_json(data)}
    out = html
    for k, v in parts.items():  # one pass per placeholder, data last: a text can never inject a placeholder
        head, sep, tail = out.partition(k)
        if not sep:
            raise RuntimeError(f"page.html lacks {k}")  # pragma: no cover
        out = head + v + tail
    return out


def is_browse_page(path: Path) -> bool:
    """True when ``path`` is a page written by ``hardneg browse`` (its generator meta in the first 4 KiB)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return GENERATOR_META.encode() in head


def check_page_output(out: str | Path, inputs: Sequence[str | Path | None]) -> Path:
    """Refuse an output file hardneg may not write (HardnegError; writes nothing): a folder, an existing file that
    is not an earlier browse page, or a path that is one of the inputs or lies inside one (a mined file, the data
    folder, the audit file)."""
    p = Path(out).expanduser()
    if p.is_dir():
        raise HardnegError("the output path is a folder", where=p,
                           fix="pass a file name for --out, e.g. browse.html")
    real = p.resolve()
    for x in inputs:
        if x is None or not Path(x).expanduser().exists():
            continue
        xr = Path(x).expanduser().resolve()
        if real == xr or (xr.is_dir() and real.is_relative_to(xr) and (xr / "corpus.jsonl").exists()):
            raise HardnegError(f"the output file {'is' if real == xr else 'lies inside'} the input {x}", where=p,
                               fix="choose an --out file outside every input (mined sets, data folder, audit file)")
    if p.exists() and not is_browse_page(p):
        raise HardnegError("the output file exists and was not written by `hardneg browse`", where=p,
                           fix="choose a new --out file; hardneg never replaces a file it did not write")
    if p.parent.exists() and not p.parent.is_dir():
        raise HardnegError("a parent of the output file is a file, not a folder", where=p,
                           fix="choose an --out path whose parents are folders")
    return p


def collect(mined: Sequence[str | Path], *, data: str | Path | None = None, audit: Sequence[str | Path] = (),
            limit: int | None = None, split: str | None = None, cache_dir: Path | None = None,
            removed: bool = True) -> dict[str, Any]:
    """Read every input and build the page data (no writing). HardnegError on bad input."""
    from hardneg.browse.inputs import (HIDDEN, audit_map, mined_split, read_audit, read_hidden, read_sets,
                                       removed_candidates, traps_of)

    sets = read_sets(mined)
    audit_lines = [a for f in audit for a in read_audit(f)]
    split = split or mined_split(sets) or "train"
    extras = Extras()
    sources: dict[str, Any] = {"sets": [s.source for s in sets], "split": split}
    dataset = None
    if data is not None:
        from hardneg.data.inject import manifest_for
        from hardneg.data.load import load_dataset

        dataset = load_dataset(data, split, cache_dir=cache_dir)
        _check_against_dataset(sets, dataset, data)
        sources["data"] = str(data)
        sources["dataset"] = {"name": dataset.name, "split": dataset.split, "docs": len(dataset.corpus),
                              "queries": len(dataset.queries)}
        extras.positives = {q: dataset.positives(q) for q in dataset.queries.ids}
        extras.doc_text = dict(zip(dataset.corpus.ids, dataset.corpus.encoding_texts))
        from hardneg.data.splits import source_split

        manifest = manifest_for(data, source_split(split))
        if manifest is not None:
            extras.traps = traps_of(manifest)
            sources["injected"] = {"path": str(Path(data) / "injected.json"), "docs": len(manifest.docs)}
        hidden_path = Path(data).expanduser() / HIDDEN
        if hidden_path.is_file():
            hidden = read_hidden(hidden_path, split)
            if hidden is not None:
                extras.hidden = hidden
                sources["hidden"] = {"path": str(hidden_path), "docs": sum(len(v) for v in hidden.values())}
    if audit_lines:
        maps = audit_map(audit_lines, [s.name for s in sets], [s.strategy for s in sets])
        row_q = {str(r["qid"]) for s in sets for r in s.rows}
        matched = sum(1 for a in audit_lines if a["qid"] in row_q)
        sources["audit"] = {"paths": [str(f) for f in audit], "lines": len(audit_lines), "matched": matched}
        extras.audit = maps
        if not matched:
            log.warning("no line of the audit file names a query of the mined sets")
    if dataset is not None and removed:
        rems, notes = [], []
        for s in sets:
            r, note = removed_candidates(s, dataset, cache_dir)
            rems.append(r)
            notes.append(None if note is None else f"removed candidates not shown: {note}")
        extras.removed, extras.removed_notes = rems, notes
    else:
        extras.removed_notes = ["removed candidates not shown: pass --data (and the --cache of `hardneg mine`)"
                                for _ in sets]
    extras.sources = sources
    return build_page_data(sets, extras, limit=limit)


def _check_against_dataset(sets: list[MinedInput], dataset, data: str | Path) -> None:
    qrow, drow = dataset.queries.row, dataset.corpus.row
    for s in sets:
        for r in s.rows:
            q, d = str(r["qid"]), str(r["pos"]["docid"])
            if q not in qrow or d not in drow:
                what = f"query {q}" if q not in qrow else f"document {d}"
                raise HardnegError(f"{s.name} was not mined from --data {data} split {dataset.split}: {what} is "
                                   "not in it", where=s.source or s.name,
                                   fix="pass the --data (and --split) the set was mined from")


def write_browse(mined: Sequence[str | Path], out: str | Path, *, data: str | Path | None = None,
                 audit: Sequence[str | Path] = (), limit: int | None = None, split: str | None = None,
                 cache_dir: Path | None = None, removed: bool = True) -> dict[str, Any]:
    """``hardneg browse``: build the page from the inputs and write it to ``out``. Returns a short summary."""
    out = Path(out).expanduser()
    from hardneg.browse.inputs import resolve_mined

    files = resolve_mined(mined)
    inputs: list[str | Path | None] = [*mined, *files, data, *audit]
    if data is not None:
        from hardneg.browse.inputs import HIDDEN

        inputs.append(Path(data).expanduser() / HIDDEN)
    check_page_output(out, inputs)
    page_data = collect(mined, data=data, audit=audit, limit=limit, split=split, cache_dir=cache_dir,
                        removed=removed)
    rows = page_data["limit"]["rows_shown"]
    if rows > ROWS_SOFT_LIMIT:
        log.warning("the page embeds %d rows; it is built for up to %d: pass --limit N (the first N queries) for "
                    "a lighter page", rows, ROWS_SOFT_LIMIT)
    html = render_page(page_data)
    check_page_output(out, inputs)  # again: nothing may have appeared there meanwhile
    write_text(out, html)
    return {"out": str(out), "bytes": len(html.encode("utf-8")), "sets": [s["name"] for s in page_data["sets"]],
            "queries": page_data["limit"]["queries_shown"], "rows": rows,
            "queries_total": page_data["limit"]["queries_total"]}
