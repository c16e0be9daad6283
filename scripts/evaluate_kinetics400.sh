#!/usr/bin/env bash
# Video-level evaluation of a Kinetics-400 run on the validation list: the config's eval.protocol,
# 'paper' (every non-overlapping 16-frame clip, softmax averaged per video: the paper's 61.3% for
# ResNet-50, 65.1% for ResNeXt-101) or '10x3' (10 evenly spaced clips x 3 crops, the protocol of
# most later Kinetics results). Writes <run.dir>/eval/report.json and the confusion matrix.
#   [CONFIG=...] [WEIGHTS=...] scripts/evaluate_kinetics400.sh [--dry-run] [evaluate.py args, e.g. -o eval.protocol=10x3]
# CONFIG defaults to configs/r3d50_kinetics400.yaml; WEIGHTS to its run's best checkpoint. Under
# python -m paddle.distributed.launch, evaluate.py shards whole videos across the GPUs.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/recipe_lib.sh"
cd "$REPO"  # the config's data and run paths are relative to the repository
CONFIG="${CONFIG:-$REPO/configs/r3d50_kinetics400.yaml}"
W="$(best_weights "$CONFIG")"
run "$PY" "$REPO/dist_train/evaluate.py" -c "$CONFIG" --weights "$W" "${ARGS[@]}"
