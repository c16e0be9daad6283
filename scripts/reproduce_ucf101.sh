#!/usr/bin/env bash
# Reproduce the paper's fine-tuning number on UCF-101: ResNet-18 (shortcut A) from the released
# Kinetics-400 weights, fine-tuned on split 1 with the author's settings
# (configs/r3d18_kinetics_finetune_ucf101.yaml), evaluated video-level (the paper's protocol), and
# one JSON verdict against the paper's 84.4% (mean of its 3 splits; within 3 points counts as
# reproduced, this project's tolerance). Exit code 0 when reproduced, 1 when not.
#   scripts/reproduce_ucf101.sh [--smoke] [--dry-run] [launch.sh options] [key=value ...]
# Real run (GPUs): PTH (default data/pretrained/resnet-18-kinetics.pth), UCF-101 frames and lists
# as in the README (data/ucf101/frames, data/ucf101/lists), RUN (default
# runs/reproduce_ucf101_r3d18). Run it again to resume training; evaluation runs each time.
# --smoke: the same steps (convert, fine-tune through launch.sh, evaluate, verdict) on a tiny
# synthetic UCF-101-layout set with stand-in weights in the released .pth layout, on the CPU, in
# WORK (default runs/reproduce_ucf101_smoke, recreated); the verdict only says the path ran.
# key=value overrides apply to training and evaluation; other arguments go to launch.sh.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${DIST_TRAIN_VENV:-$REPO/.venv}/bin/python"
CONFIG="$REPO/configs/r3d18_kinetics_finetune_ucf101.yaml"
PAPER=0.844 ; TOLERANCE=0.03
cd "$REPO"  # the config's data and run paths are relative to the repository

SMOKE=0 ; DRY_RUN=0 ; OVERRIDES=() ; LAUNCH_OPTS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --smoke) SMOKE=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    -o) [[ $# -ge 2 ]] || { echo "reproduce_ucf101.sh: -o needs key=value" >&2; exit 2; }
        OVERRIDES+=("$2"); shift 2 ;;
    -*) LAUNCH_OPTS+=("$1"); if [[ $# -ge 2 && "$2" != -* && "$2" != *=* ]]; then LAUNCH_OPTS+=("$2"); shift; fi; shift ;;
    *=*) OVERRIDES+=("$1"); shift ;;
    *) echo "reproduce_ucf101.sh: unexpected argument '$1' (options, or key=value overrides)" >&2; exit 2 ;;
  esac
done
run() { if [[ "$DRY_RUN" == 1 ]]; then printf '%q ' "$@"; echo; else "$@"; fi; }
if [[ "$DRY_RUN" == 0 && "${DIST_TRAIN_SKIP_SETUP:-0}" != 1 ]]; then "$REPO/scripts/setup.sh"; fi
export DIST_TRAIN_SKIP_SETUP=1  # launch.sh below: set up once, here

if [[ "$SMOKE" == 1 ]]; then
  WORK="${WORK:-runs/reproduce_ucf101_smoke}"
  DATA="$WORK/data" ; PTH="$WORK/pretrained/resnet-18-kinetics.pth" ; RUN="$WORK/run"
  # WORK is recreated; refuse to delete a directory this script did not make.
  if [[ "$DRY_RUN" == 0 && -e "$WORK" ]]; then
    [[ -f "$WORK/.reproduce_smoke" ]] || { echo "reproduce_ucf101.sh: WORK=$WORK exists and was not made by --smoke; choose another WORK" >&2; exit 2; }
    rm -rf "$WORK"
  fi
  [[ "$DRY_RUN" == 1 ]] || { mkdir -p "$WORK" && touch "$WORK/.reproduce_smoke"; }
  run "$PY" data_tools/make_synthetic.py --out "$DATA" --classes 4 --videos-per-class 8 \
    --height 32 --width 40 --min-frames 8 --max-frames 16
  run "$PY" data_tools/extract_frames.py --src "$DATA/UCF-101" --dst "$DATA/frames"
  run "$PY" data_tools/build_lists.py --frames "$DATA/frames" --splits "$DATA/ucfTrainTestlist" \
    --split 1 --out "$DATA/lists"
  run "$PY" scripts/reproduce_lib.py stand-in --out "$PTH"
  # The same network (full ResNet-18) on small clips, one short epoch, one CPU process.
  OVERRIDES=(data.root="$DATA/frames" data.train_list="$DATA/lists/ucf101_train_split1.txt"
             data.val_list="$DATA/lists/ucf101_val_split1.txt" model.num_classes=4
             data.clip_len=8 data.crop_size=32 data.val_clips=1 data.num_workers=0
             train.epochs=1 train.batch_size=8 val.batch_size=8 eval.batch_size=8
             log.every_steps=1 log.visualdl=false ckpt.keep_last=1 "${OVERRIDES[@]}")
  LAUNCH_OPTS=(--cpu --nproc 1 --max-restarts 0 "${LAUNCH_OPTS[@]}")
  VERDICT_FLAGS=(--smoke)
else
  PTH="${PTH:-data/pretrained/resnet-18-kinetics.pth}" ; RUN="${RUN:-runs/reproduce_ucf101_r3d18}"
  VERDICT_FLAGS=()
fi
WEIGHTS="${PTH%.pth}.pdparams"
OVERRIDES=(model.pretrained="$WEIGHTS" run.dir="$RUN" export.at_end=false "${OVERRIDES[@]}")
O_ARGS=(); for kv in "${OVERRIDES[@]}"; do O_ARGS+=(-o "$kv"); done

if [[ "$DRY_RUN" == 1 || ! -f "$WEIGHTS" ]]; then
  [[ "$DRY_RUN" == 1 || "$SMOKE" == 1 || -f "$PTH" ]] || {
    echo "reproduce_ucf101.sh: $PTH not found: download resnet-18-kinetics.pth (README, Fine-tuning from the released Kinetics weights) or set PTH" >&2
    exit 2; }
  run "$PY" data_tools/convert_pretrained.py --src "$PTH" --dst "$WEIGHTS" --model resnet-18
fi
run "$REPO/launch.sh" "${LAUNCH_OPTS[@]}" "$CONFIG" "${OVERRIDES[@]}"
run "$PY" dist_train/evaluate.py -c "$CONFIG" "${O_ARGS[@]}" --weights "$RUN" --out-dir "$RUN/eval"
run "$PY" scripts/reproduce_lib.py verdict --report "$RUN/eval/report.json" --paper "$PAPER" \
  --tolerance "$TOLERANCE" "${VERDICT_FLAGS[@]}"
