"""What each verb prints (tables on stdout, one-line notes on stderr): ``SHOW[verb](cfg, quiet, **extra)`` calls the
verb's library function (``hardneg.verbs``) with its resolved config and prints the result; a non-zero return is
the exit code (``audit --fail-on``)."""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

from hardneg import verbs
from hardneg.options import plain

# Wide tables even when piped to a file or CI log (rich falls back to 80 columns there).
console = Console(stderr=True, width=None if sys.stderr.isatty() else 140)
out_console = Console(width=None if sys.stdout.isatty() else 140)
SHOW: dict[str, Callable[..., int | None]] = {}


def shows(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        SHOW[name] = fn
        return fn
    return register


def _table(title: str, columns: list[str], rows: list[list[str]], left: int = 1) -> None:
    t = Table(title=title)
    for i, c in enumerate(columns):
        t.add_column(c, justify="left" if i < left else "right")
    for r in rows:
        t.add_row(*r)
    out_console.print(t)


def _said(text: str) -> None:
    console.print(text, markup=False, highlight=False)


@shows("mine")
def _mine(o: verbs.MineOptions, quiet: bool) -> None:
    res = verbs.mine(o, progress=not quiet)
    s = res["summary"]
    q50 = lambda d, k: "-" if d.get(k, {}).get("q50") is None else f"{d[k]['q50']:.3f}"  # noqa: E731
    _table(f"mined {s['dataset']['name']}/{s['dataset']['split']} with {s['config']['teacher']['model']}",
           ["strategy", "rows", "short", "empty", "removed/row", "pos q50", "top1 neg q50", "pos-top1 q50"],
           [[name, str(x["rows"]), str(x["rows_short"]), str(x["rows_empty"]),
             f"{sum(x.get('removed_per_row', {}).values()):.1f}", q50(x, "pos_score"), q50(x, "top1_neg_score"),
             q50(x, "pos_minus_top1_neg")] for name, x in s["strategies"].items()])
    if res["manifest"] is not None:
        from hardneg.mining.trap import hidden_table, trap_table

        for key, table in (("traps", trap_table), ("hidden", hidden_table)):
            rates = {k: v[key] for k, v in s["strategies"].items() if key in v}
            if rates:
                out_console.print(table(rates), markup=False, highlight=False)
    _said(f"wrote {o.out}  (timings, s: {s['timings']}); look at the negatives: hardneg browse {o.out} "
          f"--out browse.html --data {o.data}")


@shows("inject")
def _inject(o: verbs.InjectOptions, quiet: bool) -> None:
    out_console.print_json(json.dumps(verbs.inject(o)["stats"]))


@shows("thin")
def _thin(o: verbs.ThinOptions, quiet: bool) -> None:
    out_console.print_json(json.dumps(verbs.thin(o)["stats"]))


@shows("diagnose")
def _diagnose(o: verbs.DiagnoseOptions, quiet: bool) -> None:
    from hardneg.report.diagnostics import render_markdown

    out_console.print(render_markdown(verbs.diagnose(o, progress=not quiet)), markup=False, highlight=False)


@shows("audit")
def _audit(o: verbs.AuditOptions, quiet: bool) -> int | None:
    res = verbs.audit(o)
    out_console.print(res["table"], markup=False, highlight=False)
    cleaned = f"; cleaned copy: {res['fix']['file']}" if o.fix is not None else ""
    _said(f"wrote {o.out}/audit.jsonl and {o.out}/audit.json{cleaned}; see them: hardneg browse {o.mined} "
          f"--out browse.html --audit {o.out}/audit.jsonl")
    if res["failed"]:
        found = [k for k in res["fail_on"] if res["counts"][k]]
        _said("audit failed (--fail-on): " + ", ".join(f"{k} x{res['counts'][k]:,}" for k in found))
        return 1
    return None


@shows("calibrate")
def _calibrate(o: verbs.CalibrateOptions, quiet: bool) -> None:
    res = verbs.calibrate(o, progress=not quiet)
    out_console.print(res["markdown"], markup=False, highlight=False)
    _said(f"wrote {', '.join(res['files'])} to {o.out}")


@shows("evaluate")
def _evaluate(o: verbs.EvaluateOptions, quiet: bool) -> None:
    res = verbs.evaluate(o, progress=not quiet)
    m = res["result"].metrics
    _table(f"{o.model} on {res['dataset'].name}/{o.split} ({m['n_queries']} queries)", ["metric", "value"],
           [[k, f"{v:.4f}"] for k, v in m.items() if k != "n_queries"])


@shows("train")
def _train(cfg: tuple, quiet: bool) -> None:
    _said(f"wrote {verbs.train(*cfg, progress=not quiet)}")


@shows("run")
def _run(cfg: Any, quiet: bool) -> None:
    from hardneg.experiments.run import METRICS, run_pipeline

    console.print("resolved config:")
    console.print_json(json.dumps(cfg.to_dict()))
    res = run_pipeline(cfg, progress=not quiet)
    _table(f"{cfg.train.student}: base vs fine-tuned ({cfg.mine.strategy}, teacher {cfg.teacher.model})",
           ["split", "metric", "base", "fine-tuned", "delta"],
           [[split, k, f"{m['base'][k]:.4f}", f"{m['finetuned'][k]:.4f}", f"{m['finetuned'][k] - m['base'][k]:+.4f}"]
            for split, m in res["metrics"].items() for k in METRICS
            if k in m["base"] and k in m["finetuned"]], left=2)  # judged@10: not in stages written before it
    console.print(f"results: {cfg.run.out}/results.json  timings (s): {res['timings']}")


@shows("ablate")
def _ablate(cfg: tuple, quiet: bool, limit: int | None, strategy: tuple, seed: tuple) -> None:
    from hardneg.experiments.ablate import run_ablation

    base, grid = cfg
    console.print("resolved config:")
    console.print_json(json.dumps({**base.to_dict(), "grid": plain(grid)}))
    console.print(f"grid: {len(grid.points())} points ({len(grid.teachers)} teachers x {len(grid.strategies)} "
                  f"strategies x {len(grid.seeds)} seeds x {len(grid.students)} students) -> {base.run.out}")
    results = run_ablation(base, grid, progress=not quiet, limit=limit, strategies=list(strategy), seeds=list(seed))
    console.print(f"results: {results}  (make tables: hardneg report {results} --out DIR)")


@shows("report")
def _report(o: verbs.ReportOptions, quiet: bool) -> None:
    _said(f"wrote {', '.join(verbs.report(o))} to {o.out}; look at a point's negatives: hardneg browse "
          f"{os.path.dirname(o.results) or '.'}/stages/mine-<hash> --out browse.html")


@shows("fn-report")
def _fn_report(o: verbs.RateReportOptions, quiet: bool) -> None:
    _said(f"wrote {', '.join(verbs.fn_report(o))} to {o.out}")


@shows("recipe")
def _recipe(cfg: Any, quiet: bool) -> None:  # a RecipeConfig
    from hardneg.llm.recipe import run_recipe, summary_rows

    res = run_recipe(cfg, progress=not quiet)
    _table("NV-Retriever-v1 recipe", ["dataset", "model", "ndcg@10", "recall@100", "mrr@10"],
           [[r["dataset"], r["model"], *(f"{r[k]:.4f}" for k in ("ndcg@10", "recall@100", "mrr@10"))]
            for r in summary_rows(res)], left=2)


@shows("browse")
def _browse(o: verbs.BrowseOptions, quiet: bool) -> None:
    res = verbs.browse(o)
    _said(f"wrote {res['out']}: {res['queries']:,} of {res['queries_total']:,} queries, {res['rows']:,} rows, "
          f"{len(res['sets'])} mined sets, {res['bytes'] / 1e6:.1f} MB")
