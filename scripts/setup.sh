#!/usr/bin/env bash
# Create or update the virtual environment and install the package (editable).
#
#   scripts/setup.sh            runtime requirements
#   scripts/setup.sh --test     plus test extras (pytest, torch CPU for the converter tests)
#   scripts/setup.sh --plan     print what would be done (key=value lines) and change nothing
#
# Environment:
#   DIST_TRAIN_VENV     virtual environment directory (default: <repo>/.venv)
#   DIST_TRAIN_PADDLE   pip requirement for Paddle, overriding the automatic choice, e.g.
#                       "paddlepaddle-gpu==2.6.2" or "paddlepaddle==2.6.2"
#   DIST_TRAIN_PYTHON   interpreter used to create the venv (default: python3, needs >= 3.10)
# Automatic choice: paddlepaddle-gpu==2.6.2 (what PyPI serves, CUDA 12.0) when nvidia-smi works,
# paddlepaddle==3.3.1 (CPU) otherwise. A second run with nothing changed takes about a second.
# paddlepaddle and paddlepaddle-gpu both install the directory paddle/, so one would overwrite the
# other's files while pip still lists both: the other flavour is uninstalled first, and the
# wanted one reinstalled over whatever it left. scripts/test.sh uses venvs of its own
# (scripts/test_legs.sh), never the one launch.sh uses.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DIST_TRAIN_VENV:-$REPO/.venv}"
PYTHON="${DIST_TRAIN_PYTHON:-python3}"
WITH_TEST=0 PLAN=0
for arg in "$@"; do
  case "$arg" in
    --test) WITH_TEST=1 ;;
    --plan) PLAN=1 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown argument '$arg' (known: --test, --plan)" >&2; exit 2 ;;
  esac
done

if [[ -n "${DIST_TRAIN_PADDLE:-}" ]]; then
  PADDLE_REQ="$DIST_TRAIN_PADDLE" REASON="DIST_TRAIN_PADDLE"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  PADDLE_REQ="paddlepaddle-gpu==2.6.2" REASON="nvidia-smi lists a GPU"
else
  PADDLE_REQ="paddlepaddle==3.3.1" REASON="no working nvidia-smi"
fi
# The flavour installed now and the one to remove (its dist-info directory names it).
if [[ "${PADDLE_REQ%%[=<>~ ]*}" == paddlepaddle-gpu ]]; then OTHER="paddlepaddle" OTHER_GLOB="paddlepaddle-[0-9]*.dist-info"
else OTHER="paddlepaddle-gpu" OTHER_GLOB="paddlepaddle_gpu-[0-9]*.dist-info"; fi
REMOVE=""
if compgen -G "$VENV/lib/python3*/site-packages/$OTHER_GLOB" >/dev/null; then REMOVE="$OTHER"; fi
# Paddle 2.x needs numpy < 2 (its jit.save segfaults with numpy 2) and the matching OpenCV.
if [[ "$PADDLE_REQ" =~ ==2\. ]]; then RUNTIME_REQS="$REPO/requirements-paddle2.txt"; else RUNTIME_REQS="$REPO/requirements.txt"; fi

STAMP_INPUT="$PADDLE_REQ|$WITH_TEST|$(cat "$RUNTIME_REQS" "$REPO/requirements-test.txt" "$REPO/pyproject.toml" | sha256sum)"
STAMP_FILE="$VENV/.dist_train_setup"
ACTION=install
if [[ ! -x "$VENV/bin/python" ]]; then ACTION=create
elif [[ -z "$REMOVE" && -f "$STAMP_FILE" && "$(cat "$STAMP_FILE")" == "$STAMP_INPUT" ]]; then ACTION=up-to-date; fi
if [[ "$PLAN" == 1 ]]; then
  printf '%s\n' "venv=$VENV" "paddle=$PADDLE_REQ" "reason=$REASON" "requirements=$RUNTIME_REQS" \
    "test_extras=$WITH_TEST" "remove=$REMOVE" "action=$ACTION"
  exit 0
fi
[[ "$ACTION" != up-to-date ]] || exit 0

if [[ ! -x "$VENV/bin/python" ]]; then
  "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 10), "Python >= 3.10 is required"' \
    || { echo "setup.sh: $PYTHON is older than 3.10; set DIST_TRAIN_PYTHON" >&2; exit 1; }
  echo "setup.sh: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
if [[ -n "$REMOVE" ]]; then
  echo "setup.sh: removing $REMOVE from $VENV (it shares the paddle/ directory with ${PADDLE_REQ%%[=<>~ ]*})"
  "${PIP[@]}" uninstall -y "$REMOVE"
  # The removal deleted the shared files too: reinstall the wanted flavour's.
  "${PIP[@]}" install --force-reinstall --no-deps "$PADDLE_REQ"
fi
echo "setup.sh: installing $PADDLE_REQ and $(basename "$RUNTIME_REQS")"
"${PIP[@]}" install "$PADDLE_REQ" -r "$RUNTIME_REQS"
if [[ "$WITH_TEST" == 1 ]]; then
  echo "setup.sh: installing test extras (requirements-test.txt)"
  "${PIP[@]}" install -r "$REPO/requirements-test.txt"
fi
"${PIP[@]}" install --no-deps --no-build-isolation -e "$REPO"
"$VENV/bin/python" -c 'import paddle, cv2, yaml, dist_train; print("setup.sh: paddle", paddle.__version__, "| opencv", cv2.__version__, "| dist_train", dist_train.__version__)'
if [[ "${PADDLE_REQ%%[=<>~ ]*}" == paddlepaddle-gpu ]]; then
  "$VENV/bin/python" -c 'import sys, paddle; sys.exit(0 if paddle.is_compiled_with_cuda() else 1)' \
    || { echo "setup.sh: $PADDLE_REQ is installed in $VENV but its Paddle is not a CUDA build (files of the CPU paddlepaddle over it?); remove $VENV and run setup.sh again" >&2; exit 1; }
fi
echo "$STAMP_INPUT" > "$STAMP_FILE"
