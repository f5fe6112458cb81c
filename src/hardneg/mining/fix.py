"""``hardneg audit --fix``: a cleaned copy of an audited mined set, in its own format: flagged negatives dropped,
rows refilled from the teacher's candidate pool with candidates that pass every check."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hardneg.io import write_jsonl
from hardneg.mining.audit_checks import suspect_threshold
from hardneg.mining.formats import MinedInput
from hardneg.mining.neighbours import normalise_text
from hardneg.types import Dataset

def refill_rows(inp: MinedInput, info: dict, dataset: Dataset, pool, tau: float) -> dict[int, list[tuple]]:
    """Per row, replacements (docid, teacher score, raw rank) from the pool, in rank order, that pass every check."""
    if pool is None:
        return {}
    row_of = dataset.corpus.row
    qi = {q: i for i, q in enumerate(pool.qids)}
    embs = info.get("embs")
    out: dict[int, list[tuple]] = {}
    for ri, r in enumerate(inp.rows):
        dropped = sum(1 for f in info["flags"][ri] if f)
        want = max(0, info["n"] - (len(r.neg) - dropped))
        if not want or r.qid not in qi:
            continue
        i = qi[r.qid]
        pos_ids = set(dataset.positives(r.qid)) | {d.docid for d in r.pos if d.docid}
        pos_txt = {normalise_text(dataset.corpus.encoding_texts[row_of[p]]) for p in pos_ids if p in row_of}
        have = {d.docid for d, f in zip(r.neg, info["flags"][ri]) if not f}
        lo, hi = int(pool.pos_ptr[i]), int(pool.pos_ptr[i + 1])
        s = pool.pos_score[lo:hi].astype(np.float64)
        ref = suspect_threshold(float(s.min()))
        prow = [row_of[p] for p in pos_ids if p in row_of]
        got: list[tuple] = []
        for c, sc, rk in zip(pool.cand_idx[i].tolist(), pool.cand_score[i].tolist(), pool.cand_rank[i].tolist()):
            if len(got) >= want:
                break
            if c < 0:
                break
            d = dataset.corpus.ids[c]
            if d in have or d in pos_ids or sc >= ref:
                continue
            if normalise_text(dataset.corpus.encoding_texts[c]) in pos_txt:
                continue
            if embs is not None and prow and float((embs[2][c] @ embs[2][prow].T).max()) >= tau:
                continue
            got.append((d, round(float(sc), 6), int(rk)))
            have.add(d)
        out[ri] = got
    return out


def write_fixed(inp: MinedInput, info: dict, dataset: Dataset, fix: Path, refill: dict[int, list[tuple]]) -> dict:
    from hardneg.io import ensure_dir

    ensure_dir(fix)
    texts, row_of = dataset.corpus.encoding_texts, dataset.corpus.row
    n = info["n"]
    kept_rows: list[Any] = []
    dropped_negs = added = dropped_rows = 0
    for ri, r in enumerate(inp.rows):
        flags = info["flags"][ri]
        keep = [j for j, f in enumerate(flags) if not f]
        extra = refill.get(ri, [])
        dropped_negs += len(flags) - len(keep)
        added += len(extra)
        if inp.format == "hardneg":
            negs = [r.raw["neg"][j] for j in keep]
            negs += [{"docid": d, "text": texts[row_of[d]], "score": sc, "rank": rk, "refilled": True}
                     for d, sc, rk in extra]
            kept_rows.append({**r.raw, "neg": negs})
        elif inp.format == "flag":
            negs = [r.raw["neg"][j] for j in keep] + [texts[row_of[d]] for d, _, _ in extra]
            out = {**r.raw, "neg": negs}
            if "neg_scores" in r.raw:
                out["neg_scores"] = [r.raw["neg_scores"][j] for j in keep] + [sc for _, sc, _ in extra]
            kept_rows.append(out)
        else:
            negs = [r.neg[j].text for j in keep] + [texts[row_of[d]] for d, _, _ in extra]
            if inp.format == "st-n-tuple":
                if len(negs) < n:
                    dropped_rows += 1  # fixed columns: a row that cannot be refilled to n is left out
                    continue
                kept_rows.append({"anchor": r.query, "positive": r.pos[0].text,
                                  **{f"negative_{k + 1}": negs[k] for k in range(n)}})
            elif inp.format == "st-triplet":
                kept_rows += [{"anchor": r.query, "positive": r.pos[0].text, "negative": t} for t in negs]
            elif inp.format == "st-labeled-pair":
                kept_rows += [{"anchor": r.query, "positive": p.text, "label": 1} for p in r.pos]
                kept_rows += [{"anchor": r.query, "positive": t, "label": 0} for t in negs]
            else:
                kept_rows.append({"anchor": r.query, "positive": [p.text for p in r.pos] + negs,
                                  "labels": [1] * len(r.pos) + [0] * len(negs)})
    name = {"hardneg": "mined.jsonl", "flag": "flag.jsonl"}.get(inp.format, "st.jsonl")
    written = write_jsonl(fix / name, kept_rows)
    if inp.extra.get("saved") and kept_rows:
        import datasets

        datasets.Dataset.from_list(kept_rows).save_to_disk(str(fix / "st"))
    return {"file": str(fix / name), "rows": written, "negatives_dropped": dropped_negs, "negatives_refilled": added,
            "rows_dropped": dropped_rows, "refilled_from_pool": bool(refill)}

