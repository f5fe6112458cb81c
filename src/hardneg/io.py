"""Atomic file writes and content hashes: a killed run never leaves a half-written file behind."""
from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
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


def default_cache_dir() -> Path:
    """The cache root: env ``HARDNEG_CACHE`` else ``~/.cache/hardneg``."""
    env = os.environ.get("HARDNEG_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hardneg"


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


# -- output folders: hardneg never deletes or overwrites a file it did not write ---------------------------------

OUTPUT_MARKER = ".hardneg-output.json"


def _relation(out: Path, other: Path) -> str | None:
    """How ``out`` relates to ``other`` (both resolved): "is", "contains", "lies inside" or None."""
    if out == other:
        return "is"
    if other.is_relative_to(out):
        return "contains"
    if out.is_relative_to(other):
        return "lies inside"
    return None


def output_owner(path: str | Path) -> str | None:
    """The verb whose output ``path`` holds (from its marker file), or None."""
    marker = Path(path) / OUTPUT_MARKER
    try:
        verb = json.loads(marker.read_text(encoding="utf-8")).get("verb")
    except (OSError, ValueError, AttributeError):
        return None
    return verb if isinstance(verb, str) else None


def check_output(out: str | Path, verb: str, *, inputs: Iterable[str | Path | None] = (),
                 beside: Iterable[str | Path | None] = (), flag: str = "--out",
                 legacy: Callable[[Path], bool] | None = None, overwrite: bool = True) -> Path:
    """Refuse an output folder that hardneg may not write into (raises HardnegError; writes nothing).

    Refused: an existing file; a folder that is, contains or lies inside an input (dataset, model, mined file,
    cache: ``inputs``; ``beside`` are read-only inputs that may sit inside the output, like the results file a
    report is written next to); an existing non-empty folder without the marker of an earlier ``hardneg VERB``
    run. Accepted: a missing or empty folder, or an earlier output of the same verb (only hardneg's own file
    names are then replaced; every other file stays; with ``overwrite=False`` it is refused too, as a dataset copy
    is); ``legacy`` recognises one written before markers existed.
    """
    p = Path(out).expanduser()
    beside = list(beside)
    if p.exists() and not p.is_dir():
        raise HardnegError("the output path is an existing file", where=p,
                           fix=f"pass a folder path for {flag}; hardneg never replaces a file it did not write")
    real = p.resolve()
    for kind, paths in (("input", inputs), ("beside", beside)):
        for x in paths:
            if x is None or not Path(x).expanduser().exists():
                continue  # a hub id, a dataset name or a cache that does not exist yet
            rel = _relation(real, Path(x).expanduser().resolve())
            if rel is not None and not (kind == "beside" and rel == "contains"):
                raise HardnegError(f"the output folder {rel} the input {x}", where=p,
                                   fix=f"choose a {flag} folder outside every input (dataset, model, mined file, "
                                       "cache)")
    read_only = {Path(x).expanduser().resolve() for x in beside if x is not None}
    if p.is_dir() and any(e.resolve() not in read_only for e in p.iterdir()):  # its own inputs alone: empty
        owner = output_owner(p)
        if owner is None and legacy is not None and legacy(p):
            owner = verb
        if owner is None:
            raise HardnegError("the output folder is not empty and was not written by hardneg", where=p,
                               fix=f"choose a new or empty {flag} folder; hardneg never deletes files it did not "
                                   "write")
        if owner != verb:
            raise HardnegError(f"the output folder holds the output of `hardneg {owner}`", where=p,
                               fix=f"choose another {flag} folder for `hardneg {verb}`")
        if not overwrite:
            raise HardnegError(f"the output folder already holds the output of `hardneg {verb}`", where=p,
                               fix="pass --overwrite to replace it, or choose a new folder")
    return p


@contextlib.contextmanager
def claim_output(out: str | Path, verb: str, *, inputs: Iterable[str | Path | None] = (),
                 beside: Iterable[str | Path | None] = (), flag: str = "--out") -> Iterator[Path]:
    """Check ``out`` (``check_output``), create it with the marker of ``verb`` and yield it.

    If the body fails before writing anything but the marker, every folder this call created is removed again,
    so a rejected input leaves nothing behind; what a failed run already wrote is kept (a rerun resumes).
    """
    p = check_output(out, verb, inputs=inputs, beside=beside, flag=flag)
    top = next((a for a in reversed([p, *p.parents]) if not a.exists()), None)  # first folder this call creates
    ensure_dir(p)
    if output_owner(p) != verb:
        write_json(p / OUTPUT_MARKER, {"by": "hardneg", "verb": verb})
    try:
        yield p
    except BaseException:
        if top is not None and all(f.name == OUTPUT_MARKER for f in p.iterdir()):
            shutil.rmtree(top, ignore_errors=True)
        raise


def _move_entries(src: Path, dst: Path) -> None:
    """Rename each entry of ``src`` onto ``dst/<name>`` (a folder is swapped in whole); other entries stay."""
    for entry in sorted(src.iterdir()):
        target = dst / entry.name
        if target.is_dir() and not target.is_symlink():
            old = dst / f".{entry.name}.old-{os.getpid()}"
            os.replace(target, old)
            os.replace(entry, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(entry, target)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _apply_umask(path: Path, *, is_dir: bool) -> None:
    """tempfile creates 0600 files and 0700 folders; give them the mode any Unix tool would (umask applied)."""
    with contextlib.suppress(OSError):
        os.chmod(path, (0o777 if is_dir else 0o666) & ~_umask())


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

    Works for files and folders (``is_dir``). A new folder appears whole in one rename (so its existence means
    it is complete); into an existing folder each entry of the temporary is renamed in turn and every other
    entry stays. Temporaries carry the writer's pid, so ones left behind by a killed process are removed by the
    next writer of the same path. Files and folders get the usual umask-derived modes.
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
    _apply_umask(tmp, is_dir=is_dir)
    try:
        yield tmp
        if is_dir:
            if final.is_dir():  # merge: hardneg never deletes what it did not write
                _move_entries(tmp, final)
                _remove(tmp)
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
    """A whole JSON file; any way it can be unreadable (malformed, too deep, huge numbers, lone surrogates, not
    UTF-8) is a one-line HardnegError naming the file."""
    return read_json_file(path)


# -- reading JSON: every way json.loads can fail, or succeed with something unusable, is one HardnegError ---------
# Malformed text, nesting too deep for the parser (RecursionError), integers too long to convert (ValueError),
# and lone surrogate escapes such as "\ud800" (json accepts them, but the string can never be encoded to UTF-8
# later). A UTF-8 byte-order mark at the start of a file is skipped.

BOM = b"\xef\xbb\xbf"  # UTF-8 byte-order mark (Windows editors write one)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # a \uD800-\uDFFF escape in the raw text
_SURROGATE = re.compile("[\ud800-\udfff]")


def _lone_surrogate(obj: Any) -> str | None:
    """The first lone surrogate in any string (key or value) of a decoded JSON value, else None."""
    stack = [obj]  # iterative: the value may be nested as deeply as the parser allows
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            m = _SURROGATE.search(v)
            if m:
                return m.group()
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return None


def loads_json(text: str, *, where: str | Path, line: int | None = None,
               fix: str = "write valid JSON") -> Any:
    """``json.loads`` with every failure (see the module docstring) as a one-line HardnegError."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HardnegError(f"malformed JSON ({exc.msg} at column {exc.colno})", where=where, line=line,
                           fix=fix) from None
    except RecursionError:
        raise HardnegError("JSON nested too deeply to read", where=where, line=line,
                           fix="flatten the nested arrays/objects (is the file corrupt?)") from None
    except ValueError as exc:  # e.g. an integer with more digits than int() converts
        what = str(exc).split(";")[0]
        raise HardnegError(f"unreadable JSON number ({what})", where=where, line=line,
                           fix="write long numbers (e.g. ids) as JSON strings") from None
    # Raw UTF-8 cannot hold a surrogate, so only a \u escape can make one: check the decoded value only then.
    if _SURROGATE_ESCAPE.search(text):
        bad = _lone_surrogate(obj)
        if bad is not None:
            raise HardnegError(f"a string holds the lone surrogate \\u{ord(bad):04x}, which is not valid Unicode",
                               where=where, line=line,
                               fix="re-encode the file as valid UTF-8 (a \\ud800-\\udfff escape must be half of "
                                   "a surrogate pair)")
    return obj


def read_json_file(path: str | Path, *, fix: str = "write valid JSON") -> Any:
    """Read a whole JSON file (UTF-8, a leading byte-order mark skipped) with ``loads_json``'s errors."""
    path = Path(path)
    raw = path.read_bytes()
    try:
        text = raw.removeprefix(BOM).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HardnegError(f"bytes that are not UTF-8 at offset {exc.start}", where=path,
                           fix="re-encode the file as UTF-8") from None
    return loads_json(text, where=path, fix=fix)


def read_versioned_json(path: str | Path, version: int, *, what: str, fix: str) -> dict[str, Any]:
    """A JSON object file whose ``"format"`` is ``version`` (a manifest, a pool): any other content or format is a
    one-line error saying which ``what`` and what to do (``fix``)."""
    raw = read_json_file(path, fix=fix)
    if not isinstance(raw, dict) or raw.get("format") != version:
        raise HardnegError(f"unsupported {what} format {raw.get('format') if isinstance(raw, dict) else raw!r}",
                           where=path, fix=f"{fix} (this version reads format {version})")
    return raw



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
