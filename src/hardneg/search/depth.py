"""How many results a search keeps per query: one rule for mining pools and evaluation runs."""
from __future__ import annotations

import numpy as np

from hardneg.errors import HardnegError

# Far above any useful depth; a typo such as 1000000000 is an error, not a [queries, depth] allocation.
MAX_DEPTH = 100_000


def depth_problem(depth: object) -> str | None:
    """Why ``depth`` (candidates kept per query) is invalid, or None."""
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)):
        return f"depth must be a whole number, got {depth!r}"
    if depth < 1:
        return f"depth must be >= 1, got {depth}"
    if depth > MAX_DEPTH:
        return f"depth must be <= {MAX_DEPTH:,}, got {depth:,} (depth beyond the corpus size is clamped to it)"
    return None


def effective_depth(depth: int, n_docs: int) -> int:
    """``depth`` validated and clamped to the corpus size: a query never has more candidates than documents, and
    the pool arrays are [queries, depth] (a depth of 1e9 on 40 documents once allocated 29.8 GiB of padding)."""
    problem = depth_problem(depth)
    if problem is not None:
        raise HardnegError(problem, fix=f"use a depth between 1 and {MAX_DEPTH:,}, e.g. 100")
    return max(1, min(int(depth), n_docs))
