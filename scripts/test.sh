#!/usr/bin/env bash
# Run the test suite (installs everything first). Extra arguments go to pytest.
# A run that skips a test, or passes fewer tests than it selected, fails (tests/conftest.py).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$REPO/scripts/setup.sh" --test
VENV="${DIST_TRAIN_VENV:-$REPO/.venv}"
cd "$REPO"
export PYTHONDONTWRITEBYTECODE=1
start=$(date +%s)
"$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
echo "test.sh: suite finished in $(( $(date +%s) - start )) s"
