#!/usr/bin/env bash
# Fine-tune the released Kinetics-400 ResNet-18 (3D-ResNets-PyTorch, resnet-18-kinetics.pth)
# on UCF-101 split 1 on every visible GPU: converts the .pth once, then trains layer4 + fc.
#   scripts/finetune_kinetics_r3d18.sh [launch.sh options] [key=value ...]   (e.g. --dry-run)
# PTH=path of the downloaded checkpoint (default data/pretrained/resnet-18-kinetics.pth).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"  # the config's data and run paths are relative to the repository
PY="${DIST_TRAIN_VENV:-$REPO/.venv}/bin/python"
PTH="${PTH:-data/pretrained/resnet-18-kinetics.pth}"
WEIGHTS="${PTH%.pth}.pdparams"
CONVERT=("$PY" "$REPO/data_tools/convert_pretrained.py" --src "$PTH" --dst "$WEIGHTS" --model resnet-18)
if [[ " $* " == *" --dry-run "* ]]; then
  [[ -f "$WEIGHTS" ]] || { printf '%q ' "${CONVERT[@]}"; echo; }
elif [[ ! -f "$WEIGHTS" ]]; then
  [[ -f "$PTH" ]] || { echo "finetune_kinetics_r3d18.sh: $PTH not found (download resnet-18-kinetics.pth, see README)" >&2; exit 2; }
  "${CONVERT[@]}"
fi
exec "$REPO/launch.sh" "$REPO/configs/r3d18_kinetics_finetune_ucf101.yaml" model.pretrained="$WEIGHTS" "$@"
