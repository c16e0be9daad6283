"""Data-path benchmark on ONE CPU core: JPEG frames, raw video, packed store, loaders.

Generates its own synthetic UCF-101-like data (320x240 textured motion videos, XviD) in a temp
directory, extracts JPEG frames (quality 95), packs a store at short side 128 (frames 128x171),
then times training items (uint8 [3,16,112,112] + label, TrainClipDataset: temporal draw, crop,
random horizontal flip with p = 0.5) per source. Everything runs pinned to one CPU (os.sched_setaffinity) with one OpenCV/OMP
thread; loader workers inherit the pin, so "through the loader, 1 worker" means worker and
trainer share that core. Rates are the best of several windows (the least disturbed by other
processes); measures compared with each other (JPEG decode bound and JPEG clips; the packed
ones) take turns window by window. ``load_avg_1m_at`` gives os.getloadavg()[0] when each number
was taken.

Keys (clips per second unless named otherwise):
- jpeg_decode_bound_clips_per_s: plain cv2.imread (BGR, nothing else) of the same 16 JPEG frames
  the dataset reads; jpeg_clips_per_s: the dataset on the frame folders (decode to RGB + the
  paper's multiscale corner crop, resize to 112, flip); jpeg_fraction_of_bound: their ratio.
  The dataset decodes into reused buffers (dist_train/data/readers.py), which a plain imread
  does not: jpeg_decode_into_buffers_clips_per_s is that decode alone (RGB, nothing else), and
  jpeg_fraction_of_decode_into_buffers the dataset's rate over it (what crop, resize, flip
  and Python cost on top of the decode the dataset really does).
- video_clips_per_s: the same dataset on the raw videos (sequential decode from frame 0).
- packed_clips_per_s: the dataset on the store with data.train_crop 'random' (a 112x112 window
  of the stored 128x171 frames, no resize) + flip: crop and flip on uint8.
- packed_multiscale_clips_per_s: the dataset on the store with the paper's multiscale corner
  crop + bilinear resize to 112 + flip.
- packed_read_only_clips_per_s: PackedStoreReader.read of 16 frames alone (a view: no copy).
- memcpy_bound_clips_per_s: np.copyto of 16 stored frames (16x128x171x3 bytes) out of the page
  cache into a reused buffer.
- packed_cold_read_clips_per_s: after posix_fadvise(DONTNEED) on the shards (no root needed),
  one read + copy of 16 frames of every listed video (disk or device speed, not page cache).
- packed_loader_clips_per_s / packed_multiscale_loader_clips_per_s: the packed_clips_per_s /
  packed_multiscale_clips_per_s datasets through make_loader (kind shm, 1 worker, batch 16),
  counted at the trainer (on CPU its batch tensors wrap the shared slots: no copy);
  packed_stock_loader_clips_per_s: the same through the stock
  paddle.io.DataLoader (1 worker); packed_loader_speedup_vs_stock: their ratio.
- packed_{random,multiscale}_{shm,stock}_loader_{0,1}w_clips_per_s: every loader combination;
  *_1w_2cpu_*: one worker, both CPUs allowed (worker and trainer may run in parallel).

Ends by printing ONE JSON object on the last line (--json).
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
from dist_train.data.prepare.extract import extract_video, find_videos  # noqa: E402
from dist_train.data.lists import ListEntry  # noqa: E402
from dist_train.data.loader import make_loader  # noqa: E402
from dist_train.data.readers import FrameFolderReader, VideoReader, read_rgb_image  # noqa: E402
from dist_train.data.sampler import GlobalBatchSampler  # noqa: E402
from dist_train.data.sampling import clip_indices, train_start  # noqa: E402
from dist_train.data.store import PackedStoreReader, evict_from_page_cache  # noqa: E402
from dist_train.data.prepare.pack_store import pack_store  # noqa: E402
from dist_train.data.prepare.synthetic import make_synthetic  # noqa: E402

JPG = "img_{:05d}.jpg"


def make_data(tmp, videos_per_class, frames):
    make_synthetic(os.path.join(tmp, "syn"), num_classes=2, videos_per_class=videos_per_class,
                   seed=0, height=240, width=320, min_frames=frames, max_frames=frames + 20)
    videos_root = os.path.join(tmp, "syn", "UCF-101")
    names = find_videos(videos_root)
    counts = {v: extract_video(os.path.join(videos_root, v + ".avi"),
                               os.path.join(tmp, "frames", v), JPG) for v in names}
    pack_store("frames", os.path.join(tmp, "frames"), os.path.join(tmp, "store"),
               short_side=128, workers=1, log=lambda *a: None,
               progress_stream=open(os.devnull, "w"))
    # Each video listed 40 times: many loader batches per epoch.
    entries = [ListEntry(v, counts[v], k % 2) for k, v in enumerate(names * 40)]
    return videos_root, entries


def rates(measures, seconds, windows=5):
    """Clips per second of each ``name: (fn, keys)`` (fn(key) over keys, cycled): the best of
    ``windows`` windows of seconds/windows each (``seconds`` per measure). Windows of the different measures take turns,
    so a disturbance by other processes hits them alike and their ratios stay meaningful."""
    best, position = {name: 0.0 for name in measures}, {name: 0 for name in measures}
    for fn, keys in measures.values():
        fn(keys[0])  # warm-up: opens maps, imports
    for _ in range(windows):
        for name, (fn, keys) in measures.items():
            done, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds / windows:
                fn(keys[position[name] % len(keys)])
                position[name] += 1
                done += 1
            best[name] = max(best[name], done / (time.perf_counter() - start))
    return best


def loader_rate(dataset, kind, workers, batch, seconds):
    """Clips/s through a loader, best of 3 windows (run in a child process, see
    loader_rate_in_child)."""
    sampler = GlobalBatchSampler(len(dataset), batch, seed=0)
    loader = make_loader(dataset, sampler, workers, kind=kind, timeout_s=60)
    window = seconds / 3
    rates, done, start, epoch = [], 0, None, 0
    while len(rates) < 3:
        sampler.set_epoch(epoch)
        for clips, _labels in loader:
            if start is None:  # clocks start after the first batch (workers started)
                start = time.perf_counter()
                continue
            done += clips.shape[0]
            elapsed = time.perf_counter() - start
            if elapsed >= window:  # best of 3 windows, as in rates()
                rates.append(done / elapsed)
                done, start = 0, time.perf_counter()
                if len(rates) == 3:
                    break
        epoch += 1
    if hasattr(loader, "close"):
        loader.close()
    return max(rates)


def loader_rate_in_child(tmp, entries, kind, workers, batch, seconds, cpus, train_crop):
    """Each loader runs in a fresh process with a hard timeout: Paddle's DataLoader worker
    can deadlock when forked while another Paddle thread holds an allocator lock (seen here),
    and one hang must not lose the other numbers. Returns clips/s or a 'failed: ...' string."""
    spec = {"store": os.path.join(tmp, "store"), "entries": [list(e) for e in entries],
            "kind": kind, "workers": workers, "batch": batch, "seconds": seconds,
            "cpus": sorted(cpus), "train_crop": train_crop}
    try:
        done = subprocess.run([sys.executable, os.path.abspath(__file__), "--loader-child",
                               json.dumps(spec)], capture_output=True, text=True,
                              timeout=seconds + 90)
    except subprocess.TimeoutExpired:
        return "failed: hung (killed after the timeout)"
    if done.returncode != 0:
        return f"failed: exit {done.returncode}: {done.stderr.strip()[-200:]}"
    return float(done.stdout.strip().splitlines()[-1])


def loader_child(spec):
    import paddle  # noqa: F401 - imported before timing, as a trainer has it
    spec = json.loads(spec)
    os.sched_setaffinity(0, set(spec["cpus"]))
    cv2.setNumThreads(1)
    entries = [ListEntry(*e) for e in spec["entries"]]
    dataset = TrainClipDataset(entries, PackedStoreReader(spec["store"]), 16, 112, seed=0,
                               train_crop=spec["train_crop"])
    print(loader_rate(dataset, spec["kind"], spec["workers"], spec["batch"], spec["seconds"]))


def ratio(a, b):
    """a / b rounded, or None when a loader run failed (its value is a 'failed: ...' text)."""
    return round(a / b, 3) if isinstance(a, float) and isinstance(b, float) else None


def machine(cpu):
    model = "unknown"
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        model = names[0] if names else model
    return {"cpu_model": model, "cpus": os.cpu_count(), "pinned_cpu": cpu,
            "load_avg_1m": os.getloadavg()[0], "python": platform.python_version(),
            "opencv": cv2.__version__, "numpy": np.__version__}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--loader-child":
        loader_child(argv[1])
        return 0
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true", help="end with one JSON line (default)")
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    parser.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: last)")
    parser.add_argument("--videos-per-class", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args(argv)
    cpu = args.cpu if args.cpu is not None else max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    cv2.setNumThreads(1)
    result = {"machine": machine(cpu), "clip": "uint8 [3,16,112,112] + flip; frames 320x240 "
              "JPEG q95; store short side 128; crops: see the keys",
              "cold_cache_method": "posix_fadvise(POSIX_FADV_DONTNEED) on the shard files"}
    loads = result["load_avg_1m_at"] = {}

    def record(key, value):
        result[key] = value
        loads[key] = round(os.getloadavg()[0], 2)

    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        t0 = time.time()
        videos_root, entries = make_data(tmp, args.videos_per_class, 40)
        result["setup_s"] = round(time.time() - t0, 1)
        store = PackedStoreReader(os.path.join(tmp, "store"))
        frames_reader = FrameFolderReader(os.path.join(tmp, "frames"), JPG)
        datasets = {
            "jpeg": TrainClipDataset(entries, frames_reader, 16, 112, seed=0),
            "video": TrainClipDataset(entries, VideoReader(videos_root), 16, 112, seed=0),
            "packed": TrainClipDataset(entries, store, 16, 112, seed=0, train_crop="random"),
            "packed_multiscale": TrainClipDataset(entries, store, 16, 112, seed=0)}
        keys = [(0, i) for i in range(len(entries))]
        s = args.seconds

        def clip_frame_paths(key):  # the frame files the jpeg dataset reads for key (seed 0)
            entry = entries[key[1]]
            rng = np.random.default_rng([0, key[0], key[1]])
            start = train_start(rng, entry.num_frames, 16, 1)
            return [frames_reader.frame_path(entry.video, i)
                    for i in sorted(set(clip_indices(start, entry.num_frames, 16, 1)))]

        def decode_only(key):  # plain decode of those frames
            for path in clip_frame_paths(key):
                cv2.imread(path, cv2.IMREAD_COLOR)

        decode_buffers = np.empty((16, 240, 320, 3), np.uint8)

        def decode_into_buffers(key):  # the same frames decoded into reused buffers
            for path, frame_buffer in zip(clip_frame_paths(key), decode_buffers):
                if read_rgb_image(path, frame_buffer) is not frame_buffer:
                    raise RuntimeError(f"{path}: not decoded into the buffer (frame size?)")

        read_keys = [(e.video, list(range(e.num_frames - 16, e.num_frames))) for e in entries]
        buffer = np.empty((16,) + store.frames(entries[0].video).shape[1:], np.uint8)
        for group in ({"jpeg_decode_bound_clips_per_s": (decode_only, keys),
                       "jpeg_decode_into_buffers_clips_per_s": (decode_into_buffers, keys),
                       "jpeg_clips_per_s": (datasets["jpeg"].__getitem__, keys)},
                      {"video_clips_per_s": (datasets["video"].__getitem__, keys)},
                      {"packed_clips_per_s": (datasets["packed"].__getitem__, keys),
                       "packed_multiscale_clips_per_s": (datasets["packed_multiscale"].__getitem__,
                                                         keys),
                       "packed_read_only_clips_per_s": (lambda k: store.read(*k), read_keys),
                       "memcpy_bound_clips_per_s": (
                           lambda k: np.copyto(buffer, store.frames(k[0])[-16:]), read_keys)}):
            for key, value in rates(group, s).items():
                record(key, value)
        store.close()
        evicted = evict_from_page_cache(os.path.join(tmp, "store"))
        cold = PackedStoreReader(os.path.join(tmp, "store"))
        start = time.perf_counter()
        for video, indices in read_keys:
            np.copyto(buffer, cold.read(video, indices))  # a view: copying touches the pages
        record("packed_cold_read_clips_per_s", len(read_keys) / (time.perf_counter() - start))
        result["cold_cache_bytes_evicted"] = evicted
        cold.close()
        for crop, train_crop in (("random", "random"), ("multiscale", "multiscale_corner")):
            for kind in ("shm", "stock"):
                for workers in (1, 0):
                    record(f"packed_{crop}_{kind}_loader_{workers}w_clips_per_s",
                           loader_rate_in_child(tmp, entries, kind, workers, args.batch, s,
                                                {cpu}, train_crop))
        # Worker on its own core (like REFERENCE §4's per-worker figure): both CPUs allowed.
        for kind in ("shm", "stock"):
            record(f"packed_random_{kind}_loader_1w_2cpu_clips_per_s", loader_rate_in_child(
                tmp, entries, kind, 1, args.batch, s, set(range(os.cpu_count())), "random"))
    result["packed_loader_clips_per_s"] = result["packed_random_shm_loader_1w_clips_per_s"]
    result["packed_stock_loader_clips_per_s"] = result["packed_random_stock_loader_1w_clips_per_s"]
    result["packed_multiscale_loader_clips_per_s"] = \
        result["packed_multiscale_shm_loader_1w_clips_per_s"]
    result["load_avg_1m_end"] = os.getloadavg()[0]
    result = {k: round(v, 1) if isinstance(v, float) else v for k, v in result.items()}
    result["packed_loader_speedup_vs_stock"] = ratio(result["packed_loader_clips_per_s"],
                                                     result["packed_stock_loader_clips_per_s"])
    result["jpeg_fraction_of_bound"] = ratio(result["jpeg_clips_per_s"],
                                             result["jpeg_decode_bound_clips_per_s"])
    result["jpeg_fraction_of_decode_into_buffers"] = ratio(
        result["jpeg_clips_per_s"], result["jpeg_decode_into_buffers_clips_per_s"])
    for key, value in result.items():
        if key != "machine":
            print(f"# {key}: {value}", file=sys.stderr)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
