#!/usr/bin/env bash
# Kinetics-400 pretraining on 2 nodes x 8 GPUs: global batch 256 (16 clips per GPU), lr 0.2 by
# linear scaling, 5 warmup epochs. CONFIG=configs/resnext101_kinetics400.yaml for ResNeXt-101.
#   MASTER=HOST:PORT [CONFIG=...] scripts/train_kinetics400_2nodes.sh [launch.sh options] [key=value ...]
# Run the same command on both nodes; MASTER is the first node's address and a free port. Data,
# lists and run.dir must be on storage both nodes see (checkpoints are read by every rank).
set -euo pipefail
RECIPE_NAME="$0" exec "$(dirname "${BASH_SOURCE[0]}")/kinetics_recipe.sh" 2 "$@"
