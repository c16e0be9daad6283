#!/usr/bin/env bash
# GPU self-test: checks what the CPU test suite cannot (see README, "GPU notes"). Run it first on
# a new GPU machine, on 1 GPU and on 2 (CUDA_VISIBLE_DEVICES picks them).
#
#   scripts/gpu_selftest.sh              on the visible GPUs (1 GPU: local checks; 2+: also sync BN)
#   scripts/gpu_selftest.sh --cpu-smoke  the same code paths on the CPU (checks the script only)
#
# TF32 off (NVIDIA_TF32_OVERRIDE=0) and deterministic cuDNN (FLAGS_cudnn_deterministic), so
# differences are float32 rounding. Checks (scripts/gpu_selftest.py has the details):
#   amp {float16,bfloat16} {O1,O2} step   one training step, conv3d in the low-precision dtype
#   O2 {float16,bfloat16} save, resume, step == straight run   tolerance 1e-6 (scaled difference
#                                         max|a-b| / (1 + max|b|) over weights and master weights)
#   loss scaler state round trip; NDHWC == NCDHW (1e-4); NDHWC vs NCDHW speed (fp32/fp16/bf16)
#   predict --device gpu:N                the last visible GPU, against the CPU predictor (1e-3)
#   data wait: pinned prefetching copy vs to_tensor   ResNet-18 16x112x112 from a packed store
#   BN running statistics from captured inputs   which variance (biased or unbiased) each kernel
#                                         keeps: 1 GPU, 2 GPUs sync BN, 2 GPUs plain BN (1e-4)
#   sync BN 2 GPUs x 4 == 1 GPU x 8       outputs, weights, running means, BN input statistics (1e-4)
#   plain-BN control differs from 1 GPU   >= 1e-2: proves the comparison can see a missing sync
# Prints PASS/FAIL/N/A per check, then ONE JSON object on the last line: {"name", "passed",
# "failed", "checks": [{"name", "passed" (true/false/null for n/a), "measured", "tolerance",
# "detail"}]}. Exit code: the number of failed checks (2: usage or no GPU).
# GPU_SELFTEST_OUT=DIR keeps the results and the sync-BN runs there (default: a temporary dir).
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${DIST_TRAIN_VENV:-$REPO/.venv}/bin/python"
SMOKE=()
[[ "${1:-}" == "--cpu-smoke" ]] && SMOKE=(--cpu-smoke)
[[ $# -eq 0 || "${SMOKE[*]}" == "--cpu-smoke" && $# -eq 1 ]] || { echo "usage: $0 [--cpu-smoke]" >&2; exit 2; }
if [[ -n "${GPU_SELFTEST_OUT:-}" ]]; then
  OUT="$GPU_SELFTEST_OUT"; mkdir -p "$OUT"; rm -f "$OUT/checks.jsonl"
else
  OUT="$(mktemp -d)"; trap 'rm -rf "$OUT"' EXIT
fi
export NVIDIA_TF32_OVERRIDE=0 FLAGS_cudnn_deterministic=1
WORKER="$REPO/scripts/gpu_selftest.py"
SYNC_BN_CHECKS=("BN running statistics from captured inputs" "sync BN 2 GPUs x 4 == 1 GPU x 8"
                "plain-BN control differs from 1 GPU")

if [[ ${#SMOKE[@]} -gt 0 ]]; then
  GPUS=2
  # The CPU launch of launch.sh --cpu (see dist_train/dist/cpu_launch.py).
  LAUNCH=(env CUDA_VISIBLE_DEVICES= DIST_TRAIN_DEVICE=cpu "$PY" -m dist_train.dist.cpu_launch --nproc_per_node 2)
  export CUDA_VISIBLE_DEVICES= DIST_TRAIN_DEVICE=cpu
else
  GPUS="$("$PY" -c 'import paddle; print(paddle.device.cuda.device_count() if paddle.is_compiled_with_cuda() else 0)')"
  FIRST_TWO="$(echo "${CUDA_VISIBLE_DEVICES:-0,1}" | cut -d, -f1-2)"
  LAUNCH=("$PY" -m paddle.distributed.launch --devices "$FIRST_TWO")
fi

"$PY" "$WORKER" local "$OUT" "${SMOKE[@]}"
[[ $? -ne 2 ]] || exit 2  # no GPU (the message is above)
if [[ "$GPUS" -ge 2 ]]; then
  "$PY" "$WORKER" bn "$OUT" "${SMOKE[@]}" \
    && "${LAUNCH[@]}" --log_dir "$OUT/log" "$WORKER" bn "$OUT" "${SMOKE[@]}" > "$OUT/launch.txt" 2>&1 \
    || { echo "sync BN runs failed:"; tail -20 "$OUT/launch.txt" "$OUT"/log/workerlog.* 2>/dev/null; }
  "$PY" "$WORKER" compare "$OUT" "${SMOKE[@]}"
else
  "$PY" "$WORKER" na "$OUT" "${SYNC_BN_CHECKS[@]}" --reason "needs 2 GPUs (found $GPUS)"
fi
"$PY" "$WORKER" summary "$OUT"
