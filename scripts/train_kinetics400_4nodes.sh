#!/usr/bin/env bash
# Kinetics-400 pretraining on 4 nodes x 8 GPUs: global batch 512 (16 clips per GPU), lr 0.4 by
# linear scaling, 5 warmup epochs. CONFIG=configs/resnext101_kinetics400.yaml for ResNeXt-101.
#   MASTER=HOST:PORT [CONFIG=...] scripts/train_kinetics400_4nodes.sh [launch.sh options] [key=value ...]
# Run the same command on all 4 nodes; MASTER is the first node's address and a free port. Data,
# lists and run.dir must be on storage every node sees (checkpoints are read by every rank).
set -euo pipefail
RECIPE_NAME="$0" exec "$(dirname "${BASH_SOURCE[0]}")/kinetics_recipe.sh" 4 "$@"
