#!/usr/bin/env bash
# One Slurm task per node (started by srun from scripts/train_kinetics400.sbatch): maps Slurm's
# variables to launch.sh's multi-node options and runs the Kinetics-400 recipe for that many nodes.
#   SLURM_JOB_NUM_NODES (or SLURM_NNODES)  -> --nnodes N (global batch N x 8 x 16)
#   first host of SLURM_JOB_NODELIST       -> --master HOST:PORT
#   PORT: MASTER_PORT if set, else 20000 + SLURM_JOB_ID % 20000 (one port per job)
# Arguments go on to launch.sh (e.g. --dry-run, key=value overrides).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
die() { echo "slurm_launch.sh: $*" >&2; exit 2; }
NODES="${SLURM_JOB_NUM_NODES:-${SLURM_NNODES:-}}"
[[ -n "$NODES" ]] || die "SLURM_JOB_NUM_NODES is not set: run this under sbatch/srun (scripts/train_kinetics400.sbatch)"
[[ -n "${SLURM_JOB_NODELIST:-}" ]] || die "SLURM_JOB_NODELIST is not set: run this under sbatch/srun"

# The first host of a Slurm node list: scontrol when present, else the compact forms
# 'gpu[01-04,07]', 'gpu[01-04]-ib', 'n1,n2' parsed here.
first_host() {
  local list="$1"
  if command -v scontrol >/dev/null 2>&1; then
    scontrol show hostnames "$list" | head -n 1
    return
  fi
  local first="$list"
  if [[ "$list" =~ ^([^,\[]*)\[([^]]*)\]([^,]*) ]]; then
    local range="${BASH_REMATCH[2]%%,*}"
    first="${BASH_REMATCH[1]}${range%%-*}${BASH_REMATCH[3]}"
  else
    first="${list%%,*}"
  fi
  echo "$first"
}

HOST="$(first_host "$SLURM_JOB_NODELIST")"
[[ -n "$HOST" ]] || die "cannot read a host from SLURM_JOB_NODELIST='$SLURM_JOB_NODELIST'"
PORT="${MASTER_PORT:-$((20000 + ${SLURM_JOB_ID:-0} % 20000))}"
MASTER="$HOST:$PORT" RECIPE_NAME="slurm_launch.sh" exec "$REPO/scripts/kinetics_recipe.sh" "$NODES" "$@"
