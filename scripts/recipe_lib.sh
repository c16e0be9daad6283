# Sourced by the evaluate/export/predict recipe scripts (the training recipes call launch.sh,
# which has its own --dry-run). Sets REPO, PY, DRY_RUN and ARGS (the script's arguments without
# --dry-run); run CMD... prints CMD with --dry-run, else runs it.
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${DIST_TRAIN_VENV:-$REPO/.venv}/bin/python"
DRY_RUN=0; ARGS=()
for arg in "$@"; do
  if [[ "$arg" == --dry-run ]]; then DRY_RUN=1; else ARGS+=("$arg"); fi
done

run() {
  if [[ "$DRY_RUN" == 1 ]]; then printf '%q ' "$@"; echo; else "$@"; fi
}

# The weights to evaluate/export: $WEIGHTS, else the best checkpoint of the config's run.dir.
best_weights() {
  local config="$1" run_dir tag
  if [[ -n "${WEIGHTS:-}" ]]; then echo "$WEIGHTS"; return; fi
  run_dir="$("$PY" -c 'import sys; from dist_train.config import load_config
print(load_config(sys.argv[1])["run.dir"])' "$config")" || return 1
  tag="$(cat "$run_dir/checkpoints/best" 2>/dev/null)" || {
    echo "no $run_dir/checkpoints/best: train first, or set WEIGHTS=<checkpoint dir or .pdparams>" >&2
    return 1; }
  echo "$run_dir/checkpoints/$tag"
}
