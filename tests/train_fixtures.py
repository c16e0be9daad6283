"""Tiny frame-folder dataset and configs for the trainer tests (tests/test_train_*.py).

Four classes of JPEG frame folders (40x32, 10-18 frames): a textured block moving right, left,
down or up, so a few steps of training change the weights in a data-dependent way. The model is
resnet-10 at width 1/8 on 4x32x32 clips: a multi-process run costs launcher time, not compute.
"""
import os

import cv2
import numpy as np
import yaml

CLASSES = ["Down", "Left", "Right", "Up"]
MOTION = {"Right": (1, 0), "Left": (-1, 0), "Down": (0, 1), "Up": (0, -1)}
HEIGHT, WIDTH = 32, 40


def _frames(rng, motion, length):
    background = rng.integers(30, 220, 3).astype(np.float32)
    block = rng.integers(0, 256, (10, 10, 3)).astype(np.float32)
    x, y = rng.integers(8, WIDTH - 18), rng.integers(8, HEIGHT - 18)
    frames = []
    for t in range(length):
        frame = np.empty((HEIGHT, WIDTH, 3), np.float32)
        frame[:] = background
        bx = int(np.clip(x + motion[0] * t, 0, WIDTH - 10))
        by = int(np.clip(y + motion[1] * t, 0, HEIGHT - 10))
        frame[by:by + 10, bx:bx + 10] = block
        frame += rng.normal(0, 4, frame.shape)
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
    return frames


def make_dataset(base, videos_per_class=6, seed=0):
    """Write frames and train/val lists under ``base``; return (frames_root, train, val)."""
    rng = np.random.default_rng(seed)
    root = os.path.join(base, "frames")
    train, val = [], []
    for label, name in enumerate(CLASSES):
        for k in range(videos_per_class):
            video = f"{name}/v_{name}_g{k + 1:02d}_c01"
            length = int(rng.integers(10, 19))
            folder = os.path.join(root, video)
            os.makedirs(folder, exist_ok=True)
            for i, rgb in enumerate(_frames(rng, MOTION[name], length)):
                cv2.imwrite(os.path.join(folder, f"img_{i + 1:05d}.jpg"),
                            cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            (val if k < 2 else train).append(f"{video} {length} {label}")
    lists = {}
    for split, lines in (("train", train), ("val", val)):
        lists[split] = os.path.join(base, f"{split}.txt")
        with open(lists[split], "w") as f:
            f.write("\n".join(lines) + "\n")
    return root, lists["train"], lists["val"]


def write_config(path, root, train_list, val_list, run_dir, **extra):
    """A tiny training config; ``extra`` maps 'section.key' -> value."""
    cfg = {
        "run": {"dir": run_dir},
        "model": {"name": "resnet-10", "num_classes": len(CLASSES), "width_mult": 0.125,
                  "sync_bn": True},
        "data": {"root": root, "source": "frames", "train_list": train_list, "val_list": val_list,
                 "clip_len": 4, "crop_size": 32, "num_workers": 2, "val_clips": 2},
        "train": {"epochs": 1, "batch_size": 8, "lr": 0.1, "seed": 5},
        "optim": {"weight_decay": 1e-3},
        "sched": {"name": "constant"},
        "val": {"every_epochs": 1, "batch_size": 4},
        "ckpt": {"every_epochs": 1, "keep_last": 2},
        "log": {"every_steps": 1, "visualdl": False, "curves": False},  # test_curves.py draws
        "export": {"at_end": False},
    }
    for key, value in extra.items():
        section, name = key.split(".")
        cfg.setdefault(section, {})[name] = value
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    return path


def final_weights(run_dir):
    """The model weights of the run's latest checkpoint, as numpy arrays."""
    from dist_train.safeload import restricted_load

    ckpts = os.path.join(run_dir, "checkpoints")
    with open(os.path.join(ckpts, "latest")) as f:
        tag = f.read().strip()
    return {k: np.asarray(v) for k, v in restricted_load(os.path.join(ckpts, tag, "model.pdparams")).items()}
