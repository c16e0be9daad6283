"""Run by tests/test_cross_version.py under either Paddle (3.3.1 or 2.6.2):

    python tests/cross_version_probe.py save RUN_DIR CONTINUED.npz
        train the tiny checkpoint model 3 steps, save a checkpoint in RUN_DIR, take step 3 and
        write the weights after it
    python tests/cross_version_probe.py resume CHECKPOINT_DIR CONTINUED.npz
        build the model with other initial weights, resume from CHECKPOINT_DIR, take step 3 and
        write the weights after it

CONTINUED.npz holds "before.<name>" (weights at the checkpoint) and "after.<name>" (after step 3).
"""
import sys

import numpy as np

from dist_train import checkpoint as ck  # before paddle (compat.py: zlib)
from ckpt_models import make_training, train_state, train_step, weights

STEPS_BEFORE_SAVE = 3


def main(argv):
    mode, path, out = argv
    if mode == "save":
        model, opt, sched, scaler = make_training(seed=0)
        for step in range(STEPS_BEFORE_SAVE):
            train_step(model, opt, sched, scaler, step)
        saved = ck.save_checkpoint(path, f"step_{STEPS_BEFORE_SAVE:06d}", model=model, optimizer=opt,
                                   scaler=scaler, train_state=train_state(STEPS_BEFORE_SAVE),
                                   cfg=None, keep_last=1)
        print(saved)
    elif mode == "resume":
        model, opt, sched, scaler = make_training(seed=123)
        state = ck.load_checkpoint(path, model=model, optimizer=opt, scaler=scaler)
        assert state["global_step"] == STEPS_BEFORE_SAVE, state
    else:
        raise SystemExit(f"unknown mode {mode!r} (save or resume)")
    before = weights(model)
    train_step(model, opt, sched, scaler, STEPS_BEFORE_SAVE)
    after = weights(model)
    np.savez(out, **{f"before.{k}": v for k, v in before.items()},
             **{f"after.{k}": v for k, v in after.items()})


if __name__ == "__main__":
    main(sys.argv[1:])
