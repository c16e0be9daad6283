#!/usr/bin/env bash
# Kinetics-400 pretraining on NODES nodes x 8 GPUs, called by the train_kinetics400_* recipes and
# scripts/slurm_launch.sh (not meant to be run by hand):
#   kinetics_recipe.sh NODES [launch.sh options] [key=value ...]
# CONFIG: configs/r3d50_kinetics400.yaml (default) or configs/resnext101_kinetics400.yaml.
# MASTER=HOST:PORT: the first node's address and a free port (required when NODES > 1).
# Keeps 16 clips per GPU: global batch = NODES x 8 x 16 (train.batch_size); the configs'
# train.lr_base_batch 128 scales the lr linearly (0.1 per 128 clips), and a batch above 128 gets
# a linear warmup of WARMUP_EPOCHS (default 5) epochs. Extra arguments come last and win.
# Beyond one node each node logs into <run.dir>/launch_logs/<hostname> (the launcher's worker
# logs are named by local rank and would overwrite each other on shared storage).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"  # the config's data and run paths are relative to the repository
die() { echo "$(basename "${RECIPE_NAME:-$0}"): $*" >&2; exit 2; }
[[ $# -ge 1 && "$1" =~ ^[1-9][0-9]*$ ]] || die "first argument: the node count"
NODES="$1"; shift
CONFIG="${CONFIG:-configs/r3d50_kinetics400.yaml}"
[[ "$CONFIG" == /* ]] || CONFIG="$REPO/$CONFIG"
[[ -f "$CONFIG" ]] || die "config '$CONFIG' not found"
GPUS_PER_NODE=8 ; CLIPS_PER_GPU=16
BATCH=$((NODES * GPUS_PER_NODE * CLIPS_PER_GPU))
ARGS=()
if [[ "$NODES" -gt 1 ]]; then
  [[ -n "${MASTER:-}" ]] || die "set MASTER=HOST:PORT (the first node's address and a free port)"
  ARGS+=(--nnodes "$NODES" --master "$MASTER")
  # The launcher names worker logs by local rank (workerlog.0..7 on every node): on shared
  # storage each node gets its own folder, <run.dir>/launch_logs/<host>, unless --log_dir is given.
  if [[ " $* " != *" --log_dir "* && " $* " != *" --log-dir "* ]]; then
    PY="${DIST_TRAIN_VENV:-$REPO/.venv}/bin/python"
    [[ -x "$PY" ]] || "$REPO/scripts/setup.sh"  # a fresh clone: launch.sh would do it next anyway
    RUN_DIR="$("$PY" -c 'import sys
from dist_train.config import ConfigError, load_config
try:
    print(load_config(sys.argv[1], [a for a in sys.argv[2:] if "=" in a and not a.startswith("-")])["run.dir"])
except ConfigError as e:
    sys.exit(f"launch.sh: {e}")' "$CONFIG" "$@")" || exit 2
    ARGS+=(--log_dir "$RUN_DIR/launch_logs/$(hostname)")
  fi
fi
ARGS+=("$CONFIG")
if [[ "$BATCH" -gt 128 ]]; then
  ARGS+=("train.batch_size=$BATCH" "sched.warmup_epochs=${WARMUP_EPOCHS:-5}")
fi
exec "$REPO/launch.sh" "${ARGS[@]}" "$@"
