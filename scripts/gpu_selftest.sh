#!/usr/bin/env bash
# GPU self-test: checks what the CPU test suite cannot (see README, "Verified only on GPU").
#
#   scripts/gpu_selftest.sh              on the visible GPUs (1 GPU: local checks; 2+: also sync BN)
#   scripts/gpu_selftest.sh --cpu-smoke  run the same code paths on the CPU (checks the script only)
#
# Checks: one fp16 O1, bf16 O1 and fp16 O2 (fp32 master weights) training step each with conv3d
# running in the low-precision dtype; the float16 loss scaler's state round trip; NDHWC
# against NCDHW (same weights, eval and train mode); on 2 GPUs paddle.nn.SyncBatchNorm with
# 4 clips per GPU against 1 GPU with 8 (outputs, running statistics, weights after 3 steps).
# Prints PASS/FAIL per check; the exit code is non-zero when any check failed.
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${DIST_TRAIN_VENV:-$REPO/.venv}/bin/python"
SMOKE=()
[[ "${1:-}" == "--cpu-smoke" ]] && SMOKE=(--cpu-smoke)
[[ $# -eq 0 || "${SMOKE[*]}" == "--cpu-smoke" ]] || { echo "usage: $0 [--cpu-smoke]" >&2; exit 2; }
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
WORKER="$REPO/scripts/gpu_selftest.py"
failed=0

"$PY" "$WORKER" local "${SMOKE[@]}" || failed=1

if [[ ${#SMOKE[@]} -gt 0 ]]; then
  GPUS=2
  DEVICES=(--nproc_per_node 2)
else
  GPUS="$("$PY" -c 'import paddle; print(paddle.device.cuda.device_count() if paddle.is_compiled_with_cuda() else 0)')"
  FIRST_TWO="$(echo "${CUDA_VISIBLE_DEVICES:-0,1}" | cut -d, -f1-2)"
  DEVICES=(--devices "$FIRST_TWO")
fi
if [[ "$GPUS" -ge 2 ]]; then
  "$PY" "$WORKER" syncbn "$OUT" "${SMOKE[@]}" || failed=1
  "$PY" -m paddle.distributed.launch "${DEVICES[@]}" --log_dir "$OUT/log" \
      "$WORKER" syncbn "$OUT" "${SMOKE[@]}" > "$OUT/launch.txt" 2>&1 \
    || { echo "FAIL sync BN: 2-GPU run failed:"; tail -20 "$OUT"/log/workerlog.* ; failed=1; }
  [[ -f "$OUT/syncbn_world2.npz" ]] && { "$PY" "$WORKER" compare "$OUT" "${SMOKE[@]}" || failed=1; }
else
  echo "N/A  sync BN 2 GPUs x 4 == 1 GPU x 8: needs 2 GPUs (found $GPUS)"
fi
if [[ "$failed" == 0 ]]; then echo "gpu_selftest: all checks passed"; else echo "gpu_selftest: FAILED"; fi
exit "$failed"
