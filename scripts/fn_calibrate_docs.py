"""Regenerate the "Calibration curves and audits on real data" subsection of docs/false-negatives.md, section 5.

Two parts, each cheap once the teacher's embeddings and pools are cached (``--cache``):

- ``calibrate``: ``hardneg.mining.calibrate.run_calibrate`` for the teacher on each dataset's train split, filters
  percpos, marginpos and posnbr, n = 4, depth 100. percpos and marginpos are swept twice, with ``ref=min`` (the
  query's weakest positive, the default) and ``ref=row`` (each row's own positive); posnbr has no ref. A fusion
  teacher gets no posnbr curve (posnbr needs one encoder's document embeddings). Writes the condensed Markdown
  tables, and the PNGs ``run_calibrate`` draws are copied to ``docs/fn-calibrate/<dataset>-<teacher>-<filter>.png``
  (ref=min) and ``docs/fn-calibrate/<dataset>-<teacher>-<filter>-row.png`` (ref=row).
- ``audit``: counts per reason of ``hardneg audit`` (n = 4, same teacher) on hardneg's own ``topk(4)`` and
  ``percpos(0.95)+topk(4)`` output (``hardneg mine``) and on sentence-transformers' ``mine_hard_negatives``
  (n-tuple, 4 negatives, range_max 100, with no margin and with ``relative_margin=0.05``, the ST form of
  percpos(0.95)), fed hardneg's cached embeddings through ``benchmarks/equivalence_st.py``'s ``EmbeddingHook``
  (no encoding: ST ranks the same vectors). ST gets every (query, positive) pair of the qrels.

Each (part, teacher) has its own markers inside the ``fn_calibrate`` markers of the doc and only that block is
replaced (added when missing): a run for another teacher, or of one part, leaves the other blocks as they are.

    .venv/bin/python scripts/fn_calibrate_docs.py --cache /tmp/eq/cache [--teacher minilm] [--part calibrate|audit|all]
        [--data scifact=/work/shared/data/scifact --data nfcorpus=/work/shared/data/nfcorpus] [--work /tmp/fn_calib]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "false-negatives.md"
IMG = ROOT / "docs" / "fn-calibrate"
BEGIN, END = "<!-- fn_calibrate:begin -->", "<!-- fn_calibrate:end -->"


def markers(part: str, teacher: str) -> tuple[str, str]:
    """Inner markers of one part for one teacher (a run for another teacher adds its own block)."""
    t = slug(teacher)
    return f"<!-- fn_calibrate:{part}:{t}:begin -->", f"<!-- fn_calibrate:{part}:{t}:end -->"


def slug(teacher: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", teacher.lower()).strip("-")

FILTERS = ("percpos", "marginpos", "posnbr")
# the positive references swept per filter (posnbr has no ref)
REFS = {"percpos": ("min", "row"), "marginpos": ("min", "row"), "posnbr": ("min",)}
N, DEPTH = 4, 100
PRECISION = ["fp32"]  # the teacher's encoder precision (--precision), recorded in each block's text
# thresholds shown in the condensed tables (the CSV / JSON / PNG keep the whole grid)
SHOW = {"percpos": (0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 1.0),
        "marginpos": (0.0, 0.01, 0.02, 0.03, 0.05, 0.08, 0.1, 0.15, 0.2),
        "posnbr": (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0)}
DEFAULT_DATA = {"scifact": "/work/shared/data/scifact", "nfcorpus": "/work/shared/data/nfcorpus"}
HARDNEG_STRATEGIES = ("topk(4)", "percpos(0.95)+topk(4)")
ST_CONFIGS = {"ST n-tuple, no margin": {}, "ST n-tuple, relative_margin=0.05": {"relative_margin": 0.05}}
REASONS = ("labelled_positive", "same_text_as_positive", "duplicate_in_row", "not_in_corpus", "bad_score",
           "short_row", "near_copy", "suspected_fn")


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def teacher_spec(teacher: str):
    """The teacher's encoder spec at the run's precision (``--precision``)."""
    from hardneg.encode.encoder import EncoderSpec

    return EncoderSpec(model=teacher, precision=PRECISION[0])


# -- calibrate ------------------------------------------------------------------------------------------------------

def is_fusion(teacher: str) -> bool:
    from hardneg.mining.teachers import parse_teacher

    return parse_teacher(teacher).kind == "fusion"


def curve_list(teacher: str) -> list[tuple[str, str]]:
    """(filter, ref) pairs swept for ``teacher``: no posnbr for a fusion (it needs one encoder's document vectors)."""
    kinds = [k for k in FILTERS if not (k == "posnbr" and is_fusion(teacher))]
    return [(k, ref) for k in kinds for ref in REFS[k]]


def curve_name(name: str, teacher: str, kind: str, ref: str) -> str:
    """File stem of one curve: ``<dataset>-<teacher>-<filter>`` for ref=min, ``...-<ref>`` otherwise."""
    return f"{name}-{slug(teacher)}-{kind}" + ("" if ref == "min" else f"-{ref}")


def run_curves(data: dict[str, str], teacher: str, cache: Path, work: Path, *, images: bool = True) -> dict:
    from hardneg.io import claim_output
    from hardneg.mining.calibrate import run_calibrate

    res: dict = {}
    if images:
        IMG.mkdir(parents=True, exist_ok=True)
    for name, path in data.items():
        for kind, ref in curve_list(teacher):
            stem = curve_name(name, teacher, kind, ref)
            out = work / "calibrate" / stem
            t0 = time.perf_counter()
            with claim_output(out, "calibrate"):
                r = run_calibrate(path, teacher_spec(teacher), kind, out, n=N, depth=DEPTH, cache_dir=cache,
                                  progress=False, ref=ref)
            if images:  # --no-doc leaves docs/ alone: the PNGs stay in the work folder
                shutil.copyfile(out / "calibrate.png", IMG / f"{stem}.png")
            meta = json.loads((out / "calibrate.json").read_text(encoding="utf-8"))
            res[(name, kind, ref)] = {"rows": r["rows"], "title": r["markdown"].splitlines()[0], "meta": meta,
                                      "secs": time.perf_counter() - t0}
            print(f"calibrate {name} {kind} ref={ref}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return res


def _coverage(strategy: str) -> str:
    return re.search(r"coverage=([0-9.]+)", strategy).group(1)


def curves_markdown(res: dict, data: dict[str, str], teacher: str) -> str:
    from hardneg.mining.calibrate import COVERAGES

    names = list(data)
    curves = curve_list(teacher)
    first = curves[0]
    lines = [markers("calibrate", teacher)[0], "",
             f"Teacher {teacher} ({PRECISION[0]}, max_seq_length as the model's default), train split, n = {N}, "
             f"depth {DEPTH}. "
             "`percpos` and `marginpos` are swept with `ref=min` (the query's weakest positive, the default) and "
             "with `ref=row` (each row's own positive); `posnbr` has no ref"
             + (" and is not swept for a fusion teacher (it needs one encoder's document vectors)"
                if is_fusion(teacher) else "")
             + ". (query, positive) rows: "
             + ", ".join(f"{n} {res[(n, *first)]['title'].split(', ')[-1].split()[0]}" for n in names)
             + ". Whole grids: the PNGs (and `calibrate.csv` in the work folder).", ""]
    for kind, ref in curves:
        head = ["threshold"]
        for n in names:
            head += [f"{n} kept/row", f"{n} rows >= {N}", f"{n} empty", f"{n} hardest q50"]
        r_arg = "" if ref == "min" else f",ref={ref}"
        label = f"`{kind}(x{r_arg})+topk({N})`" + (", `ref=min`" if kind in ("percpos", "marginpos") and ref == "min"
                                                    else "")
        lines += [f"**{label}**", "", "| " + " | ".join(head) + " |",
                  "|" + "---|" * len(head)]
        by = {n: {r["threshold"]: r for r in res[(n, kind, ref)]["rows"] if not r["auto"]} for n in names}
        for x in SHOW[kind]:
            cells = [f"{x:g}"]
            for n in names:
                r = by[n].get(x) or next((v for k, v in by[n].items() if abs(k - x) < 1e-9), None)
                cells += (["–"] * 4 if r is None else
                          [f"{r['kept_per_row']:.2f}", _pct(r["rows_full"]), _pct(r["rows_empty"]),
                           "n/a" if r["hardest_q50"] is None else f"{r['hardest_q50']:.3f}"])
            lines.append("| " + " | ".join(cells) + " |")
        auto = []
        for n in names:
            got = {_coverage(r["strategy"]): r["resolved"] for r in res[(n, kind, ref)]["rows"] if r["auto"]}
            auto += [f"{n} {c:g}: " + (f"`{got[f'{c:g}']}`" if f"{c:g}" in got else "not reachable")
                     for c in COVERAGES]
        lines += ["", "Auto thresholds (coverage: resolved): " + "; ".join(auto) + ".", ""]
        alt = kind + (f" ref={ref}" if len(REFS[kind]) > 1 else "")
        lines += [" ".join(f"![{n} {alt}](fn-calibrate/{curve_name(n, teacher, kind, ref)}.png)" for n in names), ""]
    lines += [markers("calibrate", teacher)[1]]
    return "\n".join(lines) + "\n"


# -- audit ----------------------------------------------------------------------------------------------------------

def _bench():
    spec = importlib.util.spec_from_file_location("equivalence_st", ROOT / "benchmarks" / "equivalence_st.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _audit(mined: Path, data: str, out: Path, teacher: str, cache: Path) -> dict:
    from hardneg.io import claim_output
    from hardneg.mining.audit import run_audit

    with claim_output(out, "audit"):
        return run_audit(mined, data, out, teacher=teacher_spec(teacher), cache_dir=cache, n=N)


def run_audits(data: dict[str, str], teacher: str, cache: Path, work: Path) -> dict:
    from hardneg.data.load import load_dataset
    from hardneg.encode.cache import encode_cached
    from hardneg.encode.encoder import load_encoder

    res: dict = {}
    spec = teacher_spec(teacher)
    for name, path in data.items():
        mine_out = work / "mine" / f"{name}-{slug(teacher)}"
        if not (mine_out / "summary.json").is_file():
            cmd = [str(ROOT / ".venv" / "bin" / "hardneg"), "mine", "--data", path, "--out", str(mine_out),
                   "--teacher", teacher, "--cache", str(cache), "--depth", str(DEPTH), "--quiet",
                   "--precision", PRECISION[0]]
            for s in HARDNEG_STRATEGIES:
                cmd += ["-s", s]
            subprocess.run(cmd, check=True)
        for s in HARDNEG_STRATEGIES:
            folder = next(p for p in sorted(mine_out.iterdir()) if (p / "stats.json").is_file() and json.loads(
                (p / "stats.json").read_text(encoding="utf-8")).get("strategy") == s)
            t0 = time.perf_counter()
            out = work / "audit" / f"{name}-{slug(teacher)}-{folder.name}"
            res[(name, f"hardneg `{s}`")] = _audit(folder / "mined.jsonl", path, out, teacher, cache)
            print(f"audit {name} {s}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        # sentence-transformers on the same embeddings
        eq = _bench()
        ds = load_dataset(path, "train", cache_dir=cache)
        enc = load_encoder(spec, cache)
        q_emb = encode_cached(enc, ds.queries.ids, ds.queries.texts, "query", cache, progress=False)
        d_emb = encode_cached(enc, ds.corpus.ids, ds.corpus.encoding_texts, "doc", cache, progress=False)
        corpus = list(dict.fromkeys(ds.corpus.encoding_texts))
        doc_index = {t: i for i, t in enumerate(ds.corpus.encoding_texts)}
        query_index = {t: i for i, t in enumerate(ds.queries.texts)}
        qids = [q for q in ds.queries.ids if ds.positives(q)]
        anchors, positives = eq.st_pairs(ds, qids)
        from datasets import Dataset as HFDataset
        from sentence_transformers.util import mine_hard_negatives

        for label, kw in ST_CONFIGS.items():
            tag = "st-ntuple" + ("-rel0.05" if kw else "")
            f = work / "st" / f"{name}-{slug(teacher)}-{tag}.jsonl"
            if not f.is_file():
                f.parent.mkdir(parents=True, exist_ok=True)
                hook = eq.EmbeddingHook(enc.model, "shared", doc_lookup=(doc_index, d_emb),
                                        query_lookup=(query_index, q_emb))
                t0 = time.perf_counter()
                with hook:
                    out = mine_hard_negatives(HFDataset.from_dict({"anchor": anchors, "positive": positives}),
                                              enc.model, corpus=corpus, num_negatives=N, range_max=DEPTH,
                                              sampling_strategy="top", output_format="n-tuple", verbose=False,
                                              batch_size=256, **kw)
                tmp = f.with_suffix(".tmp")
                out.to_json(str(tmp), lines=True)
                tmp.replace(f)
                print(f"ST {name} {label}: {len(out):,} of {len(anchors):,} pairs, {time.perf_counter() - t0:.1f} s",
                      file=sys.stderr)
            t0 = time.perf_counter()
            r = _audit(f, path, work / "audit" / f"{name}-{slug(teacher)}-{tag}", teacher, cache)
            r["pairs_in"] = len(anchors)
            res[(name, label)] = r
            print(f"audit {name} {label}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return res


def audit_markdown(res: dict, teacher: str) -> str:
    lines = [markers("audit", teacher)[0], "",
             f"`hardneg audit --n {N} --teacher {teacher}` ({PRECISION[0]} teacher) on the train split. hardneg: "
             "`hardneg mine` output (one row per (query, positive)). ST: `mine_hard_negatives` given every "
             f"(query, positive) pair, n-tuple, {N} negatives, range_max {DEPTH}, ranking hardneg's cached {teacher} "
             "vectors; rows ST cannot fill are dropped by ST itself (rows < pairs). Cells: flagged negatives "
             "(rows affected).", ""]
    head = ["dataset", "mined by", "rows", "negatives"] + [f"`{k}`" for k in REASONS]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (name, label), r in res.items():
        rows = f"{r['rows']:,}" + (f" of {r['pairs_in']:,}" if "pairs_in" in r else "")
        cells = [name, label, rows, f"{r['negatives']:,}"]
        cells += [f"{r['counts'][k]:,} ({r['rows_affected'][k]:,})" for k in REASONS]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", markers("audit", teacher)[1]]
    return "\n".join(lines) + "\n"


# -- doc ------------------------------------------------------------------------------------------------------------

def write_doc(parts: dict[str, str], teacher: str) -> None:
    """Replace each part's block (its markers) inside the fn_calibrate markers; a missing block is added before the
    end marker, a missing fn_calibrate section at the end of the doc."""
    text = DOC.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        text = text.rstrip("\n") + "\n\n" + BEGIN + "\n\n" + END + "\n"
    for key, body in parts.items():
        a, b = markers(key, teacher)
        if a in text and b in text:
            i, j = text.index(a), text.index(b) + len(b)
            text = text[:i] + body.rstrip("\n") + text[j:]
        else:
            e = text.index(END)
            text = text[:e] + body + "\n" + text[e:]
    DOC.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--teacher", default="minilm")
    ap.add_argument("--part", choices=("calibrate", "audit", "all"), default="all")
    ap.add_argument("--data", action="append", default=None, help="NAME=FOLDER, repeatable")
    ap.add_argument("--work", type=Path, default=Path("/tmp/fn_calib"))
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                    help="teacher encoder precision (bf16: 2.3x faster encodes, scores within ~2e-3 of fp32)")
    ap.add_argument("--no-doc", action="store_true", help="print the Markdown instead of editing the doc and its PNGs")
    a = ap.parse_args(argv)
    PRECISION[0] = a.precision
    data = dict(x.split("=", 1) for x in a.data) if a.data else dict(DEFAULT_DATA)
    parts: dict[str, str] = {}
    if a.part in ("calibrate", "all"):
        parts["calibrate"] = curves_markdown(run_curves(data, a.teacher, a.cache, a.work, images=not a.no_doc),
                                             data, a.teacher)
    if a.part in ("audit", "all"):
        parts["audit"] = audit_markdown(run_audits(data, a.teacher, a.cache, a.work), a.teacher)
    if a.no_doc:
        print("\n".join(parts.values()))
    else:
        write_doc(parts, a.teacher)
        print(f"wrote {', '.join(parts)} into {DOC}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
