"""Compressed clip store benchmark on ONE CPU core (pinned, one OpenCV thread). Measured on
synthetic video: the project's textured moving-pattern videos (make_synthetic, 320x240, 25 fps),
re-encoded to H.264 when imageio-ffmpeg is installed (XviD otherwise; ``source_codec`` says).

Keys (clips per second: training items uint8 [3,16,112,112] + label from TrainClipDataset with
data.train_crop 'random' (a 112x112 window, no resize) and a random flip, all on the SAME JPEG
bytes: the store prepared at short side 128, quality 90):
- store_clips_per_s: JpegStoreReader (one pread per clip, then a decode per frame).
- frame_files_clips_per_s: FrameFolderReader on frame folders holding the store's JPEG bytes.
- memory_decode_bound_clips_per_s: a reader whose JPEG bytes are already in memory (a dict of
  bytes) and decoded by the store's own decode function: no I/O, no index (the bound).
- *_clips_per_cpu_s: the same measures as clips per CPU second of the benchmark process (user +
  system time, so the reads' kernel time counts): what one core of our own gives; steadier than
  wall time on a shared machine.
- store_fraction_of_memory_bound_{per_s,per_cpu_s}, store_speedup_vs_frame_files_{...}: the
  ratios of the best windows (measures take turns window by window), and ``*_median_round``
  the median over rounds of the ratio within a round (steadier under other load).
- store_read_only_clips_per_cpu_s: the store's own work per clip alone (index look-up and the
  one pread of a clip's 16 frames, no decode); store_read_overhead_us_per_clip its inverse and
  store_read_overhead_share_of_bound_clip that time over a bound clip's time: the store's
  fraction of the bound is about 1 / (1 + share), whatever the machine's load.
- prepare_videos_per_s: preparation from the videos (decode, resize to 128, encode at 90) with
  one worker, and prepare_frames_per_s the output frames per second.
- bytes_per_frame_s128_q90 / bytes_per_frame_s160_q90: store bytes / stored frames.
- size_formula: the store size of a dataset from those numbers, with a Kinetics-400-like example.
- index_load_s_300k_videos: JpegStoreReader(...) on an index of 300,000 videos x 250 frames
  (names, tables, memory maps, shard size checks; shards are sparse files).

Ends by printing ONE JSON object on the last line. ``--markdown jpeg_store.json`` prints the
table of benchmarks/README.md from a saved result.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from dist_train.data.datasets import TrainClipDataset  # noqa: E402
from dist_train.data.jpeg_store import (FORMAT, FRAME_ENDS, INDEX_NAME, VERSION,  # noqa: E402
                                        VIDEO_NAMES, VIDEO_TABLE, JpegStoreReader, decode_jpeg,
                                        shard_name)
from dist_train.data.lists import ListEntry  # noqa: E402
from dist_train.data.prepare.extract import find_videos  # noqa: E402
from dist_train.data.prepare.jpeg_store import prepare_store  # noqa: E402
from dist_train.data.prepare.synthetic import make_synthetic  # noqa: E402
from dist_train.data.readers import FrameFolderReader, _in_order  # noqa: E402

QUIET = dict(log=lambda *a: None, progress_stream=open(os.devnull, "w"))


class InMemoryJpegReader:
    """The bound: every frame's JPEG bytes held in memory, decoded like the store decodes."""

    def __init__(self, frames_by_video):
        self.frames = frames_by_video

    def read_frames(self, video, indices):
        jpegs = self.frames[video]
        decoded = {i: decode_jpeg(jpegs[i]) for i in sorted(set(indices))}
        return _in_order(decoded, indices, video)


def rates(measures, seconds, windows):
    """Per window, clips per wall second and per CPU second of this process for each
    ``name: (fn, keys)`` (``windows`` windows of seconds / windows each). Windows of the measures
    take turns, so a disturbance by other processes hits them alike; on a shared machine the
    CPU-time rate (what one core of our own gives) is the steadier one. Returns
    {name: [(wall_rate, cpu_rate) per window]}."""
    position = {name: 0 for name in measures}
    per_window = {name: [] for name in measures}
    for fn, keys in measures.values():
        fn(keys[0])  # warm-up: opens files, sizes buffers
    for _ in range(windows):
        for name, (fn, keys) in measures.items():
            done, start, start_cpu = 0, time.perf_counter(), time.process_time()
            while time.perf_counter() - start < seconds / windows:
                fn(keys[position[name] % len(keys)])
                position[name] += 1
                done += 1
            per_window[name].append((done / (time.perf_counter() - start),
                                     done / max(time.process_time() - start_cpu, 1e-9)))
    return per_window


def summarise(per_window, result):
    """Best window of each measure (wall and CPU), and the median over rounds of the store's
    ratio to the other two sources within the same round (robust to slow drifts of load)."""
    for name, windows in per_window.items():
        result[name] = max(w[0] for w in windows)
        result[name.replace("_per_s", "_per_cpu_s")] = max(w[1] for w in windows)
    store = per_window["store_clips_per_s"]
    for other, label in (("memory_decode_bound_clips_per_s", "fraction_of_memory_bound"),
                         ("frame_files_clips_per_s", "speedup_vs_frame_files")):
        for unit, k in (("per_s", 0), ("per_cpu_s", 1)):
            best = result[f"store_clips_{unit}"] / result[other.replace("per_s", unit)]
            result[f"store_{label}_{unit}"] = round(best, 3)
            rounds = [a[k] / b[k] for a, b in zip(store, per_window[other])]
            result[f"store_{label}_{unit}_median_round"] = round(float(np.median(rounds)), 3)


def to_h264(videos_root, names):
    """Re-encode the synthetic .avi files to H.264 .mp4 (None if imageio-ffmpeg is missing)."""
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    exe = imageio_ffmpeg.get_ffmpeg_exe()
    for name in names:
        subprocess.run([exe, "-y", "-loglevel", "error", "-i",
                        os.path.join(videos_root, name + ".avi"), "-c:v", "libx264", "-pix_fmt",
                        "yuv420p", "-threads", "1", os.path.join(videos_root, name + ".mp4")],
                       check=True, timeout=120)
    return ".mp4"


def write_frame_files(store, names, root):
    for name in names:
        for i, data in enumerate(store.frame_bytes(name)):
            path = os.path.join(root, name, f"img_{i + 1:05d}.jpg")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)


def index_load_seconds(tmp, videos=300_000, frames=250, shards=600):
    """Write an index of ``videos`` videos (sparse shards) and time opening a reader on it."""
    store = os.path.join(tmp, "big_index")
    os.makedirs(store)
    per_shard = videos // shards
    table = np.zeros((videos, 6), np.int64)
    v = np.arange(videos)
    table[:, 0], table[:, 1] = v // per_shard, (v % per_shard) * frames * 4000
    table[:, 2], table[:, 3], table[:, 4], table[:, 5] = v * frames, frames, 128, 171
    np.save(os.path.join(store, VIDEO_TABLE), table)
    ends = np.tile(np.arange(1, frames + 1, dtype=np.uint32) * 4000, videos)
    np.save(os.path.join(store, FRAME_ENDS), ends)
    with open(os.path.join(store, VIDEO_NAMES), "w") as f:
        json.dump([f"class name {k % 400}/video_{k:07d}_000010_000020" for k in range(videos)], f)
    size = per_shard * frames * 4000
    for s in range(shards):
        with open(os.path.join(store, shard_name(s)), "wb") as f:
            f.truncate(size)
    with open(os.path.join(store, INDEX_NAME), "w") as f:
        json.dump({"format": FORMAT, "version": VERSION, "settings": {},
                   "shards": {shard_name(s): size for s in range(shards)},
                   "num_videos": videos, "num_frames": videos * frames}, f)
    start = time.perf_counter()
    reader = JpegStoreReader(store)
    seconds = time.perf_counter() - start
    assert len(reader) == videos and reader.frame_size("class name 7/video_0000007_000010_000020")
    return seconds


def markdown(r):
    """The table of benchmarks/README.md from a result (``--markdown jpeg_store.json``)."""
    share = 100 * r["store_read_overhead_share_of_bound_clip"]
    example = r["size_formula"]["example_kinetics400_like"].split(": ", 1)[1].split(" (")[0]
    return f"""| compressed store, one core | per CPU second | per wall second |
|---|---:|---:|
| store (one pread per clip, decode per frame) | {r["store_clips_per_cpu_s"]:,.0f} | {r["store_clips_per_s"]:,.0f} |
| frame files with the same JPEG bytes | {r["frame_files_clips_per_cpu_s"]:,.0f} | {r["frame_files_clips_per_s"]:,.0f} |
| same JPEG bytes decoded from memory (bound) | {r["memory_decode_bound_clips_per_cpu_s"]:,.0f} | {r["memory_decode_bound_clips_per_s"]:,.0f} |
| store / bound: best windows; median round (target >= 0.95) | {r["store_fraction_of_memory_bound_per_cpu_s"]}; {r["store_fraction_of_memory_bound_per_cpu_s_median_round"]} | {r["store_fraction_of_memory_bound_per_s"]}; {r["store_fraction_of_memory_bound_per_s_median_round"]} |
| store / frame files: best windows; median round (target > 1) | {r["store_speedup_vs_frame_files_per_cpu_s"]}; {r["store_speedup_vs_frame_files_per_cpu_s_median_round"]} | {r["store_speedup_vs_frame_files_per_s"]}; {r["store_speedup_vs_frame_files_per_s_median_round"]} |
| the store's own work per clip (index + one pread, no decode) | {r["store_read_overhead_us_per_clip"]:.1f} us = {share:.1f}% of a bound clip | |
| preparation from H.264 videos, 1 worker (decode, resize to 128, encode q90) | {r["prepare_videos_per_s"]:.1f} videos/s, {r["prepare_frames_per_s"]:,.0f} frames/s | |
| bytes per stored frame, short side 128 / 160, quality 90 | {r["bytes_per_frame_s128_q90"]:,.0f} / {r["bytes_per_frame_s160_q90"]:,.0f} | |
| index of 300,000 videos x 250 frames: open a reader | {r["index_load_s_300k_videos"]:.2f} s | |
| Kinetics-400-like set (240,000 videos x 10 s x 25 fps), bytes per frame above | {example} | |
| the same as raw uint8 at 128x171 (the packed store) | {r["size_formula"]["raw_uint8_at_128x171_for_comparison_gb"] / 1000:.1f} TB | |
| load average (1 min) at start / end of the run | {r["machine"]["load_avg_1m_start"]:.1f} / {r["load_avg_1m_end"]:.1f} | |
"""


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--markdown":
        with open(argv[1]) as f:
            print(markdown(json.load(f)), end="")
        return 0
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=4.0, help="time per measure")
    parser.add_argument("--windows", type=int, default=8, help="windows per measure")
    parser.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: last)")
    parser.add_argument("--videos-per-class", type=int, default=5)
    args = parser.parse_args(argv)
    cpu = args.cpu if args.cpu is not None else max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    cv2.setNumThreads(1)
    result = {"machine": {"cpu_pinned": cpu, "cpus": os.cpu_count(), "opencv": cv2.__version__,
                          "python": platform.python_version(),
                          "load_avg_1m_start": os.getloadavg()[0]},
              "measured_on": "synthetic video (make_synthetic: textured moving patterns, "
                             "320x240, 25 fps); real footage compresses differently",
              "clip": "uint8 [3,16,112,112], data.train_crop random + flip, store at short "
                      "side 128, JPEG quality 90"}
    with tempfile.TemporaryDirectory(prefix="bench_jpeg_store_") as tmp:
        make_synthetic(os.path.join(tmp, "syn"), num_classes=2,
                       videos_per_class=args.videos_per_class, seed=0, height=240, width=320,
                       min_frames=40, max_frames=60)
        videos_root = os.path.join(tmp, "syn", "UCF-101")
        names = find_videos(videos_root)
        ext = to_h264(videos_root, names)
        result["source_codec"] = "H.264 (libx264 via imageio-ffmpeg)" if ext else "XviD"
        ext = ext or ".avi"
        stores = {}
        for side in (128, 160):
            stores[side] = os.path.join(tmp, f"store{side}")
            summary = prepare_store("video", videos_root, stores[side], names, short_side=side,
                                    quality=90, ext=ext, workers=1, videos_per_shard=4,
                                    estimate_sample=0, **QUIET)
            assert not summary["failed"], summary["failed"]
            with open(os.path.join(stores[side], "merge_report.json")) as f:
                merged = json.load(f)
            result[f"bytes_per_frame_s{side}_q90"] = merged["bytes_per_frame"]
            if side == 128:
                result["prepare_videos_per_s"] = summary["videos_per_s"]
                result["prepare_frames_per_s"] = merged["frames"] / summary["seconds"]
                result["videos"], result["stored_frames"] = merged["videos"], merged["frames"]
        store = JpegStoreReader(stores[128])
        write_frame_files(store, names, os.path.join(tmp, "frames"))
        memory = InMemoryJpegReader({n: store.frame_bytes(n) for n in names})
        entries = [ListEntry(n, store.num_frames(n), k % 2) for k, n in enumerate(names * 40)]
        keys = [(0, i) for i in range(len(entries))]
        readers = {"store_clips_per_s": store,
                   "frame_files_clips_per_s": FrameFolderReader(os.path.join(tmp, "frames")),
                   "memory_decode_bound_clips_per_s": memory}
        datasets = {key: TrainClipDataset(entries, reader, 16, 112, seed=0, train_crop="random")
                    for key, reader in readers.items()}
        one = datasets["store_clips_per_s"][(1, 3)][0]
        for dataset in datasets.values():  # the same clip from every source
            np.testing.assert_array_equal(dataset[(1, 3)][0], one)
        summarise(rates({key: (ds.__getitem__, keys) for key, ds in datasets.items()},
                        args.seconds, windows=args.windows), result)
        read_keys = [(e.video, list(range(e.num_frames - 16, e.num_frames))) for e in entries]
        entry_of = {e.video: store._entry(e.video) for e in entries}
        read_only = rates({"store_read_only_clips_per_s": (
            lambda k: store._read_range(k[0], entry_of[k[0]], k[1][0], k[1][-1]), read_keys)},
            1.0, windows=4)["store_read_only_clips_per_s"]
        result["store_read_only_clips_per_cpu_s"] = max(w[1] for w in read_only)
        overhead = 1 / result["store_read_only_clips_per_cpu_s"]
        result["store_read_overhead_us_per_clip"] = overhead * 1e6
        result["store_read_overhead_share_of_bound_clip"] = \
            overhead * result["memory_decode_bound_clips_per_cpu_s"]
        result["index_load_s_300k_videos"] = index_load_seconds(tmp)
    result["load_avg_1m_end"] = os.getloadavg()[0]
    b128, b160 = result["bytes_per_frame_s128_q90"], result["bytes_per_frame_s160_q90"]
    result["size_formula"] = {
        "formula": "store bytes = videos x seconds per video x fps x bytes per frame",
        "example_kinetics400_like": "240,000 videos x 10 s x 25 fps: "
                                    f"{240e3 * 10 * 25 * b128 / 1e9:.0f} GB at short side 128, "
                                    f"{240e3 * 10 * 25 * b160 / 1e9:.0f} GB at 160 (quality 90; "
                                    f"bytes per frame measured on synthetic video)",
        "raw_uint8_at_128x171_for_comparison_gb": round(240e3 * 10 * 25 * 128 * 171 * 3 / 1e9)}
    result = {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}
    for key, value in result.items():
        print(f"# {key}: {value}", file=sys.stderr)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
