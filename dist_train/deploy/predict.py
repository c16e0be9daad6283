"""Prediction on raw videos with an exported model (paddle.inference).

Each video is decoded with the evaluation reader and cut into the evaluation's clips and crops
(from the export's meta.json); the softmax of every clip is averaged, exactly as video-level
evaluation does, so a video gets the same scores from both.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from dist_train import compat
from dist_train.data.factory import load_video_clips
from dist_train.data.readers import BadSampleError
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


def video_clips(path: str, meta: dict) -> np.ndarray:
    return load_video_clips(path, meta["clip_len"], meta["crop_size"], meta["eval_short_side"],
                            meta["temporal_stride"], meta["clip_sampling"]["num_crops"])


def video_probabilities(model: InferenceModel, path: str, batch_size: int = 8) -> np.ndarray:
    """Mean softmax over every clip (and crop) of one video: float64 [num_classes]."""
    return softmax(model.logits(video_clips(path, model.meta), batch_size)).mean(axis=0)


def top_k(probs: np.ndarray, names: list[str], k: int) -> list[dict]:
    order = np.argsort(-probs, kind="stable")[:max(1, min(k, len(probs)))]
    return [{"label": names[c], "index": int(c), "score": float(probs[c])} for c in order]


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
                   on_result=None, on_error=None) -> PredictionRun:
    """Predict every video; an unreadable one is recorded (and reported) and the rest go on."""
    run = PredictionRun()
    names = model.meta["class_names"]
    for i, path in enumerate(paths):
        try:
            probs = video_probabilities(model, path, batch_size)
        except BadSampleError as e:
            run.failures.append((path, str(e)))
            if on_error:
                on_error(i, path, str(e))
            continue
        result = {"video": path, "topk": top_k(probs, names, topk)}
        run.results.append(result)
        if on_result:
            on_result(i, result)
    return run
