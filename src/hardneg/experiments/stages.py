"""Hashed, resumable stages: the one helper behind ``hardneg run``, ``hardneg ablate`` and ``hardneg recipe``.

A stage is a folder ``<out>/stages/<kind>-<hash>``, where the hash (``hardneg.io.stable_hash``) covers everything
that determines the stage's output: its own settings and the identities (hashes) of its inputs. So

- a finished stage is skipped: its folder exists (or, for folders other code may already have created, its
  ``marker`` file does);
- changing a setting makes a new folder and leaves the finished work of other settings in place;
- a killed run resumes at the unfinished stage: a stage folder appears whole in one rename
  (``hardneg.io.atomic_path``), so a half-written one never exists.

``ensure_stage`` takes the builder that writes the stage. A builder writes into the temporary folder it is
given (renamed onto the stage folder when it returns), or, when it already writes its output folder atomically
itself (training and evaluation do: ``hardneg.train.trainer.train``, ``hardneg.evaluate.pipeline.write_eval``),
it is called with the stage folder and ``atomic=False``.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hardneg.io import atomic_path, stable_hash


def stage_dir(out: Path, kind: str, spec: Any) -> Path:
    """``<out>/stages/<kind>-<stable_hash(spec)>``: the folder of the stage determined by ``spec``."""
    return Path(out) / "stages" / f"{kind}-{stable_hash(spec)}"


@dataclass(frozen=True)
class StageRun:
    """A stage folder and whether this call built it (``seconds``: its wall time; ``None`` when skipped)."""

    dir: Path
    seconds: float | None = None

    @property
    def name(self) -> str:
        return self.dir.name

    @property
    def ran(self) -> bool:
        return self.seconds is not None


def is_done(folder: Path, marker: str | None = None) -> bool:
    """A stage is finished when its folder exists (or, with ``marker``, when that file inside it does)."""
    return (folder / marker).is_file() if marker else folder.is_dir()


def ensure_stage(out: Path, kind: str, spec: Any, build: Callable[[Path], Any], *, marker: str | None = None,
                 atomic: bool = True, timings: dict[str, float] | None = None,
                 timing_key: str | None = None) -> StageRun:
    """The stage ``kind`` of ``spec`` under ``out``, built by ``build`` unless finished.

    ``build(path)`` writes the stage: into a temporary folder renamed onto the stage folder afterwards
    (``atomic=True``), or straight to the stage folder when the builder writes atomically itself. When it ran,
    its seconds (rounded to 0.1) go to ``timings[timing_key]`` (default ``kind``).
    """
    folder = stage_dir(out, kind, spec)
    if is_done(folder, marker):
        return StageRun(folder)
    t0 = time.perf_counter()
    if atomic:
        with atomic_path(folder, is_dir=True) as tmp:
            build(tmp)
    else:
        build(folder)
    seconds = time.perf_counter() - t0
    if timings is not None:
        timings[timing_key or kind] = round(seconds, 1)
    return StageRun(folder, seconds)
