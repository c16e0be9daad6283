#!/usr/bin/env bash
# Video-level evaluation as in the paper (every non-overlapping 16-frame clip, softmax averaged
# per video) of the best checkpoint of a run; writes <run.dir>/eval/report.json and the
# confusion matrix (.png, .csv).
#   [CONFIG=...] [WEIGHTS=...] scripts/evaluate_ucf101.sh [--dry-run] [evaluate.py args, e.g. --crops 3]
# CONFIG defaults to configs/r3d18_ucf101_scratch.yaml; WEIGHTS to its run's best checkpoint.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/recipe_lib.sh"
cd "$REPO"  # the config's data and run paths are relative to the repository
CONFIG="${CONFIG:-$REPO/configs/r3d18_ucf101_scratch.yaml}"
W="$(best_weights "$CONFIG")"
run "$PY" "$REPO/dist_train/evaluate.py" -c "$CONFIG" --weights "$W" "${ARGS[@]}"
