"""Spatial transforms on uint8 frames (REFERENCE §1).

Frames come in as one array ``[T, H, W, 3]`` (uint8 RGB; may be a read-only view of a memory
map: nothing here writes to it) or as a list of ``[H, W, 3]`` frames of one size (a reader's
``read_frames``: decoded frames need not be stacked first). Every random parameter is drawn once per clip (``draw_*``
functions take the clip's rng) and then applied to all frames alike, so a crop or flip never
differs between frames of a clip. The result is the dataset item layout ``[3, T, S, S]``
(C-contiguous), optionally written into a caller's buffer (a loader's shared batch slot).

Training crops (``data.train_crop``):

- ``multiscale_corner`` (default, the paper's): a square of side min(H, W) * scale at the centre
  or a corner, resized to S x S (bilinear).
- ``random_resized``: Inception-style random area and aspect ratio, resized to S x S.
- ``center``: the largest centred square, resized to S x S.
- ``random``: an S x S window at a uniform random position of the frame AS STORED, no resize.
  After a short-side resize (e.g. a store packed at short side 128, S = 112) this is the common
  recipe of later video models, and by far the cheapest: cutting and flipping uint8 only. It
  needs frames of at least S x S.

How a clip is cut (``clip_from_box``), the cheapest correct means on one core: the box is a
view of the frames (no full-frame copy); it is copied (or mirrored, by cv2.flip per frame) or
resized (cv2.resize per frame, into a reused buffer) into an interleaved ``[T*S, S, 3]`` block,
and ONE cv2.split writes the three planes of ``[3, T, S, S]`` (a third of the time of numpy's
strided transpose). After a
resize, the flip is one in-place cv2.flip of the planar block seen as 2-D ``[3*T*S, S]``.
Results are bit-identical to per-frame cv2.resize + numpy transpose and ``[..., ::-1]``.
"""
import threading
from typing import NamedTuple

import cv2
import numpy as np

from dist_train.errors import InputError

# The paper's five scales: 1, 2^-1/4, 2^-1/2, 2^-3/4, 1/2.
PAPER_SCALES = tuple(2.0 ** (-k / 4.0) for k in range(5))
CORNER_POSITIONS = ("center", "top_left", "top_right", "bottom_left", "bottom_right")
TRAIN_CROPS = ("multiscale_corner", "random_resized", "center", "random")


class Box(NamedTuple):
    x: int
    y: int
    w: int
    h: int


class CropSizeError(InputError, ValueError):
    """Frames smaller than a crop that does not resize (data.train_crop 'random')."""


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


def check_random_crop_fits(height, width, size, source="clip"):
    """Raise CropSizeError (naming ``source``, the sizes and the remedies) if the frames are
    smaller than the crop of data.train_crop 'random'."""
    if height < size or width < size:
        raise CropSizeError(
            f"{source}: frames are {height}x{width} (HxW), smaller than the {size}x{size} crop "
            f"of data.train_crop 'random' (it cuts without resizing): pack the store at a short "
            f"side >= {size} (data_tools/pack_clips.py --short-side), lower data.crop_size, or "
            f"choose another data.train_crop (multiscale_corner, random_resized, center)")


def draw_random_crop(rng, height, width, size, source="clip"):
    """size x size window at a uniform random position (two draws: x, then y); no resize."""
    check_random_crop_fits(height, width, size, source)
    return Box(int(rng.integers(0, width - size + 1)), int(rng.integers(0, height - size + 1)),
               size, size)


def draw_flip(rng, enabled):
    """One draw (only when enabled): horizontal flip with p = 0.5."""
    return bool(enabled) and bool(rng.random() < 0.5)


_scratch = threading.local()  # per thread: one reused interleaved block per shape


def _interleaved_block(shape):
    block = getattr(_scratch, "block", None)
    if block is None or block.shape != shape:
        block = _scratch.block = np.empty(shape, np.uint8)
    return block


def clip_from_box(frames, box, out_size, flip=False, out=None):
    """Cut ``box`` from every frame, resize it to out_size x out_size (skipped when the box has
    that size), mirror it if ``flip``: uint8 ``[3, T, S, S]``, written into ``out`` if given."""
    count = len(frames)
    shape = (3, count, out_size, out_size)
    if out is None:
        out = np.empty(shape, np.uint8)
    elif out.shape != shape or out.dtype != np.uint8 or not out.flags.c_contiguous:
        raise ValueError(f"output buffer is {out.shape} {out.dtype}, the clip is {shape} uint8 "
                         f"(C-contiguous)")
    block = _interleaved_block((count, out_size, out_size, 3))
    resize = box.w != out_size or box.h != out_size
    for t in range(count):
        cut = frames[t][box.y:box.y + box.h, box.x:box.x + box.w]
        if resize:
            cv2.resize(cut, (out_size, out_size), dst=block[t], interpolation=cv2.INTER_LINEAR)
        elif flip:
            cv2.flip(cut, 1, dst=block[t])
        else:
            block[t] = cut
    planes = [out[c].reshape(count * out_size, out_size) for c in range(3)]
    cv2.split(block.reshape(count * out_size, out_size, 3), planes)
    if flip and resize:
        flat = out.reshape(3 * count * out_size, out_size)
        cv2.flip(flat, 1, dst=flat)
    return out


def resize_short_side(frames, short_side):
    """Resize every frame so its shorter side equals ``short_side`` (aspect kept); frames that
    already have it are returned as they are."""
    count, (height, width) = len(frames), frames[0].shape[:2]
    if min(height, width) == short_side:
        return frames
    if height <= width:
        size = (max(short_side, int(round(width * short_side / height))), short_side)
    else:
        size = (short_side, max(short_side, int(round(height * short_side / width))))
    out = np.empty((count, size[1], size[0], 3), np.uint8)
    for t in range(count):
        cv2.resize(frames[t], size, dst=out[t], interpolation=cv2.INTER_LINEAR)
    return out


def eval_clips(frames, short_side, crop_size, num_crops=1):
    """Short-side resize, then 1 centre crop or 3 crops (left/centre/right along the long side).

    Returns a list of uint8 ``[3, T, crop, crop]`` clips (in that order).
    """
    if crop_size > short_side:
        raise ValueError(f"crop size {crop_size} is larger than the short side {short_side}")
    frames = resize_short_side(frames, short_side)
    height, width = frames[0].shape[:2]
    if num_crops == 1:
        positions = ["center"]
    elif num_crops == 3:
        positions = ["top_left", "center", "bottom_right"]
    else:
        raise ValueError(f"num_crops must be 1 or 3, got {num_crops}")
    clips = []
    for position in positions:
        box = corner_box(height, width, crop_size, crop_size, position)
        if position != "center":
            # Move only along the long side; stay centred along the short one.
            if width >= height:
                box = box._replace(y=(height - crop_size) // 2)
            else:
                box = box._replace(x=(width - crop_size) // 2)
        clips.append(clip_from_box(frames, box, crop_size))
    return clips


def train_transform(rng, frames, crop_size, method="multiscale_corner", scales=PAPER_SCALES,
                    hflip=True, out=None, source="clip"):
    """Training spatial transform; draws crop then flip from ``rng`` (once per clip).

    Returns uint8 ``[3, T, crop, crop]`` (into ``out`` if given). ``source`` names the video in
    errors.
    """
    height, width = frames[0].shape[:2]
    if method == "multiscale_corner":
        box = draw_multiscale_corner_crop(rng, height, width, scales)
    elif method == "random":
        box = draw_random_crop(rng, height, width, crop_size, source)
    elif method == "random_resized":
        box = draw_random_resized_crop(rng, height, width)
    elif method == "center":
        side = min(height, width)
        box = corner_box(height, width, side, side, "center")
    else:
        raise ValueError(f"unknown data.train_crop {method!r}: use one of {', '.join(TRAIN_CROPS)}")
    flip = draw_flip(rng, hflip)
    return clip_from_box(frames, box, crop_size, flip, out)
