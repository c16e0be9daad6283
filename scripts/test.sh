#!/usr/bin/env bash
# Run the test suite (installs everything first). Extra arguments go to pytest.
#
# Two legs, each in its own virtual environment:
#   leg 1  the whole suite under Paddle 3.3.1 (.venv)
#   leg 2  the tests marked `paddle2` under Paddle 2.6.2 (.venv-paddle2): the Paddle that
#          `pip install paddlepaddle-gpu` gives GPU users
# DIST_TRAIN_LEGS="1" (or "2") runs one leg only. A leg that skips a test, or passes fewer
# tests than it selected, fails (tests/conftest.py); each leg prints its count and time.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LEGS="${DIST_TRAIN_LEGS:-1 2}"
cd "$REPO"
export PYTHONDONTWRITEBYTECODE=1

run_leg() {  # name venv paddle-requirement minimum-tests pytest-args...
  local name="$1" venv="$2" paddle="$3" minimum="$4"; shift 4
  DIST_TRAIN_VENV="$venv" DIST_TRAIN_PADDLE="$paddle" "$REPO/scripts/setup.sh" --test
  local start; start=$(date +%s)
  DIST_TRAIN_MIN_TESTS="$minimum" "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
  echo "test.sh: leg '$name' passed in $(( $(date +%s) - start )) s"
}

for leg in $LEGS; do
  case "$leg" in
    1) run_leg "paddle 3.3.1, whole suite" "$REPO/.venv" "paddlepaddle==3.3.1" 1 "$@" ;;
    2) run_leg "paddle 2.6.2, marked subset" "$REPO/.venv-paddle2" "paddlepaddle==2.6.2" 2 -m paddle2 "$@" ;;
    *) echo "test.sh: unknown leg '$leg' in DIST_TRAIN_LEGS (use 1 and/or 2)" >&2; exit 2 ;;
  esac
done
