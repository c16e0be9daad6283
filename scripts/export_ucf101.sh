#!/usr/bin/env bash
# Export a run's best checkpoint for paddle.inference into <OUT> (default <run.dir>/export;
# training already does this at its end when export.at_end is true).
#   [CONFIG=...] [WEIGHTS=...] [OUT=...] scripts/export_ucf101.sh [--dry-run] [export.py args, e.g. --format legacy]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/recipe_lib.sh"
cd "$REPO"  # the config's data and run paths are relative to the repository
CONFIG="${CONFIG:-$REPO/configs/r3d18_ucf101_scratch.yaml}"
W="$(best_weights "$CONFIG")"
OUT="${OUT:-$(dirname "$(dirname "$W")")/export}"
run "$PY" "$REPO/dist_train/export.py" -c "$CONFIG" --weights "$W" --out "$OUT" "${ARGS[@]}"
