"""Fetching a BEIR dataset by name, without the network: a file:// mirror and an HTTP server on loopback."""
from __future__ import annotations

import functools
import http.server
import threading
import zipfile

import pytest

from conftest import write_beir
from hardneg.data.download import fetch_beir
from hardneg.data.load import load_dataset
from hardneg.errors import HardnegError


@pytest.fixture
def mirror(tmp_path):
    src = write_beir(tmp_path / "src" / "scifact")
    root = tmp_path / "mirror"
    root.mkdir()
    with zipfile.ZipFile(root / "scifact.zip", "w") as zf:
        for p in sorted(src.rglob("*")):
            if p.is_file():
                zf.write(p, f"scifact/{p.relative_to(src)}")
    (root / "nfcorpus.zip").write_bytes(b"not a zip")
    return root


def test_file_url_mirror_is_fetched_once(mirror, tmp_path, monkeypatch):
    monkeypatch.setenv("HARDNEG_BEIR_URL", mirror.as_uri())
    ds = load_dataset("scifact", "train", cache_dir=tmp_path / "cache")
    assert ds.name == "scifact" and len(ds.corpus) == 8
    assert (tmp_path / "cache" / "datasets" / "scifact" / "qrels" / "test.tsv").is_file()
    (mirror / "scifact.zip").unlink()  # second call: served from the cache, no download
    assert len(load_dataset("scifact", "test", cache_dir=tmp_path / "cache").queries) == 2


def test_http_server_on_loopback(mirror, tmp_path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(mirror))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("HARDNEG_ALLOW_DOWNLOAD", "1")
            folder = fetch_beir("scifact", cache_dir=tmp_path / "c", base_url=url, timeout=10)
            assert (folder / "corpus.jsonl").is_file()
            with pytest.raises(HardnegError, match="not a zip file"):
                fetch_beir("nfcorpus", cache_dir=tmp_path / "c", base_url=url, timeout=10)
            with pytest.raises(HardnegError, match="cannot download"):
                fetch_beir("fiqa", cache_dir=tmp_path / "c", base_url=url, timeout=10)
            assert not (tmp_path / "c" / "datasets" / "nfcorpus").exists()  # nothing half-written
    finally:
        server.shutdown()


def test_offline_refuses_to_download(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HARDNEG_ALLOW_DOWNLOAD", raising=False)
    monkeypatch.delenv("HARDNEG_BEIR_URL", raising=False)
    with pytest.raises(HardnegError, match="HF_HUB_OFFLINE=1 forbids downloads"):
        fetch_beir("scifact", cache_dir=tmp_path / "c")
