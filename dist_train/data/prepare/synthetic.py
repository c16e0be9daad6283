"""A small synthetic dataset in the exact UCF-101 layout, learnable only from motion.

Layout written under ``out``::

    UCF-101/<Class>/v_<Class>_gGG_cCC.avi        real AVIs written by OpenCV
    ucfTrainTestlist/classInd.txt                 "1 Grow" ... (CRLF, alphabetical like UCF-101)
    ucfTrainTestlist/trainlist01.txt              "Grow/v_Grow_g03_c01.avi 9" (CRLF, 1-based)
    ucfTrainTestlist/testlist01.txt               "Grow/v_Grow_g01_c01.avi" (CRLF)
    heldout/<Class>/v_<Class>_g90_c01.avi         one extra video per class, in neither list
    heldout/heldout.txt                           "<Class>/<video>.avi <0-based label>"
    synthetic.json                                parameters and decoded frame count per video

Classes come in pairs that differ only in temporal order: a textured object moves right/left,
down/up, rotates one way/the other, grows/shrinks, ... The second class of a pair is rendered
exactly like the first and then reversed in time, so per-video order-free statistics (mean
frame, colour histogram) have the same distribution in both classes; only motion tells them
apart. Textures, colours, object shape and size, speed, position, background and length are
random; some videos are shorter than 16 frames. Videos are grouped like UCF-101 (gGG = group,
cCC = clip); the test split takes whole groups (the first ~7/25). A group's background is the
same in every class, so the scene carries no class information.
"""
import json
import os

import cv2
import numpy as np

from dist_train.data.lists import DataError
from dist_train.atomic import atomic_write_text
from dist_train.data.readers import count_decoded_frames

# (forward class, time-reversed class, motion). Order of use when --classes < 12.
CLASS_PAIRS = (
    ("MoveRight", "MoveLeft", "horizontal"),
    ("MoveDown", "MoveUp", "vertical"),
    ("RotateAnticlockwise", "RotateClockwise", "rotate"),
    ("Grow", "Shrink", "scale"),
    ("MoveDownRight", "MoveUpLeft", "diagonal"),
    ("MoveDownLeft", "MoveUpRight", "antidiagonal"),
)
CLIPS_PER_GROUP = 4
HELDOUT_GROUP = 90


def class_pairs(num_classes):
    if num_classes % 2 or not 2 <= num_classes <= 2 * len(CLASS_PAIRS):
        raise DataError(f"--classes must be even, 2..{2 * len(CLASS_PAIRS)}; got {num_classes}")
    return CLASS_PAIRS[:num_classes // 2]


def smooth_noise(rng, height, width, cells, channels=3):
    """Low-frequency random field in [0, 1]: random cells upsampled with bicubic interpolation."""
    grid = rng.random((cells + 1, cells + 1, channels)).astype(np.float32)
    field = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(field.reshape(height, width, channels), 0.0, 1.0)


def random_background(rng, height, width):
    base = rng.uniform(40, 215, 3)
    field = smooth_noise(rng, height, width, int(rng.integers(2, 6)))
    return np.clip(base + (field - 0.5) * rng.uniform(40, 120), 0, 255).astype(np.float32)


def random_object(rng, size):
    """Textured RGB patch and its soft mask (disc, square or ellipse), both float32."""
    colours = rng.uniform(0, 255, (2, 3)).astype(np.float32)
    blend = smooth_noise(rng, size, size, int(rng.integers(3, 7)), 1)
    blend = np.clip(0.7 * blend + 0.3 * rng.random((size, size, 1)), 0, 1)
    texture = colours[0] * blend + colours[1] * (1 - blend)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) - (size - 1) / 2
    r = size / 2
    shape = int(rng.integers(3))
    if shape == 0:
        inside = xx ** 2 + yy ** 2 <= r ** 2
    elif shape == 1:
        inside = (np.abs(xx) <= r * 0.8) & (np.abs(yy) <= r * 0.8)
    else:
        inside = (xx / r) ** 2 + (yy / (r * 0.6)) ** 2 <= 1
    return texture.astype(np.float32), inside.astype(np.float32)


def motion_path(rng, motion, length, height, width, size):
    """Per-frame (cx, cy, angle_deg, scale) of the forward motion."""
    t = np.arange(length, dtype=np.float64) - (length - 1) / 2
    cx = np.full(length, rng.uniform(0.3, 0.7) * width)
    cy = np.full(length, rng.uniform(0.3, 0.7) * height)
    angle = np.full(length, rng.uniform(0, 360))
    scale = np.ones(length)
    if motion in ("horizontal", "vertical", "diagonal", "antidiagonal"):
        dx, dy = {"horizontal": (1, 0), "vertical": (0, 1), "diagonal": (1, 1),
                  "antidiagonal": (-1, 1)}[motion]
        norm = np.hypot(dx, dy)
        extent = min(width if dx else np.inf, height if dy else np.inf) - size
        speed = min(rng.uniform(1.0, 3.0), 0.9 * extent / max(length - 1, 1))
        cx = width / 2 + rng.uniform(-0.15, 0.15) * width + dx / norm * speed * t
        cy = height / 2 + rng.uniform(-0.15, 0.15) * height + dy / norm * speed * t
    elif motion == "rotate":
        angle = angle + rng.uniform(4, 10) * t
    elif motion == "scale":
        ratio = rng.uniform(1.6, 2.6)
        scale = ratio ** (t / max(length - 1, 1)) / np.sqrt(ratio) * rng.uniform(0.8, 1.1)
    else:
        raise ValueError(f"unknown motion {motion!r}")
    return cx, cy, angle, scale


def render_video(rng, motion, length, height, width, background=None):
    """Frames (uint8 RGB [length, H, W, 3]) of the forward motion."""
    if background is None:
        background = random_background(rng, height, width)
    size = int(rng.integers(min(height, width) // 4, min(height, width) // 2))
    texture, mask = random_object(rng, size)
    cx, cy, angle, scale = motion_path(rng, motion, length, height, width, size)
    noise_sigma = rng.uniform(1, 5)
    frames = np.empty((length, height, width, 3), np.uint8)
    for i in range(length):
        matrix = cv2.getRotationMatrix2D(((size - 1) / 2, (size - 1) / 2), angle[i], scale[i])
        matrix[:, 2] += (cx[i] - (size - 1) / 2, cy[i] - (size - 1) / 2)
        obj = cv2.warpAffine(texture, matrix, (width, height), flags=cv2.INTER_LINEAR)
        alpha = cv2.warpAffine(mask, matrix, (width, height), flags=cv2.INTER_LINEAR)[..., None]
        frame = background * (1 - alpha) + obj * alpha
        frame += rng.normal(0, noise_sigma, frame.shape).astype(np.float32)
        frames[i] = np.clip(frame, 0, 255).astype(np.uint8)
    return frames


def write_avi(path, frames, fourcc="XVID", fps=25):
    """Write RGB frames to an AVI (temp name, then rename); return the decoded frame count."""
    height, width = frames.shape[1:3]
    tmp = os.path.join(os.path.dirname(path), f".tmp{os.getpid()}_{os.path.basename(path)}")
    writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {fourcc} AVIs here ({path}); try --fourcc MJPG")
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    decoded = count_decoded_frames(tmp)
    if decoded != len(frames):
        raise RuntimeError(f"{path}: wrote {len(frames)} frames but {decoded} decode back")
    os.replace(tmp, path)
    return decoded


def video_name(class_name, group, clip):
    return f"v_{class_name}_g{group:02d}_c{clip:02d}"


def make_synthetic(out, num_classes=4, videos_per_class=300, seed=0, height=64, width=80,
                   min_frames=12, max_frames=24, fourcc="XVID"):
    """Write the synthetic dataset under ``out``; return the manifest dict (also saved).

    The defaults are the demo's dataset (configs/demo.yaml): small frames and short videos keep
    the motion at a few pixels per sampled frame after resizing, which a tiny 3D ResNet learns
    in a few CPU minutes; larger frames or longer videos make the motion per frame smaller.
    """
    pairs = class_pairs(num_classes)
    classes = sorted(name for pair in pairs for name in pair[:2])
    num_groups = -(-videos_per_class // CLIPS_PER_GROUP)
    test_groups = max(1, round(num_groups * 7 / 25))
    if num_groups < 2:
        raise DataError("--videos-per-class must be > 4 so that train and test both get groups")
    videos, train, test, heldout = {}, [], [], []
    # Group g has the same background in every class (like one scene filmed for all actions):
    # a background tied to a class would let a network memorise scenes of the training groups
    # instead of learning motion, and fail on the unseen scenes of the test groups.
    backgrounds = {}
    for pair_index, (forward, backward, motion) in enumerate(pairs):
        for reverse, class_name in ((False, forward), (True, backward)):
            label = classes.index(class_name)
            folder = os.path.join(out, "UCF-101", class_name)
            os.makedirs(folder, exist_ok=True)
            for k in range(videos_per_class + 1):
                is_heldout = k == videos_per_class
                group = HELDOUT_GROUP if is_heldout else k // CLIPS_PER_GROUP + 1
                clip = 1 if is_heldout else k % CLIPS_PER_GROUP + 1
                rng = np.random.default_rng([seed, pair_index, int(reverse), k])
                if group not in backgrounds:
                    backgrounds[group] = random_background(
                        np.random.default_rng([seed, 1000 + group]), height, width)
                length = int(rng.integers(min_frames, max_frames + 1))
                frames = render_video(rng, motion, length, height, width, backgrounds[group])
                if reverse:
                    frames = frames[::-1]
                name = video_name(class_name, group, clip)
                if is_heldout:
                    folder_h = os.path.join(out, "heldout", class_name)
                    os.makedirs(folder_h, exist_ok=True)
                    count = write_avi(os.path.join(folder_h, name + ".avi"), frames, fourcc)
                    heldout.append(f"{class_name}/{name}.avi {label}")
                else:
                    count = write_avi(os.path.join(folder, name + ".avi"), frames, fourcc)
                    (test if group <= test_groups else train).append((class_name, name, label))
                videos[f"{class_name}/{name}"] = {"frames": count, "label": label,
                                                  "motion": motion, "reversed": reverse,
                                                  "heldout": is_heldout}
    split_dir = os.path.join(out, "ucfTrainTestlist")
    crlf = "\r\n"
    atomic_write_text(os.path.join(split_dir, "classInd.txt"),
                      "".join(f"{i + 1} {c}{crlf}" for i, c in enumerate(classes)))
    atomic_write_text(os.path.join(split_dir, "trainlist01.txt"),
                      "".join(f"{c}/{n}.avi {lab + 1}{crlf}" for c, n, lab in sorted(train)))
    atomic_write_text(os.path.join(split_dir, "testlist01.txt"),
                      "".join(f"{c}/{n}.avi{crlf}" for c, n, _ in sorted(test)))
    atomic_write_text(os.path.join(out, "heldout", "heldout.txt"),
                      "".join(line + "\n" for line in heldout))
    manifest = {"seed": seed, "classes": classes, "height": height, "width": width,
                "fourcc": fourcc, "pairs": [list(p) for p in pairs], "test_groups": test_groups,
                "num_train": len(train), "num_test": len(test), "videos": videos}
    atomic_write_text(os.path.join(out, "synthetic.json"), json.dumps(manifest, indent=1))
    return manifest
