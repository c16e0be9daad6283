#!/usr/bin/env bash
# Train on every local GPU (or 2 CPU processes) through python -m paddle.distributed.launch.
#
#   ./launch.sh [options] [CONFIG] [key=value ...] [-o key=value ...]
#
# No arguments: the demo (scripts/demo.sh; --quick: its one-minute version). Otherwise CONFIG
# defaults to configs/demo.yaml; key=value pairs are config overrides.
# Options:
#   --nnodes N             number of nodes (run the same command on every node)
#   --master HOST:PORT     rendezvous of a multi-node job (the first node's address)
#   --log_dir DIR          launcher + per-worker logs (default: <run.dir>/launch_logs)
#   --devices LIST         GPUs to use (default: all visible, honouring CUDA_VISIBLE_DEVICES)
#   --nproc N              CPU only: processes per node (default: min(2, cores))
#   --cpu                  ignore GPUs and train on the CPU (also: DIST_TRAIN_GPUS=0, or
#                          CUDA_VISIBLE_DEVICES set to an empty list)
#   --resume auto|none|PATH  (default: auto: continue the newest complete checkpoint of run.dir)
#   --weights PATH         initial weights (ignored when resuming)
#   --accept-config-change continue a run directory whose saved config differs
#   --debug                one process without the launcher (train.py --debug)
#   --max-restarts N       relaunch a failed job up to N times, resuming (default 3; see below)
#   --dry-run              print the exact launch command and exit
#   --round-batch          round train.batch_size up to a multiple of the processes x
#                          train.accum_steps (the demo: any GPU count; train.lr_base_batch scales lr)
# Environment: DIST_TRAIN_VENV (virtual environment, default <repo>/.venv), DIST_TRAIN_GPUS
# (GPU count, overriding detection), DIST_TRAIN_SKIP_SETUP=1 (do not call scripts/setup.sh).
# Unknown options are errors: paddle.distributed.launch silently falls back to its legacy
# launcher on a flag it does not know, so nothing unknown is passed through.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${DIST_TRAIN_VENV:-$REPO/.venv}/bin/python"

die() { echo "launch.sh: $*" >&2; exit 2; }
need_value() { [[ $# -ge 2 && -n "$2" && "$2" != --* ]] || die "$1 needs a value"; }

# No arguments at all, or --quick: the embedded demo (data, this script with configs/demo.yaml,
# evaluation, export, prediction, summary): see scripts/demo.sh.
if [[ $# -eq 0 || " $* " == *" --quick "* ]]; then exec "$REPO/scripts/demo.sh" "$@"; fi

CONFIG="" ; OVERRIDES=() ; TRAIN_ARGS=() ; LAUNCH_ARGS=()
LOG_DIR="" ; DEVICES="" ; NPROC="" ; FORCE_CPU=0 ; RESUME="auto" ; DEBUG=0 ; DRY_RUN=0
MAX_RESTARTS=3 ROUND_BATCH=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --nnodes) need_value "$@"; [[ "$2" =~ ^[0-9]+(:[0-9]+)?$ ]] || die "--nnodes expects N, got '$2'"
              LAUNCH_ARGS+=(--nnodes "$2"); shift 2 ;;
    --master) need_value "$@"; [[ "$2" == *:* ]] || die "--master expects HOST:PORT, got '$2'"
              LAUNCH_ARGS+=(--master "$2"); shift 2 ;;
    --log_dir|--log-dir) need_value "$@"; LOG_DIR="$2"; shift 2 ;;
    --devices) need_value "$@"; DEVICES="$2"; shift 2 ;;
    --nproc) need_value "$@"; [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "--nproc expects a positive integer"
             NPROC="$2"; shift 2 ;;
    --cpu) FORCE_CPU=1; shift ;;
    --resume) need_value "$@"; RESUME="$2"; shift 2 ;;
    --weights) need_value "$@"; TRAIN_ARGS+=(--weights "$2"); shift 2 ;;
    --accept-config-change) TRAIN_ARGS+=(--accept-config-change); shift ;;
    --debug) DEBUG=1; shift ;;
    --max-restarts) need_value "$@"; [[ "$2" =~ ^[0-9]+$ ]] || die "--max-restarts expects an integer"
                    MAX_RESTARTS="$2"; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --round-batch) ROUND_BATCH=1; shift ;;
    -o) need_value "$@"; [[ "$2" == *=* ]] || die "-o expects key=value, got '$2'"
        OVERRIDES+=(-o "$2"); shift 2 ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    -*) die "unknown option '$1' (see ./launch.sh --help)" ;;
    *=*) OVERRIDES+=(-o "$1"); shift ;;
    *) [[ -z "$CONFIG" ]] || die "two configs given ('$CONFIG' and '$1'); overrides are key=value"
       [[ -f "$1" ]] || die "config file '$1' not found"
       CONFIG="$1"; shift ;;
  esac
done
CONFIG="${CONFIG:-$REPO/configs/demo.yaml}"

if [[ "$DRY_RUN" == 0 && "${DIST_TRAIN_SKIP_SETUP:-0}" != 1 ]]; then
  "$REPO/scripts/setup.sh"
fi
[[ -x "$PY" ]] || die "no Python at $PY: run scripts/setup.sh (or set DIST_TRAIN_VENV)"

# Validates the config and overrides before any process starts, and finds run.dir.
RUN_DIR="$("$PY" -c 'import sys
from dist_train.config import ConfigError, load_config
try:
    print(load_config(sys.argv[1], sys.argv[2:][1::2])["run.dir"])
except ConfigError as e:
    sys.exit(f"launch.sh: {e}")' "$CONFIG" "${OVERRIDES[@]}")" || exit 2
LOG_DIR="${LOG_DIR:-$RUN_DIR/launch_logs}"

count_gpus() {
  if [[ -n "${DIST_TRAIN_GPUS:-}" ]]; then echo "$DIST_TRAIN_GPUS"; return; fi
  # Paddle's own count: 0 on a CPU build, honours CUDA_VISIBLE_DEVICES.
  "$PY" -c 'import paddle; print(paddle.device.cuda.device_count() if paddle.is_compiled_with_cuda() else 0)' 2>/dev/null || echo 0
}

TRAIN=("$REPO/dist_train/train.py" -c "$CONFIG" "${OVERRIDES[@]}" --resume "$RESUME" "${TRAIN_ARGS[@]}")
# A CPU run: --cpu, DIST_TRAIN_GPUS=0, or a CUDA_VISIBLE_DEVICES that is set but lists nothing.
if [[ "${DIST_TRAIN_GPUS:-}" == 0 || ( -n "${CUDA_VISIBLE_DEVICES+set}" && -z "${CUDA_VISIBLE_DEVICES// /}" ) ]]; then
  FORCE_CPU=1
fi
# On the CPU the trainers see no GPU (CUDA_VISIBLE_DEVICES empty) and set the CPU device
# (DIST_TRAIN_DEVICE); the launcher runs through dist_train.dist.cpu_launch, because Paddle's own
# would put a GPU build's processes on the GPUs whatever CUDA_VISIBLE_DEVICES says.
CPU_ENV=(CUDA_VISIBLE_DEVICES= DIST_TRAIN_DEVICE=cpu)
if [[ "$DEBUG" == 1 ]]; then
  CMD=("$PY" "${TRAIN[@]}" --debug)
  [[ "$FORCE_CPU" == 0 ]] || CMD=(env "${CPU_ENV[@]}" "${CMD[@]}")
else
  GPUS=0; [[ "$FORCE_CPU" == 1 ]] || GPUS="$(count_gpus)"
  if [[ "$GPUS" == 0 && "$FORCE_CPU" == 0 ]] && command -v nvidia-smi >/dev/null 2>&1 \
      && nvidia-smi -L >/dev/null 2>&1; then
    echo "launch.sh: warning: nvidia-smi lists GPUs but the Paddle of ${PY%/bin/python} counts none" \
         "(a CPU build? run scripts/setup.sh; --cpu trains on the CPU on purpose); training on the CPU" >&2
  fi
  if [[ "$GPUS" -gt 0 ]]; then
    if [[ -z "$DEVICES" ]]; then
      # --devices takes labels of CUDA_VISIBLE_DEVICES when it is set, else 0..N-1.
      if [[ -n "${CUDA_VISIBLE_DEVICES:-}" ]]; then DEVICES="$CUDA_VISIBLE_DEVICES"
      else DEVICES="$(seq -s, 0 $((GPUS - 1)))"; fi
    elif [[ -n "${CUDA_VISIBLE_DEVICES:-}" ]]; then  # Paddle's launcher would die on a ValueError
      for d in ${DEVICES//,/ }; do
        [[ ",${CUDA_VISIBLE_DEVICES// /}," == *",$d,"* ]] || die "--devices $DEVICES: '$d' is not \
in CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES (--devices takes its entries, e.g. --devices ${CUDA_VISIBLE_DEVICES%%,*})"
      done
    fi
    CMD=("$PY" -m paddle.distributed.launch --devices "$DEVICES" "${LAUNCH_ARGS[@]}"
         --log_dir "$LOG_DIR" "${TRAIN[@]}")
  else
    [[ -z "$DEVICES" ]] || die "--devices given but no GPU is usable (CPU build of Paddle?)"
    CORES="$(nproc 2>/dev/null || echo 1)"
    NPROC="${NPROC:-$(( CORES < 2 ? CORES : 2 ))}"
    THREADS="${OMP_NUM_THREADS:-$(( CORES / NPROC > 0 ? CORES / NPROC : 1 ))}"
    CMD=(env "${CPU_ENV[@]}" OMP_NUM_THREADS="$THREADS" "$PY" -m dist_train.dist.cpu_launch
         --nproc_per_node "$NPROC" "${LAUNCH_ARGS[@]}" --log_dir "$LOG_DIR" "${TRAIN[@]}")
  fi
fi

if [[ "$ROUND_BATCH" == 1 ]]; then
  PER_NODE=1 NODES=1
  if [[ "$DEBUG" == 0 ]]; then
    if [[ "$GPUS" -gt 0 ]]; then PER_NODE="$(tr ',' '\n' <<< "$DEVICES" | grep -c .)"; else PER_NODE="$NPROC"; fi
  fi
  for i in "${!LAUNCH_ARGS[@]}"; do
    if [[ "${LAUNCH_ARGS[$i]}" == --nnodes ]]; then NODES="${LAUNCH_ARGS[$((i + 1))]%%:*}"; fi
  done
  # Prints the rounded batch (nothing when it already divides) and says so on stderr.
  BATCH="$("$PY" -c 'import sys
from dist_train.config import load_config
world, cfg = int(sys.argv[1]), load_config(sys.argv[2], sys.argv[3:][1::2])
batch, accum, lr, base = (cfg[k] for k in ("train.batch_size", "train.accum_steps", "train.lr", "train.lr_base_batch"))
rounded = -(-batch // (world * accum)) * world * accum
if rounded != batch:
    scaled = f"lr {lr:g} x {rounded}/{base}" if base else "lr unchanged (train.lr_base_batch is not set)"
    print(f"launch.sh: train.batch_size {batch} -> {rounded}: a multiple of {world} processes x "
          f"{accum} accumulation steps; {scaled}", file=sys.stderr)
    print(rounded)' "$(( PER_NODE * NODES ))" "$CONFIG" "${OVERRIDES[@]}")" || exit 2
  if [[ -n "$BATCH" ]]; then CMD+=(-o "train.batch_size=$BATCH"); fi
fi

if [[ "$DRY_RUN" == 1 ]]; then
  printf '%q ' "${CMD[@]}"; echo
  exit 0
fi
# Restarts (--max-restarts N): a failed attempt is relaunched with --resume auto, after every
# leftover process of it (trainers, loader workers; found by the DIST_TRAIN_ATTEMPT_TAG in their
# environment) is killed. No restart after success, after a SIGTERM/SIGINT to this script (it is
# forwarded to the launcher) or to the launcher (it exits 15), after a preempted exit, or after
# an input error (train.py exits 2 on a bad config, data list, checkpoint or weights file: a
# retry would fail the same way).
# Exit codes: 0 done; 75 preempted (a checkpoint was saved at the step the ranks agreed on; run
# again to continue); 2 usage; else
# the launcher's code of the last attempt. paddle.distributed.launch does not pass the trainers'
# 75 on (it exits 15 when SIGTERMed itself, else with the first failed trainer's code), so a
# preempted exit is recognised by the marker <run.dir>/PREEMPTED that rank 0 writes.
# Each attempt gets DIST_TRAIN_RESTART=<attempt number> (0 first).
STOPPING=0 ; CHILD=""
forward_stop() { STOPPING=1; if [[ -n "$CHILD" ]]; then kill -TERM "$CHILD" 2>/dev/null || true; fi; }
trap forward_stop TERM INT

kill_attempt_processes() {
  local tag="$1" f pid pids=()
  for f in /proc/[0-9]*/environ; do
    pid="${f#/proc/}"; pid="${pid%/environ}"
    if grep -qaxz "DIST_TRAIN_ATTEMPT_TAG=$tag" "$f" 2>/dev/null; then pids+=("$pid"); fi
  done
  if [[ ${#pids[@]} -gt 0 ]]; then
    echo "launch.sh: killing ${#pids[@]} leftover process(es) of the attempt: ${pids[*]}" >&2
    kill -KILL "${pids[@]}" 2>/dev/null || true
  fi
}

# The demo (data generation before, evaluation/export/prediction after) wraps this function.
run_training() {
  local attempt=0 code tag i
  while true; do
    rm -f "$RUN_DIR/PREEMPTED"
    tag="$$-$attempt-$RANDOM"
    echo "launch.sh: attempt $((attempt + 1)) of $((MAX_RESTARTS + 1)): ${CMD[*]}"
    env DIST_TRAIN_RESTART="$attempt" DIST_TRAIN_ATTEMPT_TAG="$tag" "${CMD[@]}" &
    CHILD=$!
    code=0; wait "$CHILD" || code=$?
    while kill -0 "$CHILD" 2>/dev/null; do  # wait was interrupted by a trapped signal
      code=0; wait "$CHILD" || code=$?
    done
    CHILD=""
    kill_attempt_processes "$tag"
    if [[ -f "$RUN_DIR/PREEMPTED" ]]; then
      echo "launch.sh: preempted; checkpoint saved ($(cat "$RUN_DIR/PREEMPTED")); exit 75" >&2
      return 75
    fi
    [[ "$code" -ne 0 ]] || return 0
    if [[ "$code" == 2 ]]; then  # train.py's input errors (the launcher passes the code on)
      echo "launch.sh: the trainer stopped on an input error (exit code 2: config, data, checkpoint or weights; the message is above); not restarting" >&2
      return 2
    fi
    if [[ "$STOPPING" == 1 || "$code" == 15 || "$code" == 143 ]]; then
      echo "launch.sh: stopped by a signal (exit code $code); not restarting" >&2
      return "$code"
    fi
    if [[ "$attempt" -ge "$MAX_RESTARTS" ]]; then
      echo "launch.sh: training failed (exit code $code), no restart left" >&2
      return "$code"
    fi
    attempt=$((attempt + 1))
    echo "launch.sh: training failed (exit code $code); restart $attempt of $MAX_RESTARTS, resuming" >&2
    for i in "${!CMD[@]}"; do  # a restart continues this job's checkpoints
      if [[ "${CMD[$i]}" == --resume ]]; then CMD[$((i + 1))]=auto; fi
    done
  done
}

run_training
