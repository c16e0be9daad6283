"""Spatial transforms on uint8 frames (REFERENCE §1).

Frames come in as one array ``[T, H, W, 3]`` (uint8 RGB). Every random parameter is drawn once
per clip (``draw_*`` functions take the clip's rng) and then applied to all frames alike, so a
crop or flip never differs between frames of a clip. ``to_clip`` gives the dataset item layout
``[3, T, H, W]`` (C-contiguous).
"""
from typing import NamedTuple

import cv2
import numpy as np

# The paper's five scales: 1, 2^-1/4, 2^-1/2, 2^-3/4, 1/2.
PAPER_SCALES = tuple(2.0 ** (-k / 4.0) for k in range(5))
CORNER_POSITIONS = ("center", "top_left", "top_right", "bottom_left", "bottom_right")


class Box(NamedTuple):
    x: int
    y: int
    w: int
    h: int


def corner_box(height, width, side_h, side_w, position):
    """Box of size side_w x side_h at a named position of a height x width frame."""
    if position == "center":
        return Box((width - side_w) // 2, (height - side_h) // 2, side_w, side_h)
    x = 0 if position.endswith("left") else width - side_w
    y = 0 if position.startswith("top") else height - side_h
    return Box(x, y, side_w, side_h)


def draw_multiscale_corner_crop(rng, height, width, scales=PAPER_SCALES):
    """Square of side min(H, W) * scale at the centre or a corner (two draws)."""
    scale = scales[int(rng.integers(len(scales)))]
    position = CORNER_POSITIONS[int(rng.integers(len(CORNER_POSITIONS)))]
    side = max(1, int(min(height, width) * scale))
    return corner_box(height, width, side, side, position)


def draw_random_resized_crop(rng, height, width, area=(0.25, 1.0), ratio=(3 / 4, 4 / 3)):
    """Inception-style crop: random area fraction and log-uniform aspect ratio.

    Up to ten attempts; if none fits, the largest centred square (deterministic fallback).
    """
    total = height * width
    for _ in range(10):
        target = total * rng.uniform(area[0], area[1])
        aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
        w = int(round(np.sqrt(target * aspect)))
        h = int(round(np.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return Box(int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1)),
                       w, h)
    side = min(height, width)
    return corner_box(height, width, side, side, "center")


def draw_flip(rng, enabled):
    """One draw (only when enabled): horizontal flip with p = 0.5."""
    return bool(enabled) and bool(rng.random() < 0.5)


def crop_resize(frames, box, out_size):
    """Cut ``box`` from every frame and resize it to out_size x out_size."""
    cut = frames[:, box.y:box.y + box.h, box.x:box.x + box.w]
    if box.w == out_size and box.h == out_size:
        return cut
    return np.stack([cv2.resize(f, (out_size, out_size), interpolation=cv2.INTER_LINEAR)
                     for f in cut])


def resize_short_side(frames, short_side):
    """Resize every frame so its shorter side equals ``short_side`` (aspect kept)."""
    height, width = frames.shape[1:3]
    if min(height, width) == short_side:
        return frames
    if height <= width:
        size = (max(short_side, int(round(width * short_side / height))), short_side)
    else:
        size = (short_side, max(short_side, int(round(height * short_side / width))))
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_LINEAR) for f in frames])


def eval_crops(frames, short_side, crop_size, num_crops=1):
    """Short-side resize, then 1 centre crop or 3 crops (left/centre/right along the long side).

    Returns a list of ``[T, crop, crop, 3]`` arrays (in that order).
    """
    if crop_size > short_side:
        raise ValueError(f"crop size {crop_size} is larger than the short side {short_side}")
    frames = resize_short_side(frames, short_side)
    height, width = frames.shape[1:3]
    if num_crops == 1:
        positions = ["center"]
    elif num_crops == 3:
        positions = ["top_left", "center", "bottom_right"]
    else:
        raise ValueError(f"num_crops must be 1 or 3, got {num_crops}")
    crops = []
    for position in positions:
        box = corner_box(height, width, crop_size, crop_size, position)
        if position != "center":
            # Move only along the long side; stay centred along the short one.
            if width >= height:
                box = box._replace(y=(height - crop_size) // 2)
            else:
                box = box._replace(x=(width - crop_size) // 2)
        crops.append(crop_resize(frames, box, crop_size))
    return crops


def to_clip(frames, flip=False):
    """[T, H, W, 3] -> C-contiguous uint8 [3, T, H, W], optionally mirrored left-right."""
    if flip:
        frames = frames[:, :, ::-1]
    return np.ascontiguousarray(frames.transpose(3, 0, 1, 2))


def train_transform(rng, frames, crop_size, method="multiscale_corner", scales=PAPER_SCALES,
                    hflip=True):
    """Training spatial transform; draws crop then flip from ``rng`` (once per clip)."""
    height, width = frames.shape[1:3]
    if method == "multiscale_corner":
        box = draw_multiscale_corner_crop(rng, height, width, scales)
    elif method == "random_resized":
        box = draw_random_resized_crop(rng, height, width)
    elif method == "center":
        side = min(height, width)
        box = corner_box(height, width, side, side, "center")
    else:
        raise ValueError(f"unknown data.train_crop {method!r}: use multiscale_corner, "
                         f"random_resized or center")
    flip = draw_flip(rng, hflip)
    return to_clip(crop_resize(frames, box, crop_size), flip)
