"""A full disk and a read-only output folder: one clear error, exit 2, nothing corrupted or half-written.

Uses small tmpfs mounts (needs root, as on the project's machines and CI); skipped where mounting is refused.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conftest import run_cli


def _mount(path: Path, opts: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True).returncode == 0


@pytest.fixture
def mounts(tmp_path):
    made = []

    def mount(name: str, opts: str) -> Path:
        p = tmp_path / name
        if os.geteuid() != 0 or not _mount(p, opts):
            pytest.skip("cannot mount a tmpfs here")
        made.append(p)
        return p

    yield mount
    for p in made:
        subprocess.run(["umount", "-l", str(p)], capture_output=True)


def _mine(capsys, data, out, cache, *strategies):
    args = ["mine", "--data", str(data), "--out", str(out), "--teacher", "hash", "--cache", str(cache), "-q",
            "--export", "all"]
    for s in strategies:
        args += ["-s", s]
    return run_cli(args, capsys)


def test_disk_full_keeps_earlier_results_and_leaves_no_partial_files(tiny_beir, tmp_path, capsys, mounts):
    disk = mounts("full", "size=1m")
    out = disk / "out"
    code, _, err = _mine(capsys, tiny_beir, out, tmp_path / "cache", "topk(2)")
    assert code == 0, err
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    st = os.statvfs(disk)
    with open(disk / "filler", "wb") as fh:  # leave about 2 KiB free
        try:
            fh.write(b"\0" * max(0, st.f_bavail * st.f_frsize - 2048))
        except OSError:
            pass
    code, _, err = _mine(capsys, tiny_beir, out, tmp_path / "cache", "topk(2)", "percpos(0.95)+topk(3)")
    assert code == 2
    assert "no space left" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # the earlier result is intact and nothing new (or temporary) remains
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_read_only_output_folder(tiny_beir, tmp_path, capsys, mounts):
    ro = mounts("ro", "ro,size=64k")
    code, _, err = _mine(capsys, tiny_beir, ro / "out", tmp_path / "cache", "topk(2)")
    assert code == 2
    assert "cannot write" in err and "Read-only file system" in err and "Traceback" not in err
