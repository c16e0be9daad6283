"""Small fixtures shared by the tests/test_data_*.py files (frame folders, stamped videos)."""
import os

import cv2
import numpy as np

# Lossless frames so pixel values can be checked exactly.
PNG_TEMPLATE = "img_{:05d}.png"


def stamped_frame(index, height=48, width=64):
    """RGB frame whose R channel is 5 * (index + 1), G a left-to-right ramp, B a constant 200."""
    frame = np.empty((height, width, 3), np.uint8)
    frame[..., 0] = 5 * (index + 1)
    frame[..., 1] = (np.arange(width) * 255 // (width - 1)).astype(np.uint8)[None, :]
    frame[..., 2] = 200
    return frame


def frame_stamp(clip):
    """[3, T, H, W] clip -> the stamped 0-based frame index of each frame."""
    return [int(round(float(clip[0, t].mean()) / 5)) - 1 for t in range(clip.shape[1])]


def write_frame_folder(root, video, frames, template=PNG_TEMPLATE, skip=()):
    folder = os.path.join(root, video)
    os.makedirs(folder, exist_ok=True)
    for i, rgb in enumerate(frames):
        if i + 1 not in skip:
            cv2.imwrite(os.path.join(folder, template.format(i + 1)),
                        cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return folder


def textured(count, height, width, seed=0):
    """Noise on a diagonal ramp, lightly blurred: every pixel differs from its neighbours."""
    rng = np.random.default_rng(seed)
    ramp = (np.arange(height)[:, None] + 2 * np.arange(width)[None, :]) % 180
    frames = rng.integers(0, 76, (count, height, width, 3)) + ramp[None, :, :, None]
    return np.stack([cv2.GaussianBlur(f.astype(np.uint8), (3, 3), 0.8) for f in frames])


def write_avi(path, frames, fourcc="MJPG", fps=25):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    assert writer.isOpened(), path
    for rgb in frames:
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()


def write_vfr_mkv(path, frames, pts, fps=25):
    """Matroska of JPEG frames (raw MJPEG packets) shown at ``pts[i] / fps`` seconds: a
    variable frame rate whenever the steps differ; the container still declares ``fps``."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(path, cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"MJPG"), fps,
                             (width, height), [cv2.VIDEOWRITER_PROP_RAW_VIDEO, 1])
    assert writer.isOpened(), path
    for rgb, t in zip(frames, pts):
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        assert ok and writer.set(cv2.VIDEOWRITER_PROP_PTS, t)
        writer.write(jpeg.reshape(1, -1))
    writer.release()
