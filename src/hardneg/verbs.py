"""The verbs of ``hardneg`` as library functions: one function per verb, taking its options value (declared once in
``hardneg.verb_options``, which ``hardneg.options`` turns into flags, TOML keys and overrides), that
claims the output folder, does the work, writes ``config.resolved.json`` beside the output and returns what the
command line prints. Heavy imports happen inside the functions, so the command line's ``--help`` stays fast.

Paths may be given as strings or ``Path``; ``cache=None`` is ``$HARDNEG_CACHE`` or ``~/.cache/hardneg``.
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

from hardneg.errors import HardnegError
from hardneg.io import claim_output, write_json
from hardneg.options import plain, resolved_text
from hardneg.verb_options import (OPTIONS, TABLES, AuditOptions, BrowseOptions, CalibrateOptions, DiagnoseOptions,
                                  EvaluateOptions, InjectOptions, MineOptions, RateReportOptions, ReportOptions,
                                  ThinOptions, TrainFiles, resolve)

log = logging.getLogger("hardneg")
RESOLVED = "config.resolved.json"  # every verb with an output folder writes its resolved config there

__all__ = ["OPTIONS", "TABLES", "AuditOptions", "BrowseOptions", "CalibrateOptions", "DiagnoseOptions",
           "EvaluateOptions", "InjectOptions", "MineOptions", "RateReportOptions", "ReportOptions", "ThinOptions",
           "TrainFiles", "resolve", "mine", "diagnose", "evaluate", "train", "inject", "thin", "audit", "calibrate",
           "report", "fn_report", "browse"]










def cache_dir(cache: str | Path | None) -> Path:
    from hardneg.encode.models import default_cache_dir

    return Path(cache).expanduser() if cache else default_cache_dir()


def inputs(*values: object) -> list[Path]:
    """The values that name existing files or folders (a hub id or a dataset name is not an input path)."""
    return [Path(v).expanduser() for v in values
            if isinstance(v, (str, Path)) and str(v) and Path(v).expanduser().exists()]


def check_options(opts: Any, cls: type) -> None:
    """Public functions take the options value, not a dict or a path: the project's one-line error otherwise."""
    if not isinstance(opts, cls):
        raise HardnegError(f"expected {cls.__name__}, got {type(opts).__name__}", where=cls.__name__,
                           fix=f"build one: {cls.__name__}(data=..., out=..., ...)")


def encode_backend(text: str) -> Any:
    """The ``EncodeBackend`` of an ``--encode`` value (validated before any output folder is claimed)."""
    from hardneg.encode.backend import EncodeBackend

    return EncodeBackend.parse(text)


def encoding(backend: Any) -> Any:
    """The block in which a verb's encoders run where ``--encode`` says (local: nothing changes, no Ray import)."""
    if backend.is_local:
        return contextlib.nullcontext()
    from hardneg.scale import encoding as on_backend

    return on_backend(backend)


def announce(table: str, config: Any) -> dict[str, Any]:
    """Log the resolved config of a verb and return it as ``{table: {...}}`` for ``config.resolved.json``."""
    resolved = {table: plain(config)}
    log.info("config: %s", resolved_text(resolved))
    return resolved


def mine(o: MineOptions, *, progress: bool = True) -> dict[str, Any]:
    """``hardneg mine``: returns ``{"summary", "manifest"}`` (the injected / hidden manifest of the data, if any)."""
    check_options(o, MineOptions)
    from hardneg.data.inject import manifest_for
    from hardneg.data.load import load_dataset
    from hardneg.data.thin import hidden_for
    from hardneg.mining.pipeline import MineConfig, parse_plan, run_mine
    from hardneg.mining.teachers import make_teacher
    from hardneg.search.spec import SearchSpec

    resolved = announce("mine", o)
    strategies = tuple(parse_plan(s) for s in o.strategy)
    exports = tuple(sorted({e for x in o.export for e in (("st", "flag", "triplets") if x == "all" else (x,))}))
    teacher = make_teacher(o.teacher, query_prompt=o.query_prompt, doc_prompt=o.doc_prompt,
                           max_seq_length=o.max_seq_length, batch_size=o.batch_size, normalize=o.normalize,
                           dtype=o.dtype, trust_remote_code=o.trust_remote_code, precision=o.precision)
    cfg = MineConfig(teacher=teacher, strategies=strategies, depth=o.depth, seed=o.seed, exports=exports,
                     short_policy=o.short, search=SearchSpec.parse(o.search))  # type: ignore[arg-type]
    enc = encode_backend(o.encode)
    cache = cache_dir(o.cache)
    out = Path(o.out)
    with claim_output(out, "mine", inputs=inputs(o.data, o.corpus, cache, *o.teacher)), encoding(enc):
        dataset = load_dataset(o.data, o.split, cache_dir=cache, corpus=o.corpus)
        manifest = manifest_for(o.data, o.split) or hidden_for(o.data, o.split)
        summary = run_mine(dataset, cfg, out, cache, progress=progress, manifest=manifest,
                           record=None if enc.is_local else {"encode": enc.to_dict()})
        write_json(out / RESOLVED, resolved)
    return {"summary": summary, "manifest": manifest}


def diagnose(o: DiagnoseOptions, *, progress: bool = True) -> dict[str, Any]:
    """``hardneg diagnose``: per teacher its candidate pool (and query embeddings), then the diagnostics."""
    check_options(o, DiagnoseOptions)
    from hardneg.data.load import load_dataset
    from hardneg.report.diagnostics import run_diagnostics
    from hardneg.mining.pipeline import teacher_pools
    from hardneg.mining.strategy import parse_strategy
    from hardneg.mining.teachers import make_teacher
    from hardneg.search.spec import SearchSpec

    resolved = announce("diagnose", o)
    strategies = [parse_strategy(s) for s in o.strategy]
    teachers = [make_teacher(t, max_seq_length=o.max_seq_length, precision=o.precision) for t in o.teacher]
    backend = SearchSpec.parse(o.search)
    enc = encode_backend(o.encode)
    cache = cache_dir(o.cache)
    out = Path(o.out)
    with claim_output(out, "diagnose", inputs=inputs(o.data, cache, *o.teacher)), encoding(enc):
        dataset = load_dataset(o.data, o.split, cache_dir=cache)
        pools, q_embs = teacher_pools(dataset, teachers, o.depth, cache, max_seq_length=o.max_seq_length,
                                      precision=o.precision, search=backend, progress=progress)
        res = run_diagnostics(dataset, pools, strategies, seed=o.seed, q_embs=q_embs,
                              near_dup_threshold=o.near_dup_threshold, out=out)
        write_json(out / RESOLVED, resolved)
    return res


def evaluate(o: EvaluateOptions, *, progress: bool = True) -> dict[str, Any]:
    """``hardneg evaluate``: returns ``{"result", "dataset"}``; with ``out`` also writes the metrics files."""
    check_options(o, EvaluateOptions)
    from hardneg.data.load import load_eval_dataset
    from hardneg.encode.encoder import EncoderSpec
    from hardneg.evaluate.pipeline import evaluate_model, write_eval
    from hardneg.search.spec import SearchSpec

    resolved = announce("evaluate", o)
    spec = EncoderSpec(model=o.model, query_prompt=o.query_prompt, doc_prompt=o.doc_prompt,
                       max_seq_length=o.max_seq_length, batch_size=o.batch_size,
                       trust_remote_code=o.trust_remote_code, precision=o.precision)  # type: ignore[arg-type]
    search = SearchSpec.parse(o.search)
    enc = encode_backend(o.encode)
    cache = cache_dir(o.cache)
    claim = (contextlib.nullcontext() if o.out is None
             else claim_output(o.out, "evaluate", inputs=inputs(o.data, o.model, cache)))
    with claim, encoding(enc):
        dataset = load_eval_dataset(o.data, o.split, cache_dir=cache)
        res = evaluate_model(spec, dataset, cache_dir=cache, depth=o.depth,
                             ignore_identical_ids=o.ignore_identical_ids, progress=progress, search=search)
        if o.out is not None:
            write_eval(res, Path(o.out), {"model": spec.to_dict(), "dataset": dataset.name, "split": o.split,
                                          "depth": o.depth,
                                          **({} if o.search == "exact" else {"search": search.to_dict()}),
                                          **({} if enc.is_local else {"encode": enc.to_dict()})})
            write_json(Path(o.out) / RESOLVED, resolved)
    return {"result": res, "dataset": dataset}


def train(files: TrainFiles, cfg: Any, *, progress: bool = True) -> Path:
    """``hardneg train``: fine-tune ``cfg.student`` (a ``TrainConfig``) on ``files.mined``; returns the folder."""
    check_options(files, TrainFiles)
    from hardneg.data.mined import read_mined
    from hardneg.train.config import TrainConfig
    from hardneg.train.trainer import train as train_fn

    check_options(cfg, TrainConfig)
    resolved = {"train": {**plain(files), **plain(cfg)}}
    log.info("config: %s", resolved_text(resolved))
    out = Path(files.out)
    with claim_output(out, "train", inputs=inputs(files.mined, cfg.student)):
        rows = read_mined(files.mined)
        train_fn(rows, cfg, out, progress=progress)
        write_json(out / RESOLVED, resolved)
    return out








def inject(o: InjectOptions) -> dict[str, Any]:
    """``hardneg inject``; returns the manifest (its ``stats`` are printed). The manifest records the options."""
    check_options(o, InjectOptions)
    from hardneg.data.inject import DEFAULT_TRANSFORMS, inject_false_negatives

    announce("inject", o)
    return inject_false_negatives(o.data, o.out, split=o.split, rate=o.rate, copies=o.copies,
                                  transforms=tuple(o.transform or DEFAULT_TRANSFORMS), seed=o.seed,
                                  overwrite=o.overwrite)


def thin(o: ThinOptions) -> dict[str, Any]:
    """``hardneg thin``; returns the manifest (its ``stats`` are printed). The manifest records the options."""
    check_options(o, ThinOptions)
    from hardneg.data.thin import thin_dataset

    announce("thin", o)
    return thin_dataset(o.data, o.out, keep=o.keep, order=o.order, seed=o.seed, split=o.split,
                        overwrite=o.overwrite)




def audit(o: AuditOptions) -> dict[str, Any]:
    """``hardneg audit``: writes audit.jsonl / audit.json (and the cleaned copy with ``fix``)."""
    check_options(o, AuditOptions)
    from hardneg.mining.audit import run_audit

    resolved = announce("audit", o)
    enc = encode_backend(o.encode)
    cache = cache_dir(o.cache)
    with contextlib.ExitStack() as stack:
        stack.enter_context(claim_output(o.out, "audit", inputs=inputs(o.mined, o.data, cache)))
        if o.fix is not None:
            stack.enter_context(claim_output(o.fix, "audit", inputs=inputs(o.mined, o.data, cache, o.out),
                                             flag="--fix"))
        stack.enter_context(encoding(enc))
        res = run_audit(Path(o.mined), o.data, Path(o.out), split=o.split, teacher=o.teacher, cache_dir=cache,
                        n=o.n, tau=o.tau, fail_on=[o.fail_on] if o.fail_on else [],
                        fix=None if o.fix is None else Path(o.fix), depth=o.depth)
        write_json(Path(o.out) / RESOLVED, resolved)
    return res




def calibrate(o: CalibrateOptions, *, progress: bool = True) -> dict[str, Any]:
    """``hardneg calibrate``: the threshold sweep of one filter."""
    check_options(o, CalibrateOptions)
    from hardneg.mining.calibrate import run_calibrate
    from hardneg.mining.teachers import make_teacher

    resolved = announce("calibrate", o)
    teacher = make_teacher(o.teacher, max_seq_length=o.max_seq_length, precision=o.precision)
    enc = encode_backend(o.encode)
    cache = cache_dir(o.cache)
    out = Path(o.out)
    with claim_output(out, "calibrate", inputs=inputs(o.data, cache, o.teacher)), encoding(enc):
        res = run_calibrate(o.data, teacher, o.filter, out, n=o.n, split=o.split, depth=o.depth, cache_dir=cache,
                            progress=progress, ref=o.ref)
        write_json(out / RESOLVED, resolved)
    return res






def report(o: ReportOptions) -> list[str]:
    """``hardneg report``: returns the names of the files written."""
    check_options(o, ReportOptions)
    from hardneg.mining.strategy import parse_strategy
    from hardneg.report import write_report

    announce("report", o)
    return write_report(Path(o.results), Path(o.out), baseline=str(parse_strategy(o.baseline)))


def fn_report(o: RateReportOptions) -> list[str]:
    """``hardneg fn-report``: returns the names of the files written."""
    check_options(o, RateReportOptions)
    from hardneg.mining.strategy import parse_strategy
    from hardneg.report.rates import parse_rate_args, write_rate_report

    announce("fn-report", o)
    return write_rate_report(parse_rate_args(list(o.rate)), Path(o.out), baseline=str(parse_strategy(o.baseline)))




def browse(o: BrowseOptions) -> dict[str, Any]:
    """``hardneg browse``: one HTML page (a single file: its options are logged, not written beside it)."""
    check_options(o, BrowseOptions)
    from hardneg.browse import write_browse

    announce("browse", o)
    return write_browse([Path(m) for m in o.mined], Path(o.out), data=o.data, audit=[Path(a) for a in o.audit],
                        limit=o.limit, split=o.split, cache_dir=cache_dir(o.cache), removed=o.removed)







