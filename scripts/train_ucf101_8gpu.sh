#!/usr/bin/env bash
# ResNet-18 from scratch on UCF-101 split 1 (the paper's recipe) on every visible GPU of this
# machine (8 on a typical node: 16 clips per GPU per step, global batch 128).
#   scripts/train_ucf101_8gpu.sh [launch.sh options] [key=value ...]    (e.g. --dry-run)
# Run it again to resume (launch.sh uses --resume auto).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"  # the config's data and run paths are relative to the repository
exec "$REPO/launch.sh" "$REPO/configs/r3d18_ucf101_scratch.yaml" "$@"
