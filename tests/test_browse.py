"""`hardneg browse`: the data the page embeds (hand-made mined sets with known leaks, traps, hidden positives and
audit reasons), bad input at the library level, HTML escaping, and the page itself in a real headless Chromium
(driven by Playwright) on SciFact mined with the fake `hash` teacher, plus a 110k-row NFCorpus load benchmark.

The browser tests need /usr/bin/chromium (Debian package) and the `playwright` package: scripts/install_browser.sh
installs both; where they are missing these tests skip and say why.
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from conftest import SHARED_DATA
from hardneg.browse import Extras, MinedInput, build_page_data, expand, render_page, write_browse
from hardneg.browse.data import FLAGS, check_same_data
from hardneg.browse.inputs import audit_map, read_audit, read_hidden, read_sets, resolve_mined
from hardneg.browse.page import GENERATOR_META, embed_json, is_browse_page
from hardneg.errors import HardnegError

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

# -- hand-made mined sets ------------------------------------------------------------------------------------------

TEXTS = {
    "p1": "Cats eat fish.", "p2": "Cat food is made of fish.", "p3": "Dogs bark at night.",
    "dupe": "  cats EAT   fish. ",  # the text of p1, other case and spacing
    "inj-1": "Cats eat fish",  # a near-copy of p1, injected as a trap of q1
    "h1": "Dogs bark when they hear noises.",  # a hidden positive of q2
    "n1": "Birds fly south.", "n2": "Fish swim.", "n3": "The sea is deep.", "n4": "Balls bounce.",
    "n5": "People sleep.",
}


def _row(qid, query, pos, negs, pos_score=0.9, **extra):
    return {"qid": qid, "query": query, "pos": {"docid": pos, "text": TEXTS[pos], "score": pos_score},
            "neg": [{"docid": d, "text": TEXTS[d], "score": s, "rank": r} | extra for d, s, r in negs]}


def rows_topk():
    return [_row("q1", "what do cats eat", "p1", [("p2", 0.95, 2), ("dupe", 0.93, 3), ("inj-1", 0.92, 4),
                                                  ("n1", 0.5, 5)]),
            _row("q1", "what do cats eat", "p2", [("p1", 0.97, 1), ("n1", 0.5, 5), ("n2", 0.4, 6), ("n3", 0.3, 7)],
                 pos_score=0.8),
            _row("q2", "why do dogs bark", "p3", [("h1", 0.91, 1), ("n4", 0.2, 3)], pos_score=0.7)]


def rows_percpos():
    return [_row("q1", "what do cats eat", "p1", [("n1", 0.5, 5), ("n2", 0.4, 6), ("n3", 0.3, 7), ("n4", 0.2, 8)]),
            _row("q1", "what do cats eat", "p2", [("n1", 0.5, 5), ("n2", 0.4, 6), ("n3", 0.3, 7), ("n4", 0.2, 8)],
                 pos_score=0.8),
            _row("q2", "why do dogs bark", "p3", [("n4", 0.2, 3), ("n5", 0.1, 4), ("n1", 0.05, 5), ("n2", 0.0, 6)],
                 pos_score=0.7)]


AUDIT = [{"qid": "q2", "docid": "n4", "reasons": ["posnbr", "near-dup query"], "scores": {"posnbr": 0.97}}]


def hand_sets():
    return [MinedInput(name="topk(4)", rows=rows_topk(), teacher="hash", n=4, strategy="topk(4)"),
            MinedInput(name="percpos(0.95)+topk(4)", rows=rows_percpos(), teacher="hash", n=4,
                       strategy="percpos(0.95)+topk(4)")]


def hand_extras():
    return Extras(traps={"q1": {"inj-1": "truncate of p1"}}, hidden={"q2": {"h1": 2}},
                  audit={("q2", "n4"): {"reasons": ["posnbr", "near-dup query"], "scores": {"posnbr": 0.97}}})


def _badges(neg):
    return {kind for kind, _ in neg["badges"]}


def test_embedded_data_badges_for_known_leaks_traps_hidden_and_audit():
    data = build_page_data(hand_sets(), hand_extras())
    view = expand(data)
    assert [q["qid"] for q in view] == ["q1", "q2"]
    assert data["queries"]["start"] == [0, 2, 3]
    q1, q2 = view
    assert [r["pos"] for r in q1["rows"]] == ["p1", "p2"]
    top = q1["rows"][0]["sets"]["topk(4)"]
    assert [n["docid"] for n in top["neg"]] == ["p2", "dupe", "inj-1", "n1"]
    assert [_badges(n) for n in top["neg"]] == [{"positive"}, {"duplicate"}, {"trap"}, set()]
    assert ("trap", "injected trap (truncate of p1)") in top["neg"][2]["badges"]
    assert [(n["score"], n["rank"], n["teacher"]) for n in top["neg"]][:2] == [(0.95, 2, "hash"), (0.93, 3, "hash")]
    assert top["pos_score"] == 0.9
    assert _badges(q1["rows"][1]["sets"]["topk(4)"]["neg"][0]) == {"positive"}  # p1 mined for the row of p2
    assert all(not n["badges"] for r in q1["rows"] for n in r["sets"]["percpos(0.95)+topk(4)"]["neg"])
    t2 = q2["rows"][0]["sets"]["topk(4)"]["neg"]
    assert t2[0]["badges"] == [("hidden", "hidden positive (grade 2)")]
    assert t2[1]["badges"] == [("audit", "posnbr"), ("audit", "near-dup query")]
    assert t2[1]["tip"] == "audit: posnbr=0.9700"
    assert _badges(q2["rows"][0]["sets"]["percpos(0.95)+topk(4)"]["neg"][0]) == {"audit"}
    # query flags, per set
    assert q1["flags"] == {"topk(4)": ["known_fn", "leak"], "percpos(0.95)+topk(4)": []}
    assert q2["flags"] == {"topk(4)": ["short", "audit", "known_fn"], "percpos(0.95)+topk(4)": ["audit"]}
    # known false negatives of each query, mined or not
    assert q1["known"] == [("inj-1", "trap", "injected trap (truncate of p1)")]
    assert q2["known"] == [("h1", "hidden", "hidden positive (grade 2)")]
    s = {x["name"]: x["summary"] for x in data["sets"]}
    assert (s["topk(4)"]["rows"], s["topk(4)"]["short"], s["topk(4)"]["positive"], s["topk(4)"]["duplicate"],
            s["topk(4)"]["trap"], s["topk(4)"]["hidden"], s["topk(4)"]["audit"], s["topk(4)"]["top1_above_pos"]) \
        == (3, 1, 2, 1, 1, 1, 1, 3)
    assert (s["percpos(0.95)+topk(4)"]["short"], s["percpos(0.95)+topk(4)"]["top1_above_pos"]) == (0, 0)
    # Fig. 4 data: one positive and one top-1 negative per row, on shared bins
    ch = data["charts"]
    assert all(sum(c["pos"]) == 3 and sum(c["top1"]) == 3 and sum(c["diff"]) == 3 for c in ch["sets"])
    assert len(ch["edges"]) == len(ch["sets"][0]["pos"]) + 1


def test_embedded_data_is_compact_each_text_once():
    data = build_page_data(hand_sets(), hand_extras())
    ids = data["docs"]["ids"]
    assert len(ids) == len(set(ids)) == len(TEXTS)
    assert data["docs"]["text"][ids.index("p1")] == TEXTS["p1"]
    assert data["queries"]["text"] == ["what do cats eat", "why do dogs bark"]
    neg = data["sets"][0]["neg"]
    assert neg["nn"] == [4, 4, 2] and len(neg["doc"]) == len(neg["score"]) == len(neg["rank"]) == 10
    assert all(isinstance(v, int) for v in neg["doc"] + neg["score"])  # scores as scaled integers
    assert neg["teacher"] is None  # one teacher: not repeated per negative
    assert set(data["flags"]) == set(FLAGS)


def test_ensemble_negatives_name_their_teacher_and_pads_are_marked():
    rows = rows_percpos()
    rows[0]["neg"][1]["teacher"] = "mpnet"
    for n in rows[0]["neg"][:1] + rows[0]["neg"][2:]:
        n["teacher"] = "minilm"
    rows[2]["neg"][3] = {"docid": "n3", "text": TEXTS["n3"], "rank": -1, "pad": True}
    data = build_page_data([MinedInput(name="ens", rows=rows, n=4)])
    view = expand(data)
    assert [n["teacher"] for n in view[0]["rows"][0]["sets"]["ens"]["neg"]] == ["minilm", "mpnet", "minilm", "minilm"]
    pad = view[1]["rows"][0]["sets"]["ens"]["neg"][3]
    assert _badges(pad) == {"pad"} and pad["rank"] == -1 and pad["score"] is None
    assert "short" in view[1]["flags"]["ens"]  # a padded row was short of n


def test_limit_keeps_the_first_queries_with_all_their_rows():
    data = build_page_data(hand_sets(), limit=1)
    assert data["queries"]["ids"] == ["q1"] and data["rows"]["pos"] and len(data["rows"]["pos"]) == 2
    assert data["limit"]["queries_total"] == 2 and data["limit"]["queries"] == 1
    assert (data["limit"]["rows_total"], data["limit"]["rows_shown"]) == (3, 2)
    with pytest.raises(HardnegError, match="at least 1"):
        build_page_data(hand_sets(), limit=0)


def test_sets_of_different_data_are_refused():
    other = rows_percpos()
    other[2]["qid"] = "q9"
    with pytest.raises(HardnegError, match="different data") as exc:
        check_same_data([hand_sets()[0], MinedInput(name="other", rows=other)])
    assert "\n" not in str(exc.value) and "q9" in str(exc.value)
    changed = rows_percpos()
    changed[0]["neg"][0]["text"] = "another text for n1"
    with pytest.raises(HardnegError, match="document n1 has different texts"):
        check_same_data([hand_sets()[0], MinedInput(name="other", rows=changed)])
    with pytest.raises(HardnegError, match="mined from b/train and a/train"):
        check_same_data([MinedInput(name="x", rows=rows_topk(), dataset="a/train"),
                         MinedInput(name="y", rows=rows_percpos(), dataset="b/train")])


# -- files: inputs, audit, hidden, output rules (library level) ----------------------------------------------------

def _write_jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def hand_mine_folder(root: Path) -> Path:
    """A `hardneg mine --out` look-alike: two strategy folders, mine_config.json (percpos listed first)."""
    out = root / "mine"
    for slug, strat, rows in (("topk-4", "topk(4)", rows_topk()),
                              ("percpos-0.95_topk-4", "percpos(0.95)+topk(4)", rows_percpos())):
        _write_jsonl(out / slug / "mined.jsonl", rows)
        (out / slug / "stats.json").write_text(json.dumps({"strategy": strat, "teacher": "hash", "n_requested": 4}))
    (out / "mine_config.json").write_text(json.dumps({"strategies": ["percpos(0.95)+topk(4)", "topk(4)"],
                                                      "teacher": {"model": "hash"}, "depth": 100, "seed": 0}))
    (out / "summary.json").write_text(json.dumps({"dataset": {"name": "hand", "split": "train"}}))
    return out


def test_mine_folder_resolves_in_config_order_with_names_from_stats(tmp_path):
    out = hand_mine_folder(tmp_path)
    files = resolve_mined([out])
    assert [f.parent.name for f in files] == ["percpos-0.95_topk-4", "topk-4"]
    sets = read_sets([out])
    assert [s.name for s in sets] == ["percpos(0.95)+topk(4)", "topk(4)"]
    assert all(s.teacher == "hash" and s.n == 4 and s.dataset == "hand/train" for s in sets)
    # a file and its folder given twice count once; two files of the same strategy get distinct names
    assert len(resolve_mined([out / "topk-4", out / "topk-4" / "mined.jsonl"])) == 1
    copy = _write_jsonl(tmp_path / "copy" / "topk-4" / "mined.jsonl", rows_topk())
    (copy.parent / "stats.json").write_text(json.dumps({"strategy": "topk(4)", "n_requested": 4}))
    assert [s.name for s in read_sets([out / "topk-4", copy])] == ["topk(4)", "topk(4) (2)"]


def test_several_teacher_mine_folder_names_sets_by_teacher(tmp_path):
    for teacher in ("hash", "minilm"):
        f = _write_jsonl(tmp_path / "mine" / teacher / "topk-4" / "mined.jsonl", rows_topk())
        (f.parent / "stats.json").write_text(json.dumps({"strategy": "topk(4)", "teacher": teacher, "n_requested": 4}))
    sets = read_sets([tmp_path / "mine"])
    assert [(s.name, s.teacher) for s in sets] == [("hash: topk(4)", "hash"), ("minilm: topk(4)", "minilm")]


def test_write_browse_page_and_earlier_page_is_replaced(tmp_path):
    out = hand_mine_folder(tmp_path)
    audit = _write_jsonl(tmp_path / "audit.jsonl", AUDIT)
    page = tmp_path / "page.html"
    res = write_browse([out], page, audit=[audit])
    assert res["queries"] == 2 and res["rows"] == 3 and res["sets"] == ["percpos(0.95)+topk(4)", "topk(4)"]
    html = page.read_text(encoding="utf-8")
    assert is_browse_page(page) and GENERATOR_META in html[:4096]
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "") and "https://" not in html
    data = _page_data(html)
    view = expand(data)
    assert _badges(view[1]["rows"][0]["sets"]["topk(4)"]["neg"][1]) == {"audit"}
    assert data["sources"]["audit"]["lines"] == 1
    write_browse([out / "topk-4"], page, limit=1)  # an earlier browse page is replaced
    assert len(_page_data(page.read_text(encoding="utf-8"))["queries"]["ids"]) == 1


def test_audit_lines_naming_a_strategy_mark_only_that_set(tmp_path):
    lines = read_audit(_write_jsonl(tmp_path / "a.jsonl", [AUDIT[0] | {"strategy": "topk(4)"}]))
    sets = hand_sets()
    maps = audit_map(lines, [s.name for s in sets], [s.strategy for s in sets])
    view = expand(build_page_data(sets, Extras(audit=maps)))
    assert _badges(view[1]["rows"][0]["sets"]["topk(4)"]["neg"][1]) == {"audit"}
    assert not view[1]["rows"][0]["sets"]["percpos(0.95)+topk(4)"]["neg"][0]["badges"]


def test_hidden_json_formats(tmp_path):
    p = tmp_path / "hidden.json"
    p.write_text(json.dumps({"q2": {"h1": 2}}))
    assert read_hidden(p, "train") == {"q2": {"h1": 2}}
    p.write_text(json.dumps({"format": 1, "settings": {"split": "train"}, "hidden": {"q2": ["h1"]}}))
    assert read_hidden(p, "train") == {"q2": {"h1": 1}}
    assert read_hidden(p, "test") is None  # made for another split: not used
    p.write_text(json.dumps({"q2": {"h1": "high"}}))
    with pytest.raises(HardnegError, match="docid -> grade"):
        read_hidden(p, "train")


@pytest.mark.parametrize("case", ["missing", "folder", "malformed", "no_reasons", "bad_scores", "not_utf8"])
def test_unreadable_audit_file_is_one_line_error_and_nothing_written(tmp_path, case):
    out = hand_mine_folder(tmp_path)
    audit = tmp_path / "audit.jsonl"
    if case == "folder":
        audit.mkdir()
    elif case == "malformed":
        audit.write_text(json.dumps(AUDIT[0]) + "\n{not json\n")
    elif case == "no_reasons":
        audit.write_text(json.dumps({"qid": "q2", "docid": "n4", "reasons": []}) + "\n")
    elif case == "bad_scores":
        audit.write_text(json.dumps({"qid": "q2", "docid": "n4", "reasons": ["x"], "scores": {"a": "high"}}) + "\n")
    elif case == "not_utf8":
        audit.write_bytes(b'{"qid": "q2", "docid": "\xff", "reasons": ["x"]}\n')
    page = tmp_path / "page.html"
    with pytest.raises(HardnegError) as exc:
        write_browse([out], page, audit=[audit])
    msg = exc.value.one_line()
    assert "\n" not in msg and "audit" in msg and "Fix:" in msg
    if case in ("malformed", "no_reasons", "bad_scores", "not_utf8"):
        assert re.search(r"audit\.jsonl:\d+: ", msg)
    assert not page.exists() and not list(tmp_path.glob(".page.html*"))


def test_bad_inputs_are_refused_and_nothing_written(tmp_path):
    out = hand_mine_folder(tmp_path)
    page = tmp_path / "page.html"
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    with pytest.raises(HardnegError, match="no mined set in the folder"):
        write_browse([empty], page)
    with pytest.raises(HardnegError, match="mined set not found"):
        write_browse([tmp_path / "nope"], page)
    other = _write_jsonl(tmp_path / "other" / "mined.jsonl",
                         [_row("q7", "another dataset's query", "p3", [("n1", 0.1, 1)])])
    with pytest.raises(HardnegError, match="different data") as exc:
        write_browse([out, other], page)
    assert "\n" not in exc.value.one_line()
    with pytest.raises(HardnegError, match="at least 1"):
        write_browse([out], page, limit=0)
    assert not page.exists()
    # output rules: never a file hardneg did not write, never an input
    page.write_text("my notes")
    with pytest.raises(HardnegError, match="not written by `hardneg browse`"):
        write_browse([out], page)
    assert page.read_text() == "my notes"
    mined = out / "topk-4" / "mined.jsonl"
    before = mined.read_bytes()
    with pytest.raises(HardnegError, match="is the input"):
        write_browse([mined], mined)
    assert mined.read_bytes() == before
    with pytest.raises(HardnegError, match="is a folder"):
        write_browse([out], tmp_path)


def test_data_folder_must_be_the_mined_data(tmp_path, tiny_beir):
    out = hand_mine_folder(tmp_path)
    page = tmp_path / "page.html"
    with pytest.raises(HardnegError, match="was not mined from --data"):
        write_browse([out], page, data=tiny_beir)
    assert not page.exists()


def test_html_escaping_in_the_page_source():
    nasty_q = '</script><script>window.__pwned=1</script> "quoted" & \'single\' </div><!--'
    nasty_d = '<img src=x onerror="window.__pwned=2"></div><b>bold</b> \u2028 </SCRIPT>'
    TEXTS["nasty"] = nasty_d
    try:
        rows = [_row('q"<1>', nasty_q, "p1", [("nasty", 0.5, 2)])]
        html = render_page(build_page_data([MinedInput(name='set "<x>"', rows=rows)]))
    finally:
        del TEXTS["nasty"]
    assert "__pwned" in html  # the texts are there, only escaped
    assert "<script>window.__pwned" not in html and "<img src=x" not in html and "</div><b>" not in html
    assert html.lower().count("</script") == 2  # the data element's and the code's own
    assert "<!--" not in html
    data = _page_data(html)
    assert data["queries"]["text"] == [nasty_q] and nasty_d in data["docs"]["text"]
    assert json.loads(embed_json({"a": "</script>&\u2028"})) == {"a": "</script>&\u2028"}


def _page_data(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="hb-data">(.*?)</script>', html, re.S)
    return json.loads(m.group(1))


# -- real data: SciFact with injected traps, mined with the hash teacher ---------------------------------------------

SCIFACT = SHARED_DATA / "scifact"
STRATEGIES = ("topk(4)", "percpos(0.95)+topk(4)")


@pytest.fixture(scope="module")
def scifact_run(tmp_path_factory):
    """SciFact train with 30% of its pairs given an injected trap, mined with `hash` (two strategies), a hidden
    positive and an audit line added by hand, and the browse page written from it."""
    if not SCIFACT.is_dir():
        pytest.skip(f"shared SciFact data not present at {SCIFACT}")
    from hardneg.data.inject import inject_false_negatives, manifest_for
    from hardneg.data.load import load_dataset
    from hardneg.encode.encoder import EncoderSpec
    from hardneg.io import claim_output
    from hardneg.mining.pipeline import MineConfig, parse_plan, run_mine

    root = tmp_path_factory.mktemp("browse")
    inj, out, cache = root / "scifact-inj", root / "mine", root / "cache"
    inject_false_negatives(SCIFACT, inj, rate=0.3, seed=0)
    cfg = MineConfig(teacher=EncoderSpec(model="hash"), strategies=tuple(parse_plan(s) for s in STRATEGIES))
    with claim_output(out, "mine", inputs=[inj]):
        ds = load_dataset(inj, "train", cache_dir=cache)
        summary = run_mine(ds, cfg, out, cache, progress=False, manifest=manifest_for(inj, "train"))
    top = [json.loads(x) for x in (out / "topk-4" / "mined.jsonl").read_text().splitlines()]
    hidden_q, hidden_d = top[5]["qid"], top[5]["neg"][1]["docid"]  # pretend `hardneg thin` hid it
    (inj / "hidden.json").write_text(json.dumps({hidden_q: {hidden_d: 1}}))
    audit = _write_jsonl(root / "audit.jsonl", [{"qid": top[7]["qid"], "docid": top[7]["neg"][0]["docid"],
                                                 "reasons": ["posnbr"], "scores": {"posnbr": 0.98}}])
    page = root / "browse.html"
    t0 = time.perf_counter()
    cwd = os.getcwd()
    os.chdir(root)  # relative paths, as a person types them (and as the page then shows them)
    try:
        res = write_browse(["mine"], "browse.html", data="scifact-inj", audit=["audit.jsonl"], cache_dir=Path("cache"))
    finally:
        os.chdir(cwd)
    build_s = time.perf_counter() - t0
    html = page.read_text(encoding="utf-8")
    return {"root": root, "inj": inj, "out": out, "cache": cache, "summary": summary, "top": top, "page": page,
            "res": res, "data": _page_data(html), "hidden": (hidden_q, hidden_d), "audit": audit,
            "build_s": build_s}


def test_scifact_trap_badges_match_the_trap_rates_of_mine(scifact_run):
    data, summary = scifact_run["data"], scifact_run["summary"]
    by_name = {s["name"]: s for s in data["sets"]}
    for strat in STRATEGIES:
        # `hardneg mine` counts the traps each strategy selected; the page marks exactly those negatives
        assert by_name[strat]["summary"]["trap"] == summary["strategies"][strat]["traps"]["traps_selected"]
    assert by_name["topk(4)"]["summary"]["trap"] > 0
    view = expand(data)
    q, d = scifact_run["hidden"]
    entry = next(x for x in view if x["qid"] == q)
    negs = [n for r in entry["rows"] for n in r["sets"]["topk(4)"]["neg"] if n["docid"] == d]
    assert negs and all("hidden" in _badges(n) for n in negs)
    assert "known_fn" in entry["flags"]["topk(4)"]
    assert data["sources"]["injected"]["docs"] > 0 and data["sources"]["hidden"]["docs"] == 1


def test_scifact_removed_candidates_from_the_cached_pool(scifact_run):
    view = expand(scifact_run["data"])
    names = {s["name"]: s for s in scifact_run["data"]["sets"]}
    assert names["topk(4)"]["removed"] is not None and not names["topk(4)"]["removed"]["row"]  # no filter
    pp = names["percpos(0.95)+topk(4)"]
    assert pp["removed"]["filters"] == ["percpos(0.95)"] and pp["removed_note"] is None
    n_removed = 0
    for q in view:
        ref = min(r["sets"]["percpos(0.95)+topk(4)"]["pos_score"] for r in q["rows"])  # percpos's default ref=min
        for r in q["rows"]:
            s = r["sets"]["percpos(0.95)+topk(4)"]
            mined = {n["docid"] for n in s["neg"]}
            last = max((n["rank"] for n in s["neg"]), default=10 ** 9)
            for x in s["removed"]:
                n_removed += 1
                assert x["docid"] not in mined and x["filter"] == "percpos(0.95)"
                assert x["score"] >= 0.95 * ref - 1e-3  # what percpos(0.95) removes
                assert len(s["neg"]) < 4 or x["rank"] < last
            assert len(s["removed"]) <= 10
    assert n_removed > 0


def test_scifact_page_size_and_build_time(scifact_run):
    res = scifact_run["res"]
    assert res["queries"] == 809 and res["rows"] == 919
    print(f"\nSciFact train page: {res['rows']} rows x {len(STRATEGIES)} sets, {res['bytes'] / 1e6:.1f} MB, "
          f"built in {scifact_run['build_s']:.1f} s")


# -- the page in a real headless Chromium ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("headless Chromium is not installed at /usr/bin/chromium: run scripts/install_browser.sh "
                    "(Debian package chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed: run scripts/install_browser.sh")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


class Opened:
    """A page loaded from file://, with every console error, page error and non-local request recorded."""

    def __init__(self, browser, path: Path, width: int = 1440, height: int = 1000):
        self.page = browser.new_page(viewport={"width": width, "height": height})
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda m: self.errors.append(f"console {m.type}: {m.text}")
                     if m.type in ("error", "warning") else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.on("request", lambda r: self.requests.append(r.url)
                     if not r.url.startswith(("file://", "data:")) else None)
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        t0 = time.perf_counter()
        self.page.goto(path.resolve().as_uri())
        self.page.wait_for_selector("body[data-ready='1']", timeout=120_000)
        self.load_s = time.perf_counter() - t0

    def search(self, text: str) -> None:
        self.page.fill("#search", text)
        self.page.wait_for_function("t => window.hardnegBrowse.term === t", arg=text, timeout=10_000)

    def list_qids(self) -> list[str]:
        return self.page.eval_on_selector_all("#qlist li[data-qid]", "els => els.map(e => e.dataset.qid)")

    def close(self) -> None:
        self.page.close()


def test_browser_scifact_page(browser, scifact_run):
    top = scifact_run["top"]
    o = Opened(browser, scifact_run["page"])
    try:
        assert o.errors == [] and o.requests == [] and o.dialogs == []
        # one list entry per query of the mined set (the list is paged: its data-count is the full count)
        n_queries = len({r["qid"] for r in top})
        assert int(o.page.get_attribute("#qlist", "data-count")) == n_queries == 809
        assert f"of {n_queries:,} queries" in o.page.inner_text("#count")
        assert len(o.list_qids()) == 100
        # the Fig. 4 charts: one card with two inline SVG histograms per strategy
        assert o.page.locator(".card").count() == 2 and o.page.locator(".card svg").count() == 4
        # typing a qid leaves that query, first
        qid = top[300]["qid"]
        o.search(qid)
        qids = o.list_qids()
        assert qids[0] == qid
        assert o.page.inner_text("#detail h2") == top[300]["query"]
        o.search(f"qid:{qid}")
        assert o.list_qids() == [qid]
        # a docid finds the queries that mined it
        o.search(f"doc:{top[300]['neg'][0]['docid']}")
        assert qid in o.list_qids()
        # a known injected trap shows its badge, in the strategy that mined it
        view = expand(scifact_run["data"])
        trap_q = next(q for q in view if any("trap" in _badges(n) for r in q["rows"]
                                            for n in r["sets"]["topk(4)"]["neg"])
                      and not any("trap" in _badges(n) for r in q["rows"]
                                  for n in r["sets"]["percpos(0.95)+topk(4)"]["neg"]))
        o.search(f"qid:{trap_q['qid']}")
        assert o.list_qids() == [trap_q["qid"]]
        trap_badge = o.page.locator(".col[data-set='topk(4)'] .badge.trap").first
        assert trap_badge.is_visible() and trap_badge.inner_text().startswith("injected trap")
        assert o.page.locator(".col[data-set='percpos(0.95)+topk(4)'] .badge.trap").count() == 0
        assert o.page.locator(".known .badge.trap").count() >= 1
        # two strategies side by side
        cols = o.page.locator(".prow").first.locator(".col")
        assert cols.count() == 2
        a, b = cols.nth(0).bounding_box(), cols.nth(1).bounding_box()
        assert abs(a["y"] - b["y"]) < 2 and b["x"] >= a["x"] + a["width"] - 1
        # filters: rows with a trap or hidden positive
        o.search("")
        o.page.check("input[data-flag='known_fn']")
        o.page.wait_for_function("() => document.querySelector('#qlist').dataset.count !== '809'")
        n_known = sum(1 for q in view if any(q["flags"][s] and "known_fn" in q["flags"][s] for s in q["flags"]))
        assert int(o.page.get_attribute("#qlist", "data-count")) == n_known > 0
        o.page.uncheck("input[data-flag='known_fn']")
        # the screenshot for the docs: the trap query, statistics and charts open
        o.search(f"qid:{trap_q['qid']}")
        removed = o.page.locator(".col[data-set='percpos(0.95)+topk(4)'] details.rm")
        if removed.count():
            removed.first.evaluate("e => e.open = true")
        (ROOT / "docs").mkdir(exist_ok=True)
        o.page.set_viewport_size({"width": 1440, "height": 1350})
        o.page.screenshot(path=str(ROOT / "docs" / "browse.png"))
        assert o.errors == [] and o.requests == [] and o.dialogs == []
    finally:
        o.close()
    assert (ROOT / "docs" / "browse.png").stat().st_size > 50_000


def test_browser_shows_markup_as_text(browser, tmp_path):
    nasty_q = '</script><script>alert(1)</script> "quoted" </div><b>not bold</b>'
    nasty_d = '<img src=x onerror="alert(2)"></div> "doc" <script>alert(3)</script>'
    TEXTS["nasty"] = nasty_d
    try:
        rows = [_row("q<1>", nasty_q, "p1", [("nasty", 0.5, 2)])]
        page = tmp_path / "nasty.html"
        write_browse([_write_jsonl(tmp_path / "m" / "mined.jsonl", rows)], page)
    finally:
        del TEXTS["nasty"]
    o = Opened(browser, page)
    try:
        assert o.page.inner_text("#detail h2") == nasty_q
        assert o.page.locator("#detail li[data-doc='nasty'] .txt").inner_text() == nasty_d
        assert o.page.locator("#detail b, #detail img, #detail script").count() == 0
        assert o.list_qids() == ["q<1>"]
        assert o.errors == [] and o.dialogs == [] and o.requests == []
    finally:
        o.close()


NFCORPUS = SHARED_DATA / "nfcorpus"


def test_browser_load_time_of_a_110k_row_page(browser, tmp_path):
    """NFCorpus train, one row per (query, positive): 110,575 rows x 2 strategies (hash teacher, in memory)."""
    if not NFCORPUS.is_dir():
        pytest.skip(f"shared NFCorpus data not present at {NFCORPUS}")
    from hardneg.data.load import load_dataset
    from hardneg.encode.encoder import EncoderSpec
    from hardneg.mining.export import project_rows
    from hardneg.mining.pipeline import get_pool
    from hardneg.mining.select import apply_strategy
    from hardneg.mining.strategy import parse_strategy

    ds = load_dataset(NFCORPUS, "train")
    pool = get_pool(EncoderSpec(model="hash"), ds, 100, None, progress=False)
    # Two strategies that both fill their 4 negatives (percpos leaves most rows empty with the hash teacher): the
    # page at its full size.
    sets = [MinedInput(name=s, rows=list(project_rows(apply_strategy(pool, parse_strategy(s)), ds)), teacher="hash",
                       n=4, strategy=s) for s in ("topk(4)", "shift(10)+topk(4)")]
    t0 = time.perf_counter()
    data = build_page_data(sets)
    html = render_page(data)
    build_s = time.perf_counter() - t0
    page = tmp_path / "nfcorpus.html"
    page.write_text(html, encoding="utf-8")
    rows, negs = len(sets[0].rows), sum(len(s["neg"]["doc"]) for s in data["sets"])
    assert rows >= 100_000
    o = Opened(browser, page)
    try:
        assert o.errors == []
        assert int(o.page.get_attribute("#qlist", "data-count")) == len(data["queries"]["ids"])
        js_ms = o.page.evaluate("window.hardnegBrowse.loadMs")
        t0 = time.perf_counter()
        o.search(data["docs"]["ids"][1234])
        search_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        o.page.click("#qlist li:nth-child(2)")
        o.page.wait_for_function("() => document.querySelectorAll('#detail .prow').length > 0")
        open_s = time.perf_counter() - t0
        assert o.errors == []
    finally:
        o.close()
    size = page.stat().st_size
    print(f"\n110k-row page (NFCorpus train, {rows:,} rows x {len(sets)} sets, {negs:,} negatives, "
          f"{len(data['docs']['ids']):,} documents): {size / 1e6:.1f} MB, built in {build_s:.1f} s; "
          f"Chromium load {o.load_s:.2f} s (page script {js_ms / 1000:.2f} s), first search {search_s:.2f} s, "
          f"open a query {open_s:.2f} s")
