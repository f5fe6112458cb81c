#!/usr/bin/env bash
# Headless Chromium (Debian package `chromium`) and Playwright for Python (into .venv), for tests/test_browse.py.
# Idempotent: apt is skipped when /usr/bin/chromium exists, pip when playwright already imports. It never runs
# `playwright install` (no browser download): the tests launch /usr/bin/chromium. Where either cannot be installed
# it warns and exits 0, and the browser tests skip with the reason.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ]; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
      echo "install_browser: not root and no sudo: chromium not installed (browser tests will skip)" >&2; SUDO=skip; fi
  fi
  if [ "$SUDO" != skip ]; then
    export DEBIAN_FRONTEND=noninteractive
    if ! { $SUDO apt-get update -q && $SUDO apt-get install -y -q chromium; } >/tmp/install_browser.log 2>&1; then
      echo "install_browser: apt-get install chromium failed (see /tmp/install_browser.log); browser tests will skip" >&2
    fi
  fi
fi
PY=.venv/bin/python
if [ -x "$PY" ] && ! "$PY" -c "import playwright.sync_api" >/dev/null 2>&1; then
  "$PY" -m pip install --quiet "playwright>=1.40" \
    || echo "install_browser: pip install playwright failed; browser tests will skip" >&2
fi
exit 0
