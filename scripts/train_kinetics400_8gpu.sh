#!/usr/bin/env bash
# Kinetics-400 pretraining with the paper's protocol on one node x 8 GPUs: global batch 128
# (16 clips per GPU), lr 0.1. CONFIG=configs/resnext101_kinetics400.yaml for ResNeXt-101
# (default configs/r3d50_kinetics400.yaml).
#   [CONFIG=...] scripts/train_kinetics400_8gpu.sh [launch.sh options] [key=value ...]  (e.g. --dry-run)
# Run it again to resume (launch.sh uses --resume auto).
set -euo pipefail
RECIPE_NAME="$0" exec "$(dirname "${BASH_SOURCE[0]}")/kinetics_recipe.sh" 1 "$@"
