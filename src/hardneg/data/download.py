"""Fetch a BEIR dataset by name from the public BEIR download location into the cache, once.

The base URL can be overridden with ``HARDNEG_BEIR_URL`` (a mirror, a ``file://`` folder, or a test server).
The zip is downloaded to a temporary file, checked, extracted into a temporary folder and renamed into place,
so a killed download leaves nothing that looks complete.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from hardneg.errors import HardnegError
from hardneg.io import atomic_path, default_cache_dir, ensure_dir

log = logging.getLogger("hardneg")

BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets"
BEIR_NAMES = ("arguana", "climate-fever", "cqadupstack", "dbpedia-entity", "fever", "fiqa", "hotpotqa", "msmarco",
              "nfcorpus", "nq", "quora", "scidocs", "scifact", "trec-covid", "webis-touche2020", "germanquad",
              "mrtydi", "bioasq", "signal1m", "trec-news", "robust04")


def fetch_beir(name: str, *, cache_dir: Path | None = None, base_url: str | None = None,
               timeout: float = 60.0) -> Path:
    """Return ``<cache>/datasets/<name>``, downloading and extracting ``<base_url>/<name>.zip`` if needed."""
    root = ensure_dir(Path(cache_dir or default_cache_dir()) / "datasets")
    final = root / name
    if (final / "corpus.jsonl").is_file():
        return final
    if os.environ.get("HF_HUB_OFFLINE") == "1" and os.environ.get("HARDNEG_ALLOW_DOWNLOAD") != "1" and not (
            base_url or os.environ.get("HARDNEG_BEIR_URL", "")).startswith("file:"):
        raise HardnegError(f'dataset "{name}" is not in the cache and HF_HUB_OFFLINE=1 forbids downloads',
                           where=final, fix="pass a local BEIR folder, or unset HF_HUB_OFFLINE (or set "
                                            "HARDNEG_ALLOW_DOWNLOAD=1) to download it once")
    url = f"{(base_url or os.environ.get('HARDNEG_BEIR_URL') or BEIR_URL).rstrip('/')}/{name}.zip"
    log.info("downloading %s", url)
    with tempfile.TemporaryDirectory(dir=root, prefix=f".{name}.dl.") as tmpdir:
        zpath = Path(tmpdir) / f"{name}.zip"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, open(zpath, "wb") as fh:
                shutil.copyfileobj(resp, fh, length=1 << 20)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise HardnegError(f"cannot download {url} ({getattr(exc, 'reason', exc)})", where=name,
                               fix="check the network or HARDNEG_BEIR_URL, or pass a local BEIR folder") from None
        if not zipfile.is_zipfile(zpath):
            raise HardnegError(f"the download from {url} is not a zip file", where=name,
                               fix="check HARDNEG_BEIR_URL points at BEIR's dataset zips")
        with atomic_path(final, is_dir=True) as tmp, zipfile.ZipFile(zpath) as zf:
            for member in zf.namelist():
                # A zip member must not escape the target folder ("../" or absolute paths).
                target = (tmp / member).resolve()
                if not str(target).startswith(str(tmp.resolve()) + os.sep) and target != tmp.resolve():
                    raise HardnegError(f"unsafe path {member!r} inside {url}", where=name,
                                       fix="use a trusted BEIR zip")
            zf.extractall(tmp)
            inner = tmp / name
            if inner.is_dir():  # BEIR zips hold one top folder named like the dataset
                for child in inner.iterdir():
                    child.rename(tmp / child.name)
                inner.rmdir()
            if not (tmp / "corpus.jsonl").is_file():
                raise HardnegError(f"{url} holds no corpus.jsonl", where=name, fix="use a BEIR-format zip")
    return final
