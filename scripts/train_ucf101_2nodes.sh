#!/usr/bin/env bash
# ResNet-18 from scratch on UCF-101 split 1 on two nodes (all GPUs of each).
#   MASTER=HOST:PORT scripts/train_ucf101_2nodes.sh [launch.sh options] [key=value ...]
# Run the same command on both nodes; MASTER is the first node's address and a free port.
# Data, lists and run.dir must be on storage both nodes see (checkpoints are read by every rank).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"  # the config's data and run paths are relative to the repository
[[ -n "${MASTER:-}" ]] || { echo "train_ucf101_2nodes.sh: set MASTER=HOST:PORT (the first node)" >&2; exit 2; }
exec "$REPO/launch.sh" --nnodes 2 --master "$MASTER" "$REPO/configs/r3d18_ucf101_scratch.yaml" "$@"
