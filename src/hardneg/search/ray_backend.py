"""Ray (optional extra ``ray``: ``pip install "ray[data]"``): exact search sharded over a cluster.

``ray_search`` gives every task a run of whole corpus shards, runs ``exact_search`` on it (same blocks as the
single-process search, so the same float bits), and merges the per-task top-k on the driver with the stable rule
(score desc, row asc): the result is ``exact_search`` on the whole corpus. Connect with ``init_ray(address)``: an
explicit address, else the ``RAY_ADDRESS`` environment variable, else a local instance (``num_cpus`` CPUs).
Encoding over Ray and Ray-built pools are in ``hardneg.scale`` (they need models and mining; search does not).
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from hardneg.errors import HardnegError
from hardneg.search.exact import exact_search
from hardneg.search.merge import merge_topk

RAY_ADDRESS_ENV = "RAY_ADDRESS"
ShardLike = np.ndarray | str | os.PathLike


def import_ray() -> Any:
    """The ``ray`` module, or a HardnegError telling how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise HardnegError("the Ray backend needs the ray package, which is not installed",
                           fix='run `pip install "ray[data]"` (or `pip install "hardneg[ray]"`)') from exc
    return ray


def init_ray(address: str | None = None, *, num_cpus: int | None = None, **kw: Any) -> Any:
    """Connect to the cluster at ``address`` (else env ``RAY_ADDRESS``), else start a local Ray instance.

    Does nothing if Ray is already initialised in this process. Returns the ``ray`` module.
    """
    ray = import_ray()
    if ray.is_initialized():
        return ray
    address = address or os.environ.get(RAY_ADDRESS_ENV) or None
    try:
        if address:
            ray.init(address=address, **kw)
        else:
            kw.setdefault("include_dashboard", False)
            ray.init(num_cpus=num_cpus, **kw)
    except ConnectionError as exc:
        raise HardnegError(f"cannot connect to the Ray cluster at {address!r} ({exc})",
                           fix="start it with `ray start --head` and pass its address (host:6379), "
                               "or unset RAY_ADDRESS to run locally") from exc
    return ray


def cpus_available(ray: Any) -> int:
    """The cluster's CPUs (at least 1)."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


# -- sharded exact search -------------------------------------------------------------------------------------

def _search_task(q: np.ndarray, k: int, offset: int, query_block: int, doc_block: int, threads: int,
                 *shards: Any) -> tuple[np.ndarray, np.ndarray]:
    """One task: exact top-k of ``q`` over a run of shards (arrays, or .npy paths memmapped here).

    Shards are top-level arguments so Ray resolves their object refs (zero-copy from the node's store).
    """
    import torch

    torch.set_num_threads(max(1, threads))
    arrays = [np.load(s, mmap_mode="r", allow_pickle=False) if isinstance(s, str) else s for s in shards]
    s, i = exact_search(q, arrays, k, query_block=query_block, doc_block=doc_block)
    return s, i + offset


def _shard_rows(shards: list[Any]) -> list[int]:
    rows = []
    for s in shards:
        if isinstance(s, str | os.PathLike):
            arr = np.load(s, mmap_mode="r", allow_pickle=False)
            rows.append(int(arr.shape[0]))
        else:
            rows.append(int(s.shape[0]))
    return rows


def _shard_dim(s: Any) -> int:
    arr = np.load(s, mmap_mode="r", allow_pickle=False) if isinstance(s, str | os.PathLike) else s
    return int(arr.shape[1])


def _groups(shards: list[Any], rows: list[int], doc_block: int, rows_per_task: int) -> list[tuple[int, list[Any]]]:
    """Runs of whole shards of at least ``rows_per_task`` rows: (first corpus row, shards).

    Cuts fall where ``exact_search`` over the whole corpus starts a new doc block, so every task multiplies
    the same blocks (identical float rounding): one array is cut at multiples of ``doc_block``; a shard list
    at shard boundaries that are also multiples of ``doc_block`` when there are any (blocks that span shards),
    else at any shard boundary (blocks that restart at each shard).
    """
    if len(shards) == 1 and isinstance(shards[0], np.ndarray):
        step = max(doc_block, -(-rows_per_task // doc_block) * doc_block)
        return [(lo, [shards[0][lo:lo + step]]) for lo in range(0, rows[0], step)]
    bounds = np.cumsum(rows)[:-1]  # shard boundaries inside the corpus
    aligned = bool(np.any(bounds % doc_block == 0))
    groups: list[tuple[int, list[Any]]] = []
    start, cur, cur_rows, cur_start = 0, [], 0, 0
    for s, n in zip(shards, rows, strict=True):
        if cur and cur_rows >= rows_per_task and (not aligned or start % doc_block == 0):
            groups.append((cur_start, cur))
            cur, cur_rows, cur_start = [], 0, start
        cur.append(str(s) if isinstance(s, os.PathLike) else s)
        cur_rows += n
        start += n
    if cur:
        groups.append((cur_start, cur))
    return groups


def ray_search(q_emb: np.ndarray, d_emb: ShardLike | Sequence[ShardLike], depth: int, *,
               address: str | None = None, query_block: int = 4096, doc_block: int = 65536,
               rows_per_task: int | None = None, cpus_per_task: float = 1, max_in_flight: int | None = None,
               progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``depth`` search with Ray tasks over corpus shards; equals ``exact_search`` on the whole corpus.

    ``d_emb``: an array, a list of row shards (arrays or memmaps: sent to the object store as tasks are
    submitted, at most ``max_in_flight`` at a time), or a list of ``.npy`` paths every node can read (shared
    storage: workers memmap them, nothing is shipped). Returns ``scores`` float32 [nq, k], ``idx`` int64
    [nq, k], ``k = min(depth, nd)``, sorted by (score desc, row asc).
    """
    if isinstance(depth, bool) or not isinstance(depth, int | np.integer) or depth < 1:
        raise ValueError("depth must be >= 1")
    ray = init_ray(address)
    q_emb = np.asarray(q_emb)
    shards = [d_emb] if isinstance(d_emb, np.ndarray | str | os.PathLike) else list(d_emb)
    rows = _shard_rows(shards)
    nd, nq = sum(rows), int(q_emb.shape[0])
    if q_emb.ndim != 2:
        raise HardnegError(f"q_emb must be 2-D [nq, dim], got shape {q_emb.shape}", fix="pass one row per query")
    dims = {_shard_dim(s) for s in shards}
    if dims != {int(q_emb.shape[1])}:
        raise HardnegError(f"query dim {q_emb.shape[1]} differs from doc dim(s) {sorted(dims)}",
                           fix="encode queries and docs with the same model")
    if nd == 0:
        raise HardnegError("the corpus is empty", fix="search a corpus with at least one document")
    k = min(int(depth), nd)
    n_cpu = cpus_available(ray)
    per_task = rows_per_task or max(1, math.ceil(nd / (4 * max(1, int(n_cpu // cpus_per_task)))))
    groups = _groups(shards, rows, doc_block, per_task)
    window = max_in_flight or max(2, 2 * int(n_cpu // cpus_per_task))
    task = ray.remote(_search_task).options(num_cpus=cpus_per_task)
    threads = max(1, int(math.floor(cpus_per_task)))
    q_ref = ray.put(np.ascontiguousarray(q_emb))  # shipped once, shared by every task on a node
    best: tuple[np.ndarray, np.ndarray] | None = None
    pending: list[Any] = []
    bar = tqdm(total=len(groups), desc="ray search", unit="task", disable=not progress)
    todo = iter(groups)
    exhausted = False
    while pending or not exhausted:
        while not exhausted and len(pending) < window:
            g = next(todo, None)
            if g is None:
                exhausted = True
                break
            offset, part = g
            part = [ray.put(np.ascontiguousarray(p)) if isinstance(p, np.ndarray) else p for p in part]
            pending.append(task.remote(q_ref, k, offset, query_block, doc_block, threads, *part))
        if not pending:
            break
        done, pending = ray.wait(pending, num_returns=1)
        res = ray.get(done[0])
        best = res if best is None else merge_topk([best, res], k)  # order-free: the merge is a total order
        bar.update(1)
    bar.close()
    assert best is not None
    if best[0].shape != (nq, k):
        raise RuntimeError(f"merged result has shape {best[0].shape}, expected {(nq, k)}")
    return best


def ray_search_fn(**kw: Any) -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """A function with ``exact_search``'s signature that runs ``ray_search`` with ``kw`` (for search hooks)."""
    def fn(q_emb: np.ndarray, d_emb: Any, depth: int, **more: Any) -> tuple[np.ndarray, np.ndarray]:
        return ray_search(q_emb, d_emb, depth, **{**kw, **more})
    return fn
