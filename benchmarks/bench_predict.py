"""predict.py on long raw videos: wall time, peak RSS and where the time goes.

Exports a ResNet-18 (101 classes, random weights; the default 16x112x112 input, short side 112)
once with 1 crop and once with 3 crops per clip, writes synthetic videos (textured scenes
panning with noise, MPEG-4 Part 2 in .mp4, 30 fps) at 720p and 1080p for each --seconds, then
runs ``python dist_train/predict.py --model M --video V --json`` (default --batch-size 8,
Paddle's default CPU threads) once per (video, crops) as a child process.

Keys of each entry of ``cases``:
- resolution, video_seconds, frames (decoded), crops, clips, items (clips x crops: model inputs)
- wall_s: the child's wall time (start of the interpreter to exit: imports, model load, video)
- peak_rss_mb: the child's peak resident memory (``wait4``'s ru_maxrss), Paddle included
- decode_s, resize_s, crop_s, model_s: predict.py's own split of the video's time (``seconds``
  of its --json record): the codec (grab + retrieve), short-side resize + BGR -> RGB of the
  sampled frames, cutting crops into clips, paddle.inference runs; video_s their enclosing total
- startup_s: wall_s - video_s (interpreter, imports, predictor creation)
- model_ms_per_item: model_s / items

Ends by printing ONE JSON object on the last line. ``--markdown FILE`` prints the table of a
saved result instead (benchmarks/README.md).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESOLUTIONS = {"720p": (1280, 720), "1080p": (1920, 1080)}
FPS = 30


def write_video(path: str, width: int, height: int, seconds: float) -> int:
    """A textured scene panning 6 px a frame with a noisy band (so frames differ in detail)."""
    rng = np.random.default_rng(0)
    scene = cv2.resize(rng.integers(0, 256, (height // 24, width // 12, 3), dtype=np.uint8),
                       (2 * width, height), interpolation=cv2.INTER_CUBIC)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), FPS, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path} (mp4v)")
    count = int(round(seconds * FPS))
    band = slice(height // 3, height // 3 + height // 8)
    for t in range(count):
        x = (6 * t) % width
        frame = np.ascontiguousarray(scene[:, x:x + width])
        frame[band] = np.clip(frame[band].astype(np.int16)
                              + rng.integers(-12, 13, frame[band].shape, dtype=np.int16),
                              0, 255).astype(np.uint8)
        writer.write(frame)
    writer.release()
    return count


def export_models(work: str) -> dict[int, str]:
    """ResNet-18, 101 classes, random weights: one export per crop count."""
    import paddle

    from dist_train.config import load_config
    from dist_train.deploy.export import export_model
    from dist_train.models.from_config import build_eval_model

    missing = os.path.join(work, "no_list.txt")  # class names fall back to class_<i>
    lists = [f"data.{k}_list={missing}" for k in ("train", "val", "test")]
    paddle.seed(0)
    weights = os.path.join(work, "r18.pdparams")
    cfg = load_config(None, ["model.name=resnet-18", "model.num_classes=101", *lists])
    paddle.save(build_eval_model(cfg).network.state_dict(), weights)
    return {crops: export_model(load_config(None, ["model.name=resnet-18",
                                                   "model.num_classes=101", *lists,
                                                   f"data.test_crops={crops}"]),
                                weights, os.path.join(work, f"export_{crops}crop"))
            for crops in (1, 3)}


def run_predict(model_dir: str, video: str) -> tuple[dict, float, float]:
    """(the --json record, wall seconds, peak RSS in MB) of one predict.py child."""
    cmd = [sys.executable, os.path.join(REPO, "dist_train", "predict.py"), "--model", model_dir,
           "--video", video, "--json"]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"predict.py failed ({proc.returncode}): {stderr[-2000:]}")
    return json.loads(stdout.splitlines()[-1]), wall, usage.ru_maxrss / 1024


def markdown(result: dict) -> str:
    rows = ["| video | crops | clips x crops | wall (s) | peak RSS (MB) | decode (s) | resize (s) "
            "| model (s) | model ms / item |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in result["cases"]:
        rows.append(f"| {c['resolution']} {c['video_seconds']:g} s ({c['frames']} frames) | "
                    f"{c['crops']} | {c['items']} | {c['wall_s']:.1f} | {c['peak_rss_mb']:,.0f} | "
                    f"{c['decode_s']:.1f} | {c['resize_s']:.2f} | {c['model_s']:.1f} | "
                    f"{c['model_ms_per_item']:.0f} |")
    return "\n".join(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[10, 60],
                        help="video lengths (default 10 and 60)")
    parser.add_argument("--resolutions", nargs="+", default=list(RESOLUTIONS),
                        choices=list(RESOLUTIONS))
    parser.add_argument("--crops", type=int, nargs="+", default=[1, 3], choices=(1, 3))
    parser.add_argument("--work", help="directory for the videos and exports (default: a "
                                       "temporary one, removed at the end)")
    parser.add_argument("--markdown", metavar="FILE", help="print the table of a saved result")
    args = parser.parse_args(argv)
    if args.markdown:
        with open(args.markdown, encoding="utf-8") as f:
            print(markdown(json.load(f)["bench_predict"]))
        return
    work = args.work or tempfile.mkdtemp(prefix="bench_predict_")
    os.makedirs(work, exist_ok=True)
    try:
        exports = export_models(work)
        cases = []
        for resolution in args.resolutions:
            for seconds in args.seconds:
                video = os.path.join(work, f"{resolution}_{seconds:g}s.mp4")
                write_video(video, *RESOLUTIONS[resolution], seconds)
                for crops in args.crops:
                    record, wall, peak = run_predict(exports[crops], video)
                    split = record["seconds"]
                    items = record["num_clips"] * crops
                    cases.append({
                        "resolution": resolution, "video_seconds": seconds,
                        "frames": record["num_frames"], "crops": crops,
                        "clips": record["num_clips"], "items": items,
                        "wall_s": round(wall, 2), "peak_rss_mb": round(peak, 1),
                        "decode_s": split["decode"], "resize_s": split["resize"],
                        "crop_s": split["crop"], "model_s": split["model"],
                        "video_s": split["total"], "startup_s": round(wall - split["total"], 2),
                        "model_ms_per_item": round(1000 * split["model"] / items, 1)})
                    print(json.dumps(cases[-1]), file=sys.stderr, flush=True)
                os.unlink(video)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    import paddle

    print(json.dumps({"bench_predict": {
        "cases": cases, "model": "resnet-18, 101 classes, 16x112x112, batch 8",
        "video": f"synthetic, mp4v, {FPS} fps", "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(), "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
        "opencv": cv2.__version__, "paddle": paddle.__version__,
        "date": time.strftime("%Y-%m-%d")}}))


if __name__ == "__main__":
    main()
