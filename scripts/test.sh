#!/usr/bin/env bash
# Run the test suite (installs everything first). Extra arguments go to pytest.
#
# Two legs, each in its own virtual environment (scripts/test_legs.sh: .venv-test and
# .venv-paddle2, never launch.sh's .venv; both are created/updated first: leg 1's
# tests/test_cross_version.py runs Paddle 2.6.2 from .venv-paddle2 as a subprocess):
#   leg 1  the whole suite under Paddle 3.3.1
#   leg 2  the tests marked `paddle2` under Paddle 2.6.2: the Paddle that
#          `pip install paddlepaddle-gpu` gives GPU users
# Each leg runs with DIST_TRAIN_VENV and DIST_TRAIN_PADDLE set to its own venv and CPU wheel, so
# the launch.sh and setup.sh that tests start stay in it.
# DIST_TRAIN_LEGS="1" (or "2") runs one leg only. A leg that skips a test, or passes fewer
# tests than it selected, fails (tests/conftest.py). Without extra arguments, leg 2 must also
# pass every test function that leg 1's interpreter selects with `-m paddle2` (so a marked test
# cannot silently drop out under 2.6.2). Each leg prints its count and time.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LEGS="${DIST_TRAIN_LEGS:-1 2}"
cd "$REPO"
export PYTHONDONTWRITEBYTECODE=1
source "$REPO/scripts/test_legs.sh"
NEW_VENV="$TEST_LEG1_VENV" OLD_VENV="$TEST_LEG2_VENV"

for leg in $LEGS; do
  [[ "$leg" == 1 || "$leg" == 2 ]] || { echo "test.sh: unknown leg '$leg' in DIST_TRAIN_LEGS (use 1 and/or 2)" >&2; exit 2; }
done
DIST_TRAIN_VENV="$NEW_VENV" DIST_TRAIN_PADDLE="$TEST_LEG1_PADDLE" "$REPO/scripts/setup.sh" --test
DIST_TRAIN_VENV="$OLD_VENV" DIST_TRAIN_PADDLE="$TEST_LEG2_PADDLE" "$REPO/scripts/setup.sh" --test

run_leg() {  # name venv paddle-requirement pytest-args...
  local name="$1" venv="$2" paddle_req="$3"; shift 3
  local start; start=$(date +%s)
  DIST_TRAIN_VENV="$venv" DIST_TRAIN_PADDLE="$paddle_req" \
    "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
  echo "test.sh: leg '$name' passed in $(( $(date +%s) - start )) s"
}

# A full run of a leg must select at least its committed number of tests (tests/MIN_TESTS), so
# tests that stop being collected cannot shrink the suite unnoticed (tests/conftest.py checks).
min_tests() { awk -v leg="$1" '$1 == leg {print $2}' "$REPO/tests/MIN_TESTS"; }
FLOOR1=1 FLOOR2=1
[[ $# -eq 0 ]] && FLOOR1="$(min_tests paddle3)" FLOOR2="$(min_tests paddle2)"

EXPECTED=""
trap '[[ -n "$EXPECTED" ]] && rm -f "$EXPECTED"' EXIT
for leg in $LEGS; do
  case "$leg" in
    1) DIST_TRAIN_MIN_TESTS="$FLOOR1" run_leg "paddle 3.3.1, whole suite" "$NEW_VENV" "$TEST_LEG1_PADDLE" "$@" ;;
    2) if [[ $# -eq 0 ]]; then
         EXPECTED="$(mktemp)"
         "$NEW_VENV/bin/python" -m pytest --collect-only -q -p no:cacheprovider -m paddle2 \
           > "$EXPECTED.out" || { cat "$EXPECTED.out"; echo "test.sh: collecting the paddle2 tests failed" >&2; exit 1; }
         grep -E '^tests/[^ ]*::[^ ]*$' "$EXPECTED.out" > "$EXPECTED"; rm -f "$EXPECTED.out"
         echo "test.sh: leg 2 must pass the $(sed 's/\[.*//' "$EXPECTED" | sort -u | wc -l) test functions marked paddle2 ($(wc -l < "$EXPECTED") tests under Paddle 3)"
         DIST_TRAIN_EXPECTED_TESTS="$EXPECTED" DIST_TRAIN_MIN_TESTS="$FLOOR2" run_leg "paddle 2.6.2, marked subset" "$OLD_VENV" "$TEST_LEG2_PADDLE" -m paddle2
       else
         run_leg "paddle 2.6.2, marked subset" "$OLD_VENV" "$TEST_LEG2_PADDLE" -m paddle2 "$@"
       fi ;;
  esac
done
