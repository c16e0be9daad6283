"""scripts/gpu_selftest.sh --cpu-smoke runs every check's code path on the CPU and ends with one
JSON object; its sync-BN comparison fails when broken (a wrong variance factor or momentum in the
prediction from the captured BN inputs, or 2 ranks without sync)."""
import importlib.util
import json
import os
import shutil

import pytest

from helpers import REPO, child_env, run_in_own_group

CHECKS = ["amp float16 O1 step", "amp bfloat16 O1 step", "amp float16 O2 step", "amp bfloat16 O2 step",
          "O2 float16 save, resume, step == straight run", "O2 bfloat16 save, resume, step == straight run",
          "loss scaler state round trip", "NDHWC == NCDHW", "NDHWC vs NCDHW speed",
          "predict --device gpu:N", "data wait: pinned prefetching copy vs to_tensor",
          "BN running statistics from captured inputs: 1 GPU",
          "BN running statistics from captured inputs: 2 GPUs sync",
          "BN running statistics from captured inputs: 2 GPUs plain",
          "sync BN 2 GPUs x 4 == 1 GPU x 8", "plain-BN control differs from 1 GPU"]


def load_worker():
    spec = importlib.util.spec_from_file_location("gpu_selftest", os.path.join(REPO, "scripts", "gpu_selftest.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rerun_compare(worker, runs, tmp_path, name):
    out = tmp_path / name
    shutil.copytree(runs, out, ignore=shutil.ignore_patterns("checks.jsonl", "log"))
    worker.compare(str(out))
    return {c["name"]: c for c in map(json.loads, (out / "checks.jsonl").read_text().splitlines())}


@pytest.mark.multiproc
@pytest.mark.paddle2
def test_cpu_smoke_passes_and_its_comparison_catches_breakage(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    proc = run_in_own_group([os.path.join(REPO, "scripts", "gpu_selftest.sh"), "--cpu-smoke"],
                            timeout=300, cwd=REPO, env=child_env(GPU_SELFTEST_OUT=str(runs)))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["name"] == "gpu_selftest" and result["passed"] is True and result["failed"] == []
    checks = {c["name"]: c for c in result["checks"]}
    assert list(checks) == CHECKS
    for name in CHECKS[:4] + ["loss scaler state round trip"]:
        assert checks[name]["passed"] is None  # needs a GPU: n/a, not a pass
    for name in CHECKS[4:]:
        if name != "loss scaler state round trip":
            assert checks[name]["passed"] is True, checks[name]
    assert checks["O2 float16 save, resume, step == straight run"]["measured"] == 0.0
    assert "keeps the biased variance" in checks["BN running statistics from captured inputs: 2 GPUs sync"]["detail"]
    assert checks["plain-BN control differs from 1 GPU"]["measured"] >= 1e-2
    assert checks["sync BN 2 GPUs x 4 == 1 GPU x 8"]["measured"] <= 1e-4

    worker = load_worker()
    assert all(c["passed"] for c in rerun_compare(worker, runs, tmp_path, "again").values())
    real = worker.batch_variances
    monkeypatch.setattr(worker, "batch_variances", lambda m: tuple(
        v * m[:, 0] / (m[:, 0] - 1) if i else v for i, v in enumerate(real(m))))  # wrong factor
    broken = rerun_compare(worker, runs, tmp_path, "factor")
    assert not broken["BN running statistics from captured inputs: 2 GPUs sync"]["passed"]
    monkeypatch.setattr(worker, "batch_variances", real)
    monkeypatch.setattr(worker, "MOMENTUM", 0.8)
    assert not rerun_compare(worker, runs, tmp_path, "momentum")["BN running statistics from captured inputs: 1 GPU"]["passed"]
    monkeypatch.setattr(worker, "MOMENTUM", 0.9)
    # 2 ranks that do not synchronise BN (the plain run in place of the sync run)
    unsynced = tmp_path / "unsynced"
    shutil.copytree(runs, unsynced, ignore=shutil.ignore_patterns("checks.jsonl", "log"))
    shutil.copy(unsynced / "bn_plain_world2.npz", unsynced / "bn_sync_world2.npz")
    assert not rerun_compare(worker, unsynced, tmp_path, "unsynced-check")["sync BN 2 GPUs x 4 == 1 GPU x 8"]["passed"]
