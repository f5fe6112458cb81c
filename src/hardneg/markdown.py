"""Markdown tables for every report: one place that joins the cells and escapes ``|`` inside them.

A pipe inside a cell (an ensemble teacher ``minilm|mpnet``, a strategy per teacher ``a|b``) would otherwise split the
row into extra columns; GitHub-flavoured Markdown needs ``\\|`` even inside backticks.
"""
from __future__ import annotations

from collections.abc import Iterable


def md_row(cells: Iterable[object]) -> str:
    """One table row; each cell is ``str()``-ed and its pipes escaped."""
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def md_table(header: Iterable[str], rows: Iterable[Iterable[object]]) -> list[str]:
    """Header, separator and one line per row (lines without trailing newline, to join or extend with)."""
    header = list(header)
    return [md_row(header), "|" + "---|" * len(header), *(md_row(r) for r in rows)]
