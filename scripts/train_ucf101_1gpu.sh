#!/usr/bin/env bash
# ResNet-18 from scratch on UCF-101 split 1 (the paper's recipe) on one GPU.
#   scripts/train_ucf101_1gpu.sh [launch.sh options] [key=value ...]    (e.g. --dry-run)
# The global batch stays 128 (configs/r3d18_ucf101_scratch.yaml); 4 accumulation steps of 32
# clips fit a 16 GB GPU. It uses the first visible GPU (the first entry of CUDA_VISIBLE_DEVICES
# when that is set); GPU=N picks another (a label of CUDA_VISIBLE_DEVICES if set).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"  # the config's data and run paths are relative to the repository
FIRST="${CUDA_VISIBLE_DEVICES:-0}"  # paddle.distributed.launch reads --devices as its labels
exec "$REPO/launch.sh" --devices "${GPU:-${FIRST%%,*}}" "$REPO/configs/r3d18_ucf101_scratch.yaml" \
  train.accum_steps=4 "$@"
