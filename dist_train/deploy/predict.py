"""Prediction on raw videos with an exported model (paddle.inference).

Each video is streamed (``data/video_stream.py``): decoded once, frame by frame, resized to the
export's short side as frames arrive and cut into the evaluation's clips and crops (from the
export's meta.json). Clips fill one uint8 batch, which runs when full, so memory stays a few
frames plus one batch whatever the video's length. The softmax of every clip and crop is
averaged, as video-level evaluation does, so a video gets the same scores from both; the
batches are the whole-video path's (consecutive items), so the scores equal it too.

A timeline gives each clip's crop-averaged softmax with the decoder's timestamps of its first
and last frame (variable frame rate safe). ``prediction_record`` is the ``--json`` schema
(README, "Predict").
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np

from dist_train import compat
from dist_train.data.readers import BadSampleError
from dist_train.data.video_stream import StreamTimings, iter_test_clips
from dist_train.deploy.export import MODEL_NAME, read_meta
from dist_train.evaluation.video_level import softmax

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v", ".wmv")


def gpu_index(device: str) -> int | None:
    """'cpu' -> None; 'gpu' -> 0; 'gpu:N' -> N (a GPU index among the visible ones)."""
    kind, colon, index = device.partition(":")
    if device == "cpu" or (kind == "gpu" and (not colon or index.isdigit())):
        return None if device == "cpu" else int(index or 0)
    raise ValueError(f"device must be cpu, gpu or gpu:N, got {device!r}")


class InferenceModel:
    """An exported model directory loaded into a paddle.inference predictor."""

    def __init__(self, model_dir: str, device: str = "cpu", threads: int | None = None):
        """``device``: cpu, gpu (GPU 0) or gpu:N (GPU N of the visible ones)."""
        import paddle
        from paddle import inference

        self.meta = read_meta(model_dir)
        program = os.path.join(model_dir, self.meta["model_file"])
        params = os.path.join(model_dir, self.meta["params_file"])
        if not os.path.isfile(program):
            program, params = compat.inference_files(model_dir, MODEL_NAME)
        config = inference.Config(compat.check_readable_program(program), params)
        gpu = gpu_index(device)
        if gpu is not None:
            config.enable_use_gpu(256, gpu)
            if not config.use_gpu():  # a CPU build only logs this and runs on the CPU
                raise ValueError(f"device {device}: this Paddle build cannot run inference on a "
                                 f"GPU (Paddle {paddle.__version__}, a CPU build?); use --device cpu")
        else:
            config.disable_gpu()
            if threads:
                config.set_cpu_math_library_num_threads(int(threads))
        config.disable_glog_info()
        self.config = config
        self.predictor = inference.create_predictor(config)
        self.input = self.predictor.get_input_handle(self.predictor.get_input_names()[0])
        self.output = self.predictor.get_output_handle(self.predictor.get_output_names()[0])

    def logits(self, clips: np.ndarray, batch_size: int = 8) -> np.ndarray:
        """uint8 clips [N, 3, T, H, W] -> float32 logits [N, num_classes], in batches."""
        shape = self.meta["input"]["shape"]
        if clips.dtype != np.uint8 or list(clips.shape[1:]) != shape[1:]:
            raise ValueError(f"expected uint8 clips [N, {', '.join(map(str, shape[1:]))}], "
                             f"got {clips.dtype} {list(clips.shape)}")
        outputs = []
        for b in range(0, len(clips), batch_size):
            batch = np.ascontiguousarray(clips[b:b + batch_size])
            self.input.reshape(list(batch.shape))
            self.input.copy_from_cpu(batch)
            self.predictor.run()
            outputs.append(self.output.copy_to_cpu())
        return np.concatenate(outputs)


def top_k(probs: np.ndarray, names: list[str], k: int) -> list[dict]:
    order = np.argsort(-probs, kind="stable")[:max(1, min(k, len(probs)))]
    return [{"label": names[c], "index": int(c), "score": float(probs[c])} for c in order]


@dataclass
class ClipScores:
    """One timeline entry: a clip's frames, decoder times (s) and crop-averaged softmax."""
    clip: int
    first_frame: int
    last_frame: int
    start: float
    end: float
    probs: np.ndarray


@dataclass
class VideoScores:
    probs: np.ndarray        # mean softmax over every clip and crop, float64 [C]
    num_frames: int          # frames decoded
    num_clips: int
    clips: list[ClipScores]  # per clip, only when a timeline is asked for
    seconds: dict            # decode, resize, crop, model, total


def video_scores(model: InferenceModel, path: str, batch_size: int = 8,
                 timeline: bool = False) -> VideoScores:
    """Stream one video through the model; see the module docstring."""
    meta = model.meta
    num_crops = meta["clip_sampling"]["num_crops"]
    batch = np.empty([batch_size] + meta["input"]["shape"][1:], np.uint8)
    owners: list[int] = []  # clip number of each filled item of ``batch``
    clips: list[ClipScores] = []
    sums = {"probs": 0.0, "items": 0, "model": 0.0}
    timings, started = StreamTimings(), time.perf_counter()

    def run_batch():
        tick = time.perf_counter()
        probs = softmax(model.logits(batch[:len(owners)], len(owners)))
        sums["model"] += time.perf_counter() - tick
        sums["probs"] = sums["probs"] + probs.sum(axis=0)
        sums["items"] += len(owners)
        if timeline:
            for p, owner in zip(probs, owners):
                clips[owner].probs += p / num_crops
        owners.clear()

    num_clips = 0
    for clip in iter_test_clips(path, meta["clip_len"], meta["crop_size"],
                                meta["eval_short_side"], meta["temporal_stride"], num_crops,
                                timings, meta["clip_sampling"].get("protocol", "paper")):
        num_clips += 1
        if timeline:
            clips.append(ClipScores(clip.index, clip.first_frame, clip.last_frame, clip.start,
                                    clip.end, np.zeros(len(meta["class_names"]))))
        for crop in clip.crops:
            batch[len(owners)] = crop
            owners.append(clip.index)
            if len(owners) == batch_size:
                run_batch()
    if owners:
        run_batch()
    seconds = {"decode": timings.decode, "resize": timings.resize, "crop": timings.crop,
               "model": sums["model"], "total": time.perf_counter() - started}
    return VideoScores(sums["probs"] / sums["items"], timings.frames, num_clips, clips,
                       {k: round(v, 4) for k, v in seconds.items()})


def prediction_record(path: str, scores: VideoScores, names: list[str], topk: int) -> dict:
    """The ``--json`` object of one video (README, "Predict"); ``timeline`` only when the
    scores carry clips."""
    record = {"video": path, "topk": top_k(scores.probs, names, topk),
              "num_frames": scores.num_frames, "num_clips": scores.num_clips,
              "seconds": scores.seconds}
    if scores.clips:
        record["timeline"] = [
            {"clip": c.clip, "start": round(c.start, 6), "end": round(c.end, 6),
             "first_frame": c.first_frame, "last_frame": c.last_frame,
             "topk": top_k(c.probs, names, topk)} for c in scores.clips]
    return record


def find_videos(path: str) -> list[str]:
    """A file as is, or the video files under a directory (recursively, sorted)."""
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise FileNotFoundError(f"--video {path}: no such file or directory")
    found = []
    for folder, _, files in os.walk(path):
        found.extend(os.path.join(folder, f) for f in files
                     if os.path.splitext(f)[1].lower() in VIDEO_EXTENSIONS)
    if not found:
        raise FileNotFoundError(f"--video {path}: no video files ({', '.join(VIDEO_EXTENSIONS)})")
    return sorted(found)


@dataclass
class PredictionRun:
    results: list[dict] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)


def predict_videos(model: InferenceModel, paths: list[str], topk: int = 5, batch_size: int = 8,
                   on_result=None, on_error=None, timeline: bool = False) -> PredictionRun:
    """Predict every video (records of ``prediction_record``); an unreadable one is recorded
    (and reported) and the rest go on."""
    run = PredictionRun()
    names = model.meta["class_names"]
    for i, path in enumerate(paths):
        try:
            scores = video_scores(model, path, batch_size, timeline)
        except BadSampleError as e:
            run.failures.append((path, str(e)))
            if on_error:
                on_error(i, path, str(e))
            continue
        result = prediction_record(path, scores, names, topk)
        run.results.append(result)
        if on_result:
            on_result(i, result)
    return run
