"""Resume through train.py with a learning-rate schedule and validation every epoch: the lr each
step used (``optimizer.get_lr()``, logged per step), the plateau state, the ``best`` pointer
and ``best_metric`` survive a kill -9 in the middle of an epoch after the lr first changed.

Runs: the resume tests' tiny setup (2 optimizer steps an epoch, a checkpoint every step) with
validation after every epoch; one process, bitwise comparisons.
"""
import json
import os
import signal

import pytest

from helpers import run_cli
from resume_helpers import (assert_bitwise_equal_weights, assert_no_tagged_processes,
                            latest_tag, tagged_env, tiny_config)
from train_fixtures import make_dataset

SCHEDULES = {
    # plateau on validation loss, patience 0: the lr is cut after the first validation whose
    # loss does not improve
    "plateau": {"sched.name": "plateau", "sched.patience": 0, "train.epochs": 4},
    # linear warmup over 3 steps, then x0.1 from epoch 2
    "warmup_multistep": {"sched.name": "multistep", "sched.warmup_epochs": 1.5,
                         "sched.milestones": [2], "train.epochs": 3},
}


def kill_step(rows, need_non_best):
    """The global step (1-based) to kill the second run in: the first one after the
    uninterrupted run's first lr change that resumes in the middle of an epoch (2 steps an
    epoch) and, if ``need_non_best``, is followed by a validation that is not the best so far
    (so that a resume dropping ``best_metric`` would move the ``best`` pointer)."""
    lrs = step_lrs(rows)
    first_change = next(i for i in range(1, len(lrs)) if lrs[i] != lrs[i - 1]) + 1
    not_best = {r["global_step"] for r in rows if r["kind"] == "epoch" and not r["is_best"]}
    for kill_at in range(first_change + 1, len(lrs) + 1):
        if (kill_at - 1) % 2 == 1 and (kill_at in not_best or not need_non_best):
            return kill_at
    raise AssertionError(f"no step to kill in: {rows}")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp("schedule_data")
    return base, make_dataset(str(base))


def metrics_rows(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    keep = ("kind", "global_step", "loss", "top1", "lr", "val_loss", "val_top1", "is_best")
    return [{k: r[k] for k in keep if k in r} for r in rows]


def final_state(run_dir):
    ckpts = os.path.join(run_dir, "checkpoints")
    with open(os.path.join(ckpts, "best")) as f:
        best = f.read().strip()
    with open(os.path.join(ckpts, latest_tag(run_dir), "state.json")) as f:
        return best, json.load(f)["train_state"]


def step_lrs(rows):
    return [r["lr"] for r in rows if r["kind"] == "train"]


@pytest.mark.paddle2
@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_kill_after_an_lr_change_then_resume_keeps_schedule_and_best(data, tmp_path, name):
    base, dataset = data
    straight = str(tmp_path / "straight")
    cfg = tiny_config(tmp_path, name, dataset, straight, **SCHEDULES[name], **{"val.every_epochs": 1})
    env, tag = tagged_env()
    run_cli(["dist_train/train.py", "-c", cfg], env=env)
    assert_no_tagged_processes(tag)
    rows = metrics_rows(straight)
    lrs = step_lrs(rows)
    kill_at = kill_step(rows, need_non_best=name == "plateau")
    resumed_from = kill_at - 1
    if name == "plateau":  # the lr was cut before the resumed step
        assert min(lrs[:resumed_from]) < lrs[0], lrs
    else:  # warmup (three lrs), then the milestone after the resumed step
        assert len(set(lrs[:3])) == 3 and lrs[-1] < lrs[resumed_from - 1], lrs

    run = str(tmp_path / "run")
    env, tag = tagged_env(DIST_TRAIN_KILL_AT_STEP=str(kill_at))
    killed = run_cli(["dist_train/train.py", "-c", cfg, "-o", f"run.dir={run}"], env=env,
                     check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert latest_tag(run) == f"step_{resumed_from:06d}"
    assert_no_tagged_processes(tag)
    env, tag = tagged_env()
    resumed = run_cli(["dist_train/train.py", "-c", cfg, "-o", f"run.dir={run}", "--resume",
                       "auto"], env=env)
    assert f"(global step {resumed_from})" in resumed.stdout
    assert_no_tagged_processes(tag)

    assert_bitwise_equal_weights(straight, run)
    assert step_lrs(metrics_rows(run)) == lrs  # the lr every step used, before and after
    # losses, validations and is_best, exactly; except the train loss/top1 summary of the epoch
    # the resume fell in: it averages only the steps run after the resume (known limitation:
    # the partial epoch sums are not checkpointed)
    resumed_epoch_end = resumed_from + 1
    partial = lambda r: (r["kind"] == "epoch" and r["global_step"] == resumed_epoch_end)  # noqa: E731
    trim = lambda rs: [{k: v for k, v in r.items() if not (partial(r) and k in ("loss", "top1"))}  # noqa: E731
                       for r in rs]
    assert trim(metrics_rows(run)) == trim(rows)
    (best_a, state_a), (best_b, state_b) = final_state(straight), final_state(run)
    assert best_b == best_a and state_b["best_metric"] == state_a["best_metric"] is not None
    assert state_b == state_a  # scheduler state (plateau reductions, best loss), best epoch
