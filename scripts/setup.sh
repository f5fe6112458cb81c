#!/usr/bin/env bash
# Create .venv (Python 3.11) and install hardneg with everything the demo and the tests need.
# Idempotent: skipped when pyproject.toml has not changed since the last successful install.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.hardneg-installed
want=$(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  # The CPU build of torch: any other spec pulls a multi-GB CUDA build.
  .venv/bin/python -m pip install --quiet "torch==2.13.0"
  .venv/bin/python -m pip install --quiet -e ".[dev,onnx,lora,faiss,ray,tensorboard]"
  echo "$want" > "$stamp"
fi
bash scripts/install_browser.sh   # headless Chromium (Debian package) for tests/test_browse.py
