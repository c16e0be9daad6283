"""metrics.jsonl truncation on resume and one VisualDL folder per attempt."""
import json
import os

import pytest

from dist_train.training.metrics import MetricsLog, read_metrics, truncate_metrics


@pytest.mark.paddle2
def test_truncate_keeps_rows_up_to_the_checkpoint(tmp_path):
    run = str(tmp_path)
    log = MetricsLog(run, enabled=True, visualdl=False)
    for step in range(1, 7):
        log.write({"kind": "train", "epoch": (step - 1) // 3, "global_step": step, "loss": 1.0 / step})
        if step % 3 == 0:
            log.write({"kind": "epoch", "epoch": step // 3 - 1, "global_step": step, "loss": 0.5})
    with open(os.path.join(run, "metrics.jsonl"), "a") as f:
        f.write('{"kind": "train", "glo')  # a row cut by a crash
    # resume from global step 4 inside epoch 1: epoch 0 stays complete, epoch 1 rows go
    assert truncate_metrics(run, global_step=4, epoch=1) == 3  # + the cut row, dropped
    rows = read_metrics(os.path.join(run, "metrics.jsonl"))
    assert [(r["kind"], r["global_step"]) for r in rows] == [
        ("train", 1), ("train", 2), ("train", 3), ("epoch", 3), ("train", 4)]
    # a checkpoint written after epoch 0's validation at step 3 keeps its epoch row
    assert truncate_metrics(run, global_step=3, epoch=1) == 1
    assert MetricsLog(run, enabled=False, visualdl=True).vdl is None  # other ranks write nothing


@pytest.mark.paddle2
def test_visualdl_gets_a_new_folder_per_attempt(tmp_path):
    run = str(tmp_path)
    for attempt in (1, 2):
        log = MetricsLog(run, enabled=True, visualdl=True)
        log.write({"kind": "train", "epoch": 0, "global_step": attempt, "loss": 0.3, "lr": 0.1})
        log.close()
    folders = sorted(os.listdir(os.path.join(run, "vdl")))
    assert folders == ["attempt_001", "attempt_002"]
    for folder in folders:
        assert os.listdir(os.path.join(run, "vdl", folder))  # an event file each
    rows = [json.loads(line) for line in open(os.path.join(run, "metrics.jsonl"))]
    assert [r["global_step"] for r in rows] == [1, 2] and all("time" in r for r in rows)
