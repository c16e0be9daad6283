#!/usr/bin/env bash
# The embedded default: what ./launch.sh runs when it gets no config (and ./launch.sh --quick).
#
#   scripts/demo.sh [--quick]
#
# Stages (each reuses what a previous run left):
#   1. set-up (scripts/setup.sh; skipped with DIST_TRAIN_SKIP_SETUP=1)
#   2. synthetic UCF-101-layout dataset (data_tools/make_synthetic.py), if DATA/synthetic.json is missing
#   3. frame extraction + split lists (extract_frames.py, build_lists.py), if the lists are missing
#   4. distributed training on every local device through ./launch.sh configs/demo.yaml (global
#      batch rounded up to a multiple of the device count, lr scaled with it)
#      (--resume auto: a finished run says "nothing to do"); it exports the best model at the end
#   5. video-level evaluation (dist_train/evaluate.py: every non-overlapping clip of each test video)
#   6. export (dist_train/export.py), only if training did not leave <run.dir>/export
#   7. prediction (dist_train/predict.py) on DATA/heldout: videos in neither list
#   8. a summary (scripts/demo_summary.py)
#
# Full demo: data/synthetic (4 classes x 300 videos of exactly 16 frames = one clip span of
# configs/demo.yaml: 8 frames x stride 2, so no test clip is a loop-padded stub), runs/demo.
# --quick: the same path on data/synthetic-quick (4 x 40 videos) for 4 epochs in runs/demo-quick.
# Environment: DIST_TRAIN_DEMO_DATA / DIST_TRAIN_DEMO_RUN override the data and run directories;
# everything launch.sh reads (DIST_TRAIN_VENV, DIST_TRAIN_GPUS, ...) applies.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${DIST_TRAIN_VENV:-$REPO/.venv}/bin/python"
CONFIG="$REPO/configs/demo.yaml"

QUICK=0
for arg in "$@"; do
  case "$arg" in
    --quick) QUICK=1 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "demo.sh: unknown argument '$arg' (the demo takes only --quick; to train with other" \
            "settings give launch.sh a config: ./launch.sh configs/demo.yaml key=value ...)" >&2; exit 2 ;;
  esac
done

SYNTH_ARGS=(--classes 4 --min-frames 16 --max-frames 16)
if [[ "$QUICK" == 1 ]]; then
  DATA="${DIST_TRAIN_DEMO_DATA:-data/synthetic-quick}"; RUN="${DIST_TRAIN_DEMO_RUN:-runs/demo-quick}"
  SYNTH_ARGS+=(--videos-per-class 40)
  TRAIN_OVERRIDES=(train.epochs=4)
else
  DATA="${DIST_TRAIN_DEMO_DATA:-data/synthetic}"; RUN="${DIST_TRAIN_DEMO_RUN:-runs/demo}"
  SYNTH_ARGS+=(--videos-per-class 300)
  TRAIN_OVERRIDES=()
fi
# Paths are relative to the repository, whatever the caller's working directory.
cd "$REPO"
# Every demo video is exactly one clip span long, so 3 validation clips would be 3 copies.
OVERRIDES=(run.dir="$RUN" data.root="$DATA/frames" data.val_clips=1
           data.train_list="$DATA/lists/ucf101_train_split1.txt"
           data.val_list="$DATA/lists/ucf101_val_split1.txt" "${TRAIN_OVERRIDES[@]}")
O_ARGS=(); for kv in "${OVERRIDES[@]}"; do O_ARGS+=(-o "$kv"); done

START=$SECONDS
stage() { echo; echo "=== demo: $* ($((SECONDS - START)) s) ==="; }

stage "1/8 set-up"
if [[ "${DIST_TRAIN_SKIP_SETUP:-0}" != 1 ]]; then "$REPO/scripts/setup.sh"; fi
[[ -x "$PY" ]] || { echo "demo.sh: no Python at $PY: run scripts/setup.sh" >&2; exit 2; }

stage "2/8 synthetic dataset in $DATA"
if [[ -f "$DATA/synthetic.json" ]]; then
  echo "reusing $DATA (delete it to regenerate)"
else
  "$PY" data_tools/make_synthetic.py --out "$DATA" "${SYNTH_ARGS[@]}"
fi

stage "3/8 frames and split lists"
if [[ -f "$DATA/lists/ucf101_train_split1.txt" && -f "$DATA/lists/ucf101_val_split1.txt" ]]; then
  echo "reusing $DATA/frames and $DATA/lists"
else
  "$PY" data_tools/extract_frames.py --src "$DATA/UCF-101" --dst "$DATA/frames" 2>&1 | tr '\r' '\n' | tail -1
  "$PY" data_tools/build_lists.py --frames "$DATA/frames" --splits "$DATA/ucfTrainTestlist" --out "$DATA/lists"
fi

stage "4/8 training (resume auto; a finished run is not trained again)"
# --round-batch: on 3, 5, 6, 7 ... GPUs the global batch 16 is rounded up to a multiple of the
# GPU count (train.lr_base_batch in the config scales the lr with it).
DIST_TRAIN_SKIP_SETUP=1 "$REPO/launch.sh" --round-batch "$CONFIG" "${OVERRIDES[@]}"
BEST="$(cat "$RUN/checkpoints/best" 2>/dev/null || cat "$RUN/checkpoints/latest")"
WEIGHTS="$RUN/checkpoints/$BEST"
echo "best checkpoint: $WEIGHTS"

stage "5/8 video-level evaluation (every non-overlapping clip, softmax averaged per video)"
# One process: the test split is small; the launcher's start-up would cost more than it saves.
"$PY" dist_train/evaluate.py -c "$CONFIG" "${O_ARGS[@]}" --weights "$WEIGHTS"

stage "6/8 export"
if [[ -f "$RUN/export/meta.json" && "$RUN/export/meta.json" -nt "$WEIGHTS/state.json" ]]; then
  echo "reusing $RUN/export (written by training from $WEIGHTS)"
else
  "$PY" dist_train/export.py -c "$CONFIG" "${O_ARGS[@]}" --weights "$WEIGHTS" --out "$RUN/export"
fi

stage "7/8 prediction on the held-out videos ($DATA/heldout: in neither list)"
mkdir -p "$RUN/predict"
"$PY" dist_train/predict.py --model "$RUN/export" --video "$DATA/heldout" --json \
  > "$RUN/predict/heldout.jsonl.tmp"
mv "$RUN/predict/heldout.jsonl.tmp" "$RUN/predict/heldout.jsonl"

stage "8/8 summary"
"$PY" scripts/demo_summary.py --run "$RUN" --data "$DATA" --seconds $((SECONDS - START))
