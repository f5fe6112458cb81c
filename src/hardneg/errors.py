"""User-facing errors: what was wrong, where, and how to fix it.

The CLI prints a ``HardnegError`` as one line on stderr and exits with code 2; nothing else is caught, so a
bug still shows its traceback.
"""
from __future__ import annotations

from pathlib import Path


class HardnegError(ValueError):
    """A problem with the user's input, reported as ``where: what. Fix: how``."""

    def __init__(self, what: str, *, where: str | Path | None = None, line: int | None = None,
                 fix: str | None = None) -> None:
        self.what = what
        self.where = None if where is None else str(where)
        self.line = line
        self.fix = fix
        super().__init__(self.one_line())

    def one_line(self) -> str:
        loc = ""
        if self.where is not None:
            loc = self.where if self.line is None else f"{self.where}:{self.line}"
            loc += ": "
        msg = f"{loc}{self.what}"
        if self.fix:
            msg += f". Fix: {self.fix}"
        # One line, always: a multi-line value (e.g. a broken JSON line) must not break the format.
        return " ".join(msg.split("\n"))


class ConfigErrors(HardnegError):
    """Several configuration problems reported together."""

    def __init__(self, problems: list[str], *, where: str | Path | None = None, verb: str = "run") -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems), where=where,
                         fix=f"correct every key listed (see `hardneg {verb} --help` for the schema)")
