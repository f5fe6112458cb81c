"""Atomic file writes and content hashes: a killed run never leaves a half-written file behind."""
from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from hardneg.errors import HardnegError


def _fs_error(path: Path, exc: OSError) -> HardnegError:
    if exc.errno == errno.ENOSPC:
        return HardnegError(f"no space left on the device while writing {path}", where=path,
                            fix="free disk space or choose another output folder; nothing partial was kept")
    if exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
        return HardnegError(f"cannot write {path} ({exc.strerror})", where=path,
                            fix="choose a writable output folder")
    if exc.errno == errno.ENOTDIR:
        return HardnegError(f"a parent of {path} is a file, not a folder", where=path,
                            fix="choose an output path whose parents are folders")
    return HardnegError(f"cannot write {path} ({exc.strerror})", where=path, fix="check the path")


def ensure_dir(path: str | Path) -> Path:
    """Create ``path`` (and parents) as a folder, with a clear error if a file stands in the way."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise HardnegError("the output folder is an existing file", where=p,
                           fix="pass a folder path, or remove the file")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _fs_error(p, exc) from None
    return p


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_temps(final: Path) -> None:
    """Delete temporaries of ``final`` left by killed processes (``.<name>.<pid>.<random>.tmp``)."""
    for p in final.parent.glob(f".{glob.escape(final.name)}.*.tmp"):
        parts = p.name[len(final.name) + 2:].split(".")
        if parts and parts[0].isdigit() and int(parts[0]) != os.getpid() and not _pid_alive(int(parts[0])):
            _remove(p)


@contextlib.contextmanager
def atomic_path(path: str | Path, *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; on success rename it onto ``path``, on error delete it.

    Works for files and folders (``is_dir``); an existing folder at ``path`` is replaced. Temporaries carry the
    writer's pid, so ones left behind by a killed process are removed by the next writer of the same path.
    """
    final = Path(path)
    ensure_dir(final.parent)
    _remove_stale_temps(final)
    prefix = f".{final.name}.{os.getpid()}."
    try:
        if is_dir:
            tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=final.parent))
        else:
            fd, name = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=final.parent)
            os.close(fd)
            tmp = Path(name)
    except OSError as exc:
        raise _fs_error(final, exc) from None
    try:
        yield tmp
        if is_dir:
            if final.exists():
                old = final.with_name(f".{final.name}.old-{os.getpid()}")
                os.replace(final, old)
                os.replace(tmp, final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, final)
        else:
            with open(tmp, "rb") as fh:  # durability of the content before the rename
                os.fsync(fh.fileno())
            os.replace(tmp, final)
    except OSError as exc:
        _remove(tmp)
        raise _fs_error(final, exc) from None
    except BaseException:
        _remove(tmp)
        raise


def _remove(p: Path) -> None:
    if p.is_dir():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def dumps_json(obj: Any) -> str:
    """Canonical JSON: sorted keys, 2-space indent, trailing newline (byte-stable across runs)."""
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, dumps_json(obj))


def write_jsonl(path: str | Path, rows: Any) -> int:
    """Write an iterable of JSON objects, one per line, atomically; returns the row count."""
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, allow_nan=False))
            fh.write("\n")
            n += 1
    return n


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_npy(path: str | Path, arr: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(arr), allow_pickle=False)


def read_npy(path: str | Path, *, mmap: bool = False) -> np.ndarray:
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def stable_hash(obj: Any, n: int = 16) -> str:
    """Short hex digest of a JSON-serialisable value (sorted keys): a spec's identity."""
    return sha256_bytes(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode("utf-8"))[:n]
