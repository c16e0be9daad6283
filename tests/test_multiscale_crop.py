"""The paper's multi-scale corner crop, checked against numbers written out here (not against
the library's own draw): the (scale, position) pairs drawn, their corner coordinates, and that
``data.scales`` from the config reaches the training dataset."""
import collections

import numpy as np
import pytest

from dist_train.config import load_config
from dist_train.data import factory, sampling, transforms
from test_transforms_fast import reference_clip
from train_fixtures import make_dataset

pytestmark = pytest.mark.paddle2  # also run under Paddle 2.6.2 (scripts/test.sh leg 2)

# A 48 x 64 frame (height x width): the square side is int(48 * scale) for the paper's scales
# 1, 2^-1/4, 2^-1/2, 2^-3/4, 1/2, and each square sits at the centre or a corner.
SIDES = [48, 40, 33, 28, 24]
BOXES = {  # side -> position -> (x, y)
    48: {"center": (8, 0), "top_left": (0, 0), "top_right": (16, 0), "bottom_left": (0, 0),
         "bottom_right": (16, 0)},
    40: {"center": (12, 4), "top_left": (0, 0), "top_right": (24, 0), "bottom_left": (0, 8),
         "bottom_right": (24, 8)},
    33: {"center": (15, 7), "top_left": (0, 0), "top_right": (31, 0), "bottom_left": (0, 15),
         "bottom_right": (31, 15)},
    28: {"center": (18, 10), "top_left": (0, 0), "top_right": (36, 0), "bottom_left": (0, 20),
         "bottom_right": (36, 20)},
    24: {"center": (20, 12), "top_left": (0, 0), "top_right": (40, 0), "bottom_left": (0, 24),
         "bottom_right": (40, 24)},
}
POSITIONS = ["center", "top_left", "top_right", "bottom_left", "bottom_right"]


def test_draws_cover_every_scale_and_position_at_the_written_coordinates():
    drawn = collections.Counter()
    for seed in range(2500):
        rng = np.random.default_rng(seed)
        box = transforms.draw_multiscale_corner_crop(rng, 48, 64, transforms.PAPER_SCALES)
        check = np.random.default_rng(seed)  # two draws: scale index, then position index
        side, position = SIDES[int(check.integers(5))], POSITIONS[int(check.integers(5))]
        assert box == transforms.Box(*BOXES[side][position], side, side), (seed, side, position)
        drawn[(side, position)] += 1
    assert len(drawn) == 25  # every (scale, position) pair, each about equally often
    assert min(drawn.values()) > 2500 / 25 * 0.6 and max(drawn.values()) < 2500 / 25 * 1.4


def test_config_scales_reach_the_training_dataset(tmp_path):
    root, train_list, val_list = make_dataset(str(tmp_path), videos_per_class=3)
    settings = [f"data.root={root}", f"data.train_list={train_list}", f"data.val_list={val_list}",
                "data.source=frames", "data.clip_len=4", "data.crop_size=24", "data.hflip=false",
                "data.train_crop=multiscale_corner", "train.seed=3"]
    half = factory.build_train_dataset(load_config(None, settings + ["data.scales=[0.5]"]))
    paper = factory.build_train_dataset(load_config(None, settings))
    assert half.scales == (0.5,) and paper.scales == pytest.approx(transforms.PAPER_SCALES)
    # 32 x 40 frames, scale 0.5: a 16 x 16 square at the centre (12, 8) or a corner
    corners = {"center": (12, 8), "top_left": (0, 0), "top_right": (24, 0),
               "bottom_left": (0, 16), "bottom_right": (24, 16)}
    differ = 0
    for index in range(len(half)):
        entry = half.entries[index]
        rng = np.random.default_rng([3, 0, index])
        start = sampling.train_start(rng, entry.num_frames, 4, 1)
        indices = sampling.clip_indices(start, entry.num_frames, 4, 1)
        frames = np.stack(half._read(entry.video, indices))
        assert frames.shape[1:3] == (32, 40)
        assert int(rng.integers(1)) == 0  # the scale draw (one scale)
        x, y = corners[POSITIONS[int(rng.integers(5))]]
        expected = reference_clip(frames, transforms.Box(x, y, 16, 16), 24, False)
        np.testing.assert_array_equal(half[(0, index)][0], expected)
        differ += not np.array_equal(paper[(0, index)][0], expected)
    assert differ > len(half) // 2  # the paper's scales give other crops
