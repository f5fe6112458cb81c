#!/usr/bin/env bash
# The main job: mine -> train -> evaluate on SciFact with the offline MiniLM (teacher and student).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/hardneg run configs/scifact.toml "$@"
