"""The config tables of ``hardneg run`` and ``hardneg ablate``: each is a section of ``RunConfig`` (``[grid]``:
ablate's ``Grid``), whose fields ``hardneg.options`` turns into ``--table.key`` flags, TOML keys and
``table.key=value`` overrides alike. Read for ``--help`` (the classes from source), so it imports nothing heavy.
"""
from __future__ import annotations

from hardneg.options import Table

RUN_TABLES: list[Table] = [Table(name, (ref,), bare=False) for name, ref in (
    ("data", "hardneg.experiments.config:DataSection"), ("teacher", "hardneg.encode.spec:EncoderSpec"),
    ("mine", "hardneg.experiments.config:MineSection"), ("train", "hardneg.train.config:TrainConfig"),
    ("evaluate", "hardneg.experiments.config:EvalSection"), ("search", "hardneg.search.spec:SearchSpec"),
    ("encode", "hardneg.encode.backend:EncodeBackend"), ("run", "hardneg.experiments.config:RunSection"))]
GRID_TABLE = Table("grid", ("hardneg.experiments.ablate:Grid",), bare=False)
