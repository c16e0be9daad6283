"""Tiny fixtures for the video-level evaluation / export / prediction tests.

Five short AVIs (an odd number) of 10, 16, 23, 35 and 40 frames: one shorter than a 16-frame
clip, one exactly one clip, others not a multiple of 16. Frame size, evaluation short side and
crop all differ (frames 56x44 W x H, resized to 46x36, crops of 28), so a mix-up between them
shows; 3-crop testing moves along the width (x = 0, 9, 18). The network is a
resnet-10 at width 1/8 with random weights, random BatchNorm statistics (eval-mode BN does
something) and a 10x classifier (distinct probabilities), saved as a .pdparams file.
"""
import os

import cv2
import numpy as np
import yaml

from data_helpers import write_avi
from dist_train.data.lists import ListEntry, write_list
from dist_train.data.readers import count_decoded_frames

CLASSES = ["Alpha", "Beta", "Gamma"]
VIDEOS = [("Alpha", "v_Alpha_g01_c01", 10), ("Beta", "v_Beta_g01_c01", 16),
          ("Gamma", "v_Gamma_g01_c01", 23), ("Alpha", "v_Alpha_g02_c01", 35),
          ("Beta", "v_Beta_g02_c01", 40)]
HEIGHT, WIDTH = 44, 56
SHORT_SIDE, CROP = 36, 28  # data.eval_short_side, data.crop_size


def _frames(rng, length):
    base = cv2.resize(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8), (WIDTH, HEIGHT),
                      interpolation=cv2.INTER_LINEAR).astype(np.int16)
    shift = rng.integers(1, 4)
    frames = [np.clip(np.roll(base, t * shift, axis=1) + rng.integers(-20, 21, base.shape), 0, 255)
              for t in range(length)]
    return np.stack(frames).astype(np.uint8)


def eval_config(root, run_dir, list_path, source="video", **extra):
    cfg = {
        "run": {"dir": run_dir},
        "model": {"name": "resnet-10", "num_classes": len(CLASSES), "width_mult": 0.125,
                  "sync_bn": False},
        "data": {"root": root, "source": source, "train_list": list_path,
                 "val_list": list_path, "test_list": list_path, "clip_len": 16,
                 "crop_size": CROP, "eval_short_side": SHORT_SIDE, "num_workers": 0},
        "eval": {"batch_size": 3, "topk": len(CLASSES)},
    }
    for key, value in extra.items():
        section, name = key.split(".")
        cfg.setdefault(section, {})[name] = value
    return cfg


def make_fixture(base):
    """Write videos, the list, tiny weights and a config under ``base``; return their paths."""
    import paddle

    from dist_train.config import config_from_dict
    from dist_train.evaluation.video_level import build_eval_model

    rng = np.random.default_rng(7)
    root = os.path.join(base, "videos")
    entries = []
    for class_name, name, length in VIDEOS:
        path = os.path.join(root, class_name, name + ".avi")
        write_avi(path, _frames(rng, length))
        assert count_decoded_frames(path) == length, path
        entries.append(ListEntry(f"{class_name}/{name}", length, CLASSES.index(class_name)))
    list_path = os.path.join(base, "test_list.txt")
    write_list(list_path, entries)
    cfg_dict = eval_config(root, os.path.join(base, "run"), list_path)
    cfg_path = os.path.join(base, "config.yaml")
    with open(cfg_path, "w") as f:
        yaml.safe_dump(cfg_dict, f)
    paddle.seed(3)
    network = build_eval_model(config_from_dict(cfg_dict, cfg_path)).network
    state = {}
    for key, value in network.state_dict().items():
        array = value.numpy()
        if key.endswith("_mean"):
            array = rng.normal(0, 0.2, array.shape).astype(array.dtype)
        elif key.endswith("_variance"):
            array = rng.uniform(0.5, 2.0, array.shape).astype(array.dtype)
        elif key == "fc.weight":  # logits far apart: videos' probabilities differ by > 1e-2
            array = array * 10
        state[key] = array
    weights = os.path.join(base, "tiny.pdparams")
    paddle.save(state, weights)
    return {"root": root, "list": list_path, "config": cfg_path, "weights": weights,
            "cfg_dict": cfg_dict, "entries": entries}
