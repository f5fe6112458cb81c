"""``hardneg ablate``: a grid of strategies x teachers x students x seeds from one config.

The config is a ``hardneg run`` config plus a ``[grid]`` table::

    [grid]
    strategies = ["topk(4)", "shift(10)+topk(4)", "percpos(0.95)+topk(4)", "none"]
    teachers = ["minilm"]          # teacher models; [teacher] gives the other encoder settings
    students = ["minilm"]
    seeds = [0, 1, 2]              # each seed sets the train seed and the miner's sampling seed

Every point runs through the same hashed stages as ``hardneg run`` (under ``[run].out/stages``), so a teacher's
candidate pool is built once and replayed for every strategy, the base model is evaluated once, and a killed
ablation resumes where it stopped. Each finished point appends one line to ``[run].out/results.jsonl``; points
already there are skipped. A point that fails with a user error (e.g. an unreachable ``auto`` coverage) is skipped
and listed in ``[run].out/failed.jsonl``, the rest of the grid runs, and the command then exits 2 naming it.
``--strategy`` / ``--seed`` run a slice of the grid first (the other points keep their keys and run later);
``--limit 0`` runs nothing. ``[run].out/ablation.json`` holds every grid run into the folder and the test queries
of the ``unseen`` slice.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hardneg.encode.models import default_cache_dir
from hardneg.errors import HardnegError
from hardneg.experiments.config import RunConfig, config_from_tables
from hardneg.experiments.run import Context, encoding, execute, load_splits, run_inputs
from hardneg.io import claim_output, read_json, stable_hash, write_json, write_jsonl
from hardneg.mining.pipeline import parse_plan
from hardneg.experiments.tables import GRID_TABLE, RUN_TABLES
from hardneg.options import MISSING, merge, opt, read_config

log = logging.getLogger("hardneg")


@dataclass(frozen=True)
class Grid:
    strategies: tuple[str, ...] = opt(MISSING, "Strategies of the grid (canonical forms must differ).")
    teachers: tuple[str, ...] = opt(MISSING, "Teacher models [default: [teacher].model]; [teacher] gives the "
                                             "other encoder settings.")
    students: tuple[str, ...] = opt(MISSING, "Student models [default: [train].student].")
    seeds: tuple[int, ...] = opt(MISSING, "Seeds: each sets the train seed and the miner's sampling seed [0].")

    def points(self) -> list[dict[str, Any]]:
        """Grid points in execution order: teacher-major, so each pool and base evaluation is reused at once."""
        return [{"teacher": t, "strategy": s, "student": st, "seed": seed}
                for t in self.teachers for seed in self.seeds for s in self.strategies for st in self.students]

    def subset(self, strategies: list[str] = (), seeds: list[int] = ()) -> "Grid":
        """The grid restricted to some of its strategies and/or seeds (empty = all), e.g. to run a priority
        slice first; the points keep their keys, so the rest of the grid resumes later in the same results."""
        wanted = []
        for s in strategies:
            canon = str(parse_plan(s))
            if canon not in self.strategies:
                raise HardnegError(f"strategy {s!r} is not in the grid", fix="choose one of: " + ", ".join(self.strategies))
            wanted.append(canon)
        for x in seeds:
            if x not in self.seeds:
                raise HardnegError(f"seed {x} is not in the grid", fix="choose among: " + ", ".join(map(str, self.seeds)))
        return replace(self, strategies=tuple(s for s in self.strategies if s in wanted) if wanted else self.strategies,
                       seeds=tuple(x for x in self.seeds if x in seeds) if seeds else self.seeds)


def _grid_problems(grid_raw: Any) -> tuple[list[str], dict[str, Any]]:
    problems: list[str] = []
    if not isinstance(grid_raw, dict):
        return ["missing [grid] table (strategies, teachers, students, seeds)"], {}
    strategies: list[str] = []
    raw_s = grid_raw.get("strategies")
    if not isinstance(raw_s, list) or not raw_s:
        problems.append("[grid] strategies: a non-empty list of strategy strings")
        raw_s = []
    for s in raw_s:
        if not isinstance(s, str):
            problems.append(f"[grid] strategy {s!r} is not a string")
            continue
        try:
            strategies.append(str(parse_plan(s)))
        except HardnegError as exc:
            problems.append(f"[grid] {exc.what}")
    if len(set(strategies)) != len(strategies):
        problems.append("[grid] strategies: a strategy is listed twice (canonical forms compared)")
    seeds = grid_raw.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(x, int) and not isinstance(x, bool)
                                                           for x in seeds):
        problems.append(f"[grid] seeds={seeds!r}: a non-empty list of integers")
    out: dict[str, Any] = {"strategies": strategies, "seeds": seeds}
    for k in ("teachers", "students"):
        v = grid_raw.get(k)
        if v is not None and (not isinstance(v, list) or not v or not all(isinstance(x, str) and x for x in v)):
            problems.append(f"[grid] {k}={v!r}: a non-empty list of model names")
        out[k] = v
    return problems, out


def load_ablation(path: str | Path | None, overrides: list[str] = (),
                  flags: dict[tuple[str, str], Any] | None = None) -> tuple[RunConfig, Grid]:
    """The base run config and the grid of an ablation config (TOML or JSON; ``grid.key=value`` overrides and
    ``("grid", key)`` flags set the grid), with every problem reported at once."""
    raw = read_config(path) if path is not None else {}
    where, problems = str(path or "config"), []
    tables = merge([*RUN_TABLES, GRID_TABLE], raw, list(overrides), flags, where=where, problems=problems)
    given = raw.get("grid") is not None or any(k[0] == "grid" for k in flags or {}) \
        or any(o.split("=", 1)[0].strip().startswith("grid.") for o in overrides)
    grid_raw = {k: list(v) if isinstance(v, tuple) else v for k, v in tables["grid"].items()} if given else None
    grid_problems, g = _grid_problems(grid_raw)
    base = config_from_tables(tables, problems + grid_problems, where=where)
    return base, Grid(tuple(g["strategies"]), tuple(g["teachers"] or [base.teacher.model]),
                      tuple(g["students"] or [base.train.student]), tuple(g["seeds"]))


def point_config(base: RunConfig, point: dict[str, Any]) -> RunConfig:
    """The run config of one grid point."""
    return replace(base, teacher=replace(base.teacher, model=point["teacher"]),
                   mine=replace(base.mine, strategy=point["strategy"], seed=point["seed"]),
                   train=replace(base.train, student=point["student"], seed=point["seed"]))


def point_key(base: RunConfig, point: dict[str, Any]) -> str:
    """Identity of a point: the point's whole resolved config minus where it is written."""
    cfg = point_config(base, point).identity()  # non-default settings only: new options keep old keys valid
    cfg.pop("run")
    return stable_hash(cfg)


def _lines(path: Path) -> list[dict]:
    """The JSON objects of a JSONL file written line by line (results.jsonl, failed.jsonl); a torn last line
    from a kill, or an absurd or foreign line, is skipped (its point simply runs again)."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines() if path.is_file() else []:
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def done_keys(results: Path) -> set[str]:
    """Keys of the points already in results.jsonl (a torn last line from a kill is ignored)."""
    return {r["key"] for r in _lines(results) if isinstance(r.get("key"), str)}


def _append(results: Path, record: dict) -> None:
    """Append one JSON line and fsync: a kill leaves at most a torn last line, which is ignored on reread."""
    import os

    with open(results, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def unseen_test_queries(splits: dict) -> list[str]:
    """Test queries none of whose relevant documents is relevant to any train (or dev) query."""
    seen = {d for k in ("train", "dev") if k in splits for docs in splits[k].qrels.values()
            for d, r in docs.items() if r > 0}
    test = splits["test"]
    return [q for q in test.queries.ids if not any(r > 0 and d in seen for d, r in test.qrels[q].items())]


def run_ablation(base: RunConfig, grid: Grid, *, progress: bool = True, limit: int | None = None,
                 strategies: list[str] = (), seeds: list[int] = ()) -> Path:
    """Run every grid point not yet in results.jsonl (only ``strategies`` / ``seeds`` of the grid if given);
    returns the results file. ``ablation.json`` describes the whole grid."""
    run_grid = grid.subset(strategies, seeds)
    cache_dir = Path(base.run.cache).expanduser() if base.run.cache else default_cache_dir()
    inputs = run_inputs(base, cache_dir) + list(grid.teachers) + list(grid.students)
    with claim_output(base.run.out, "ablate", inputs=inputs, flag="run.out") as out, encoding(base):
        results = _run_points(base, grid, run_grid, out, cache_dir, progress=progress, limit=limit)
    return results


def _run_points(base: RunConfig, grid: Grid, run_grid: Grid, out: Path, cache_dir: Path, *, progress: bool,
                limit: int | None) -> Path:
    """Append one record per unfinished point of ``run_grid`` to ``out/results.jsonl``."""
    ctx = Context(cache_dir=cache_dir, splits=load_splits(base, cache_dir), progress=progress)
    results = out / "results.jsonl"
    this = {"base": base.to_dict(), "grid": {"strategies": list(grid.strategies), "teachers": list(grid.teachers),
                                             "students": list(grid.students), "seeds": list(grid.seeds)}}
    # Several configs may share one results folder (e.g. a teacher study next to the main grid): keep them all.
    meta = out / "ablation.json"
    grids = [g for g in (read_json(meta).get("grids", []) if meta.is_file() else []) if g != this] + [this]
    write_json(meta, {**this, "grids": grids, "slices": {"unseen": unseen_test_queries(ctx.splits)}})
    done = done_keys(results)
    todo = [(k, p) for k, p in ((point_key(base, p), p) for p in run_grid.points()) if k not in done]
    log.info("ablation: %d points (%d in this run), %d of them to run", len(grid.points()), len(run_grid.points()),
             len(todo))
    run = todo if limit is None else todo[:limit]
    failed: list[dict[str, Any]] = []
    first: HardnegError | None = None
    for i, (key, point) in enumerate(run, 1):
        log.info("point %d/%d: %s", i, len(todo), point)
        try:
            res = execute(point_config(base, point), out, ctx)
        except HardnegError as exc:  # a bad point (e.g. an unreachable auto coverage) must not stop the grid
            log.warning("point %d/%d skipped: %s", i, len(todo), exc.one_line())
            failed.append({"key": key, "point": point, "error": exc.one_line()})
            first = first or exc
            continue
        per_query = {split: {label: {q: {m: v[m] for m in ("ndcg@10", "recall@100")} for q, v in pq.items()}
                             for label, pq in by_label.items()} for split, by_label in res["per_query"].items()}
        mining = {k: v for k, v in res["mining"].items()}
        _append(results, {"key": key, "point": point, "stages": res["stages"],
                          "metrics": res["metrics"], "per_query": per_query, "mining": mining,
                          "timings": res["timings"]})
    _report_failed(out / "failed.jsonl", failed, {k for k, _ in run}, first)
    return results


def _report_failed(path: Path, failed: list[dict[str, Any]], tried: set[str], first: HardnegError | None) -> None:
    """Keep ``failed.jsonl`` true (earlier failures of points not tried now stay listed; removed when empty) and
    raise one error naming this run's first failure: the finished points are recorded, and a rerun retries only
    the points not in results.jsonl."""
    rows = [r for r in _lines(path) if r.get("key") not in tried] + failed
    if rows:
        write_jsonl(path, rows)
    else:
        path.unlink(missing_ok=True)
    if first is None:
        return
    point = failed[0]["point"]
    raise HardnegError(f"{len(failed)} of {len(tried)} grid points failed and were skipped, the others are recorded; "
                       f"first: {point['strategy']} seed {point['seed']}: {first.what}",
                       where=path, fix="correct or drop those points in [grid] and rerun: only they run again")
