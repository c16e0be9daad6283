#!/usr/bin/env bash
# Classify raw videos with an exported model (paddle.inference; no config or checkpoint needed).
#   [MODEL=DIR] scripts/predict_ucf101.sh [--dry-run] VIDEO_OR_DIR [predict.py args, e.g. --topk 5 --json --device gpu]
# MODEL defaults to runs/r3d18_ucf101_scratch/export.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/recipe_lib.sh"
[[ ${#ARGS[@]} -ge 1 ]] || { echo "usage: scripts/predict_ucf101.sh VIDEO_OR_DIR [predict.py args]" >&2; exit 2; }
run "$PY" "$REPO/dist_train/predict.py" --model "${MODEL:-$REPO/runs/r3d18_ucf101_scratch/export}" \
  --video "${ARGS[0]}" "${ARGS[@]:1}"
