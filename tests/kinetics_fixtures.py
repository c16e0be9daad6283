"""A tiny Kinetics-layout dataset written by the tests: annotation CSVs with awkward class names
and mp4/mkv clips (OpenCV, mp4v) in per-label folders renamed like downloaded copies, or flat.

Three classes; each clip is 40x32, 12-20 frames, a textured block moving in the class's
direction (so a few training steps are data-dependent). ``MISSING`` clips are in the CSVs but
not on disk; one file on disk is in no CSV; one clip exists twice (.mkv and .mp4).
"""
import csv
import os

import cv2
import numpy as np

CLASSES = ["jumping 'high' (in place)", "passing American football (in game)",
           'tying bow tie, "fast"']
MOTION = {CLASSES[0]: (0, -1), CLASSES[1]: (1, 0), CLASSES[2]: (-1, 0)}
HEIGHT, WIDTH = 32, 40
# youtube ids: 11 characters, some with '_' and '-' (the file name is parsed from the right)
TRAIN = [(CLASSES[k % 3], f"tr{k:02d}_a-b{k:04d}"[:11], 10 * k, 10 * k + 10) for k in range(12)]
VAL = [(CLASSES[k % 3], f"va{k:02d}-xyz_{k:03d}"[:11], 5, 15) for k in range(6)]
TEST = [(None, f"te{k:02d}_test{k:03d}"[:11], 0, 10) for k in range(6)]
MISSING = {TRAIN[4][1], TRAIN[9][1], VAL[2][1], TEST[1][1]}


def folder_name(label):
    """How downloaders rename label folders: spaces to underscores, quotes dropped."""
    return label.replace(" ", "_").replace("'", "").replace('"', "")


def clip_frames(rng, label, length):
    dx, dy = MOTION[label]
    background = rng.integers(30, 220, 3).astype(np.float32)
    block = rng.integers(0, 256, (10, 10, 3)).astype(np.float32)
    x, y = int(rng.integers(12, WIDTH - 22)), int(rng.integers(10, HEIGHT - 20))
    frames = []
    for t in range(length):
        frame = np.empty((HEIGHT, WIDTH, 3), np.float32)
        frame[:] = background
        bx, by = int(np.clip(x + dx * t, 0, WIDTH - 10)), int(np.clip(y + dy * t, 0, HEIGHT - 10))
        frame[by:by + 10, bx:bx + 10] = block
        frames.append(np.clip(frame + rng.normal(0, 4, frame.shape), 0, 255).astype(np.uint8))
    return frames


def write_video(path, frames):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 25, (WIDTH, HEIGHT))
    assert writer.isOpened(), path
    for rgb in frames:
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()


def write_csvs(base):
    """train.csv (with is_cc), validate.csv, test.csv (no label column); return their paths."""
    paths = {}
    for split, rows, header in (("train", TRAIN, "label,youtube_id,time_start,time_end,split,is_cc"),
                                ("validate", VAL, "label,youtube_id,time_start,time_end,split"),
                                ("test", TEST, "youtube_id,time_start,time_end,split")):
        paths[split] = os.path.join(base, f"kinetics_{split}.csv")
        with open(paths[split], "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(header.split(","))
            for label, youtube_id, start, end in rows:
                fields = [youtube_id, start, end, split]
                writer.writerow(([label] if label else []) + fields + (["0"] if split == "train" else []))
    return paths


def make_kinetics(base, layout="folders", seed=0):
    """Write CSVs and clips under ``base``; ``layout`` 'folders' (renamed label folders),
    'named' (folders named exactly like the labels: paths with spaces, quotes, commas) or
    'flat'. Return {"csv": {split: path}, "root": video root,
    "paths": {clip id: (list path, frame count)}} of the clips on disk."""
    rng = np.random.default_rng(seed)
    root = os.path.join(base, f"videos_{layout}")
    paths = {}
    for label, youtube_id, start, end in TRAIN + VAL + TEST:
        length = int(rng.integers(12, 21))
        clip = f"{youtube_id}_{start:06d}_{end:06d}"
        if youtube_id in MISSING:
            continue
        sub = ""
        if label and layout in ("folders", "named"):
            sub = (folder_name(label) if layout == "folders" else label) + "/"
        ext = ".mkv" if youtube_id == TRAIN[3][1] else ".mp4"
        frames = clip_frames(rng, label or CLASSES[0], length)
        write_video(os.path.join(root, sub + clip + ext), frames)
        paths[clip] = (sub + clip + ext, length)
        if youtube_id == TRAIN[0][1]:  # a second copy: the first path in sorted order is kept
            write_video(os.path.join(root, sub + clip + ".mkv"), frames)
            paths[clip] = (sub + clip + ".mkv", length)
    # a clip on disk that no CSV lists
    write_video(os.path.join(root, "zz_unlisted_000000_000010.mp4"),
                clip_frames(rng, CLASSES[0], 12))
    return {"csv": write_csvs(base), "root": root, "paths": paths}
