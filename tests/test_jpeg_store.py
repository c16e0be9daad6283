"""Compressed clip store: clips equal the frame reader's for the same JPEG bytes; preparation from
H.264 videos (fps, short side, quality) and frame folders; 2 parts merged == one shot; a killed
preparation resumes to the same store; failure report and clear errors."""
import json
import os
import pickle
import signal
import shutil
import subprocess
import time

import cv2
import numpy as np
import pytest

from data_helpers import stamped_frame
from dist_train.data.datasets import EvalClipDataset, TrainClipDataset
from dist_train.data.jpeg_store import JpegStoreReader, StoreError
from dist_train.data.lists import ListEntry
from dist_train.data.prepare.jpeg_store import prepare_store, source_frame, video_jpegs
from dist_train.data.prepare.jpeg_store_index import merge_store
from dist_train.data.readers import BadSampleError, FrameFolderReader, open_video
from dist_train.data.transforms import resize_short_side
from helpers import PYTHON, REPO, child_env, run_cli

QUIET = dict(log=lambda *a: None, progress_stream=open(os.devnull, "w"))
STORE_FILES = ("index.json", "index_videos.json", "index_videos.npy", "index_frames.npy")
LENGTHS = [23, 30, 12, 27, 17, 40]  # frames at 25 fps


def write_h264(path, frames, fps=25, codec=("-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "12")):
    """Encode RGB frames with the ffmpeg that imageio-ffmpeg ships (libx264, libvpx)."""
    import imageio_ffmpeg

    os.makedirs(os.path.dirname(path), exist_ok=True)
    height, width = frames[0].shape[:2]
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo",
                    "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(fps), "-i", "-",
                    *codec, "-threads", "1", path], input=np.stack(frames).tobytes(), check=True,
                   timeout=60)


def textured(index, rng_seed):
    """A frame stamped with R = 20 + 5 * index (clear of video's black level) and texture in G
    and B (the coders have work to do)."""
    frame = stamped_frame(index, 48, 64)
    frame[..., 0] = 20 + 5 * index
    noise = np.random.default_rng([rng_seed, index]).integers(0, 60, (48, 64))
    frame[..., 1] = np.clip(frame[..., 1].astype(int) + noise, 0, 255)
    frame[..., 2] = (noise * 3).astype(np.uint8)
    return frame


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Six H.264 videos (.mp4) in two classes, and their names."""
    root = tmp_path_factory.mktemp("h264")
    names = []
    for k, length in enumerate(LENGTHS):
        name = f"{'Jump' if k % 2 else 'Run'}/v_{k:02d}"
        write_h264(str(root / "videos" / (name + ".mp4")), [textured(i, k) for i in range(length)])
        names.append(name)
    return root, str(root / "videos"), names


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """JPEG frame folders (quality 90) of textured frames, 8 videos, and their list entries."""
    root = tmp_path_factory.mktemp("frames")
    entries = []
    for k in range(8):
        video = f"{'A' if k % 2 else 'B'}/v_{k}"
        os.makedirs(root / "frames" / video)
        length = 9 + 3 * k
        for i in range(length):
            bgr = cv2.cvtColor(textured(i, 100 + k), cv2.COLOR_RGB2BGR)
            cv2.imwrite(str(root / "frames" / video / f"img_{i + 1:05d}.jpg"), bgr,
                        [cv2.IMWRITE_JPEG_QUALITY, 90])
        entries.append(ListEntry(video, length, k % 2))
    return root, str(root / "frames"), entries


def frame_stamp(frames):
    """[T, H, W, 3] frames -> the stamped index of each (see textured)."""
    return [int(round((float(frame[..., 0].mean()) - 20) / 5)) for frame in frames]


def same_store(a, b):
    """Both stores have byte-identical index files and shards."""
    for name in STORE_FILES:
        with open(os.path.join(a, name), "rb") as fa, open(os.path.join(b, name), "rb") as fb:
            assert fa.read() == fb.read(), name
    with open(os.path.join(a, "index.json")) as f:
        shards = json.load(f)["shards"]
    assert shards
    for name in shards:
        with open(os.path.join(a, name), "rb") as fa, open(os.path.join(b, name), "rb") as fb:
            assert fa.read() == fb.read(), name
    assert not [n for n in os.listdir(b) if n.endswith(".tmp")]


def all_clips(entries, reader, crop=40, short_side=48):
    """Training clips (random crop, flip; paper's crop) of 2 epochs and 3-crop test clips."""
    train = TrainClipDataset(entries, reader, clip_len=8, crop_size=crop, seed=2,
                             train_crop="random", hflip=True)
    multi = TrainClipDataset(entries, reader, clip_len=8, crop_size=24, seed=2)
    test = EvalClipDataset(entries, reader, clip_len=8, crop_size=crop, mode="test",
                           short_side=short_side, num_crops=3)
    return ([train[(e, i)] for e in range(2) for i in range(len(entries))]
            + [multi[(0, i)] for i in range(len(entries))] + [test[i] for i in range(len(test))])


def assert_same_items(a, b):
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        assert x[0].dtype == np.uint8
        np.testing.assert_array_equal(x[0], y[0])
        assert x[1:] == y[1:]


def test_fixtures_are_h264(videos):
    _, video_root, names = videos
    capture = open_video(os.path.join(video_root, names[0] + ".mp4"))
    fourcc = int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode().lower()
    capture.release()
    assert fourcc in ("h264", "avc1")


def test_fps_resampling_picks_source_frames():
    assert [source_frame(j, 25, 10) for j in range(6)] == [0, 2, 5, 7, 10, 12]
    assert [source_frame(j, 30, 15) for j in range(4)] == [0, 2, 4, 6]
    assert [source_frame(j, 10, 25) for j in range(6)] == [0, 0, 0, 1, 1, 2]  # up-sampling
    assert [source_frame(j, 25, None) for j in range(3)] == [0, 1, 2]


@pytest.mark.paddle2
def test_store_from_frame_folders_equals_frame_reader(frames, tmp_path):
    _, frame_root, entries = frames
    store_dir = str(tmp_path / "store")
    summary = prepare_store("frames", frame_root, store_dir, videos_per_shard=3, **QUIET)
    assert summary["merged"] and summary["failed"] == []
    store = JpegStoreReader(store_dir)
    folders = FrameFolderReader(frame_root)
    video = entries[3].video
    with open(os.path.join(frame_root, video, "img_00002.jpg"), "rb") as f:
        assert store.frame_bytes(video)[1] == f.read()  # the JPEG bytes are kept as they are
    for indices in ([0, 1, 2], [4, 5, 0, 4], [entries[3].num_frames - 1]):
        np.testing.assert_array_equal(store.read(video, indices), folders.read(video, indices))
    assert store.frame_size(video) == (48, 64) and store.num_frames(video) == 18
    assert_same_items(all_clips(entries, store), all_clips(entries, folders))
    capped = JpegStoreReader(store_dir)
    capped.max_open_files = 2  # 3 shards: descriptors are closed and reopened as needed
    assert_same_items(all_clips(entries, capped), all_clips(entries, folders))
    assert len(store._fds) == 3 and len(capped._fds) == 2
    clone = pickle.loads(pickle.dumps(store))  # as a loader worker receives it
    assert clone._fds == {} and len(store._fds) == 3
    np.testing.assert_array_equal(clone.read(video, [1, 2]), folders.read(video, [1, 2]))
    with pytest.raises(BadSampleError, match="frame 19 requested, the store holds 18"):
        store.read(video, [18])
    with pytest.raises(BadSampleError, match="not in the store index"):
        store.read("B/none", [0])


def test_store_from_h264_videos_at_fps_and_short_side(videos, tmp_path):
    _, video_root, names = videos
    store_dir, progress = str(tmp_path / "store"), tmp_path / "progress.txt"
    logged = []
    with open(progress, "w") as stream:
        summary = prepare_store("video", video_root, store_dir, fps=10, short_side=32,
                                quality=90, videos_per_shard=4, estimate_sample=3,
                                log=logged.append, progress_stream=stream)
    assert summary["failed"] == [] and summary["merged"]
    assert any("estimated size:" in line and "bytes per frame" in line for line in logged)
    assert "ETA" in progress.read_text() and "6/6 videos" in progress.read_text()
    store = JpegStoreReader(store_dir)
    frame_root = tmp_path / "frames"
    for name, length in zip(names, LENGTHS):
        expected = [j * 5 // 2 for j in range(length) if j * 5 // 2 < length]  # 25 -> 10 fps
        assert store.num_frames(name) == len(expected)
        assert store.frame_size(name) == (32, 43)
        clip = store.read(name, list(range(len(expected))))
        # The R stamps survive resizing and lossy coding: the kept frames are the fps choice.
        assert frame_stamp(clip) == expected
        # Each stored frame is the decoded video frame, resized and encoded at quality 90.
        capture, decoded = open_video(os.path.join(video_root, name + ".mp4")), []
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            decoded.append(bgr)
        capture.release()
        for j, data in zip(expected[:3], store.frame_bytes(name)[:3]):
            reference = cv2.imencode(".jpg", resize_short_side([decoded[j]], 32)[0],
                                     [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
            assert data == reference
        for i, data in enumerate(store.frame_bytes(name)):  # the same bytes as frame files
            os.makedirs(frame_root / name, exist_ok=True)
            (frame_root / name / f"img_{i + 1:05d}.jpg").write_bytes(data)
    entries = [ListEntry(n, store.num_frames(n), k % 2) for k, n in enumerate(names)]
    assert_same_items(all_clips(entries, store, 24, 32),
                      all_clips(entries, FrameFolderReader(str(frame_root)), 24, 32))
    info = video_jpegs(os.path.join(video_root, names[0] + ".mp4"), dict(
        store.settings, fps=None, short_side=None))
    assert len(info[0]) == LENGTHS[0] and info[1] == (48, 64)  # every frame at the source size


def test_two_parts_merged_equal_one_shot_and_other_containers(videos, tmp_path):
    _, video_root, _ = videos
    options = dict(fps=12.5, short_side=40, quality=85, videos_per_shard=2, estimate_sample=0,
                   ext=".mp4")
    one = str(tmp_path / "one")
    prepare_store("video", video_root, one, workers=2, **options, **QUIET)  # 3 shards, a pool
    parts = [str(tmp_path / "p1"), str(tmp_path / "p2")]
    first = prepare_store("video", video_root, parts[0], part=(1, 2), **options, **QUIET)
    assert not first["merged"] and first["videos_in_part"] == 4  # shards 0 and 2
    with pytest.raises(StoreError, match=r"shard\(s\) \[1\] of 3 are not prepared"):
        merge_store(parts[0], log=QUIET["log"])
    with pytest.raises(StoreError, match="index.json: missing; the store is incomplete"):
        JpegStoreReader(parts[0])
    prepare_store("video", video_root, parts[1], part=(2, 2), **options, **QUIET)
    merged = str(tmp_path / "merged")
    alone = run_cli(["data_tools/prepare_jpeg_store.py", "--merge", "--out", merged], check=False)
    assert alone.returncode == 2 and "name them with --parts" in alone.stderr
    run_cli(["data_tools/prepare_jpeg_store.py", "--merge", "--out", merged, "--parts", *parts])
    with open(os.path.join(merged, "merge_report.json")) as f:
        report = json.load(f)
    assert report["videos"] == 6 and report["failed"] == []
    same_store(one, merged)
    # Parts writing into one directory (shared storage): the last one to finish merges.
    shared = str(tmp_path / "shared")
    prepare_store("video", video_root, shared, part=(2, 2), **options, **QUIET)
    assert prepare_store("video", video_root, shared, part=(1, 2), **options, **QUIET)["merged"]
    same_store(one, shared)
    # Other settings in an existing store are refused.
    with pytest.raises(StoreError, match="planned with another settings"):
        prepare_store("video", video_root, shared, **dict(options, quality=70), **QUIET)


def test_webm_and_avi_beside_mp4_keep_their_extension(tmp_path):
    root = tmp_path / "mixed"
    frames = [textured(i, 9) for i in range(10)]
    write_h264(str(root / "C" / "a.mp4"), frames)
    write_h264(str(root / "C" / "b.avi"), frames)
    write_h264(str(root / "C" / "c.webm"), frames, codec=("-c:v", "libvpx", "-b:v", "1M"))
    store_dir = str(tmp_path / "store")
    prepare_store("video", str(root), store_dir, ext="", estimate_sample=0, **QUIET)
    store = JpegStoreReader(store_dir)
    assert len(store) == 3
    for name in ("C/a.mp4", "C/b.avi", "C/c.webm"):
        assert store.num_frames(name) == 10
        assert frame_stamp(store.read(name, [0, 9])) == [0, 9]


def _wait_for(condition, timeout, proc):
    deadline = time.time() + timeout
    while not condition():
        if proc.poll() is not None or time.time() > deadline:
            raise AssertionError(f"condition not reached (exit {proc.poll()}): "
                                 f"{proc.stderr.read() if proc.poll() is not None else ''}")
        time.sleep(0.05)


def test_killed_preparation_resumes_to_the_same_store(frames, tmp_path):
    _, frame_root, entries = frames
    reference = str(tmp_path / "reference")
    prepare_store("frames", frame_root, reference, videos_per_shard=3, short_side=40,
                  quality=80, estimate_sample=0, **QUIET)
    src = str(tmp_path / "src")
    shutil.copytree(frame_root, src)
    # A FIFO in place of a frame of shard 1 blocks the preparation there: a kill mid-shard.
    # Shards of 3 sorted videos: A/v_1 A/v_3 A/v_5 | A/v_7 B/v_0 B/v_2 | B/v_4 B/v_6
    assert sorted(e.video for e in entries)[4] == "B/v_0"
    blocked = os.path.join(src, "B", "v_0", "img_00005.jpg")
    os.replace(blocked, blocked + ".real")
    os.mkfifo(blocked)
    store_dir = str(tmp_path / "store")
    cmd = [PYTHON, "data_tools/prepare_jpeg_store.py", "--source", "frames", "--src", src,
           "--out", store_dir, "--videos-per-shard", "3", "--short-side", "40", "--quality", "80",
           "--workers", "1"]
    proc = subprocess.Popen(cmd + ["--estimate-sample", "0"], cwd=REPO, env=child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _wait_for(lambda: os.path.exists(os.path.join(store_dir, "shard_00000.json")) and any(
            n.startswith(".shard_00001.jpgs.") for n in os.listdir(store_dir)), 60, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    assert not os.path.exists(os.path.join(store_dir, "index.json"))
    assert not os.path.exists(os.path.join(store_dir, "shard_00001.json"))
    os.remove(blocked)
    os.replace(blocked + ".real", blocked)
    again = run_cli(cmd[1:])
    assert "1 already done; 5 videos to prepare" in again.stdout
    same_store(reference, store_dir)


def _children(pid):
    children = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            children += [int(c) for c in f.read().split()]
    return children


def test_a_dead_worker_stops_the_run_with_a_message_and_a_rerun_resumes(frames, tmp_path):
    _, frame_root, _ = frames
    src = str(tmp_path / "src")
    shutil.copytree(frame_root, src)
    blocked = os.path.join(src, "A", "v_7", "img_00002.jpg")  # shard 1 of 3 (see above)
    os.replace(blocked, blocked + ".real")
    os.mkfifo(blocked)
    store_dir = str(tmp_path / "store")
    cmd = [PYTHON, "data_tools/prepare_jpeg_store.py", "--source", "frames", "--src", src,
           "--out", store_dir, "--videos-per-shard", "3", "--workers", "2",
           "--estimate-sample", "0"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=child_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _wait_for(lambda: any(n.startswith(".shard_00001.jpgs.") for n in os.listdir(store_dir))
                  if os.path.isdir(store_dir) else False, 60, proc)
        for child in _children(proc.pid):  # the workers (and multiprocessing's helper)
            os.kill(child, signal.SIGKILL)
        _, stderr = proc.communicate(timeout=60)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 1
    assert "a preparation worker process died" in stderr and "re-run the same command" in stderr
    os.remove(blocked)
    os.replace(blocked + ".real", blocked)
    run_cli(cmd[1:])
    reference = str(tmp_path / "reference")
    prepare_store("frames", frame_root, reference, videos_per_shard=3, estimate_sample=0, **QUIET)
    same_store(reference, store_dir)


def test_failed_videos_are_reported_and_the_exit_code_is_1(videos, tmp_path):
    _, video_root, names = videos
    src = tmp_path / "src"
    shutil.copytree(video_root, src)
    (src / "Run" / "v_empty.mp4").write_bytes(b"")
    with open(src / (names[1] + ".mp4"), "r+b") as f:
        f.truncate(600)  # a truncated H.264 file
    store_dir = str(tmp_path / "store")
    proc = run_cli(["data_tools/prepare_jpeg_store.py", "--src", str(src), "--out", store_dir,
                    "--short-side", "32", "--estimate-sample", "2"], check=False)
    assert proc.returncode == 1, proc.stderr
    assert "estimated size:" in proc.stdout and "ETA" in proc.stderr
    with open(os.path.join(store_dir, "prepare_report.json")) as f:
        report = json.load(f)
    failed = {item["video"]: item["error"] for item in report["failed"]}
    assert set(failed) == {"Run/v_empty", names[1]}
    assert "empty (zero-byte) video file" in failed["Run/v_empty"]
    assert names[1] + ".mp4" in failed[names[1]]
    store = JpegStoreReader(store_dir)
    assert len(store) == 5
    with pytest.raises(BadSampleError, match="prepare_report.json"):
        store.read(names[1], [0])
    bad = run_cli(["data_tools/prepare_jpeg_store.py", "--src", str(src), "--out", store_dir,
                   "--short-side", "48"], check=False)
    assert bad.returncode == 2 and "planned with another settings" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    shard = run_cli(["data_tools/prepare_jpeg_store.py", "--src", str(src), "--out", store_dir,
                     "--shard", "3/2"], check=False)
    assert shard.returncode == 2 and "--shard '3/2': K must be between 1 and N" in shard.stderr


def test_damaged_store_is_named(frames, tmp_path):
    _, frame_root, _ = frames
    store_dir = str(tmp_path / "store")
    prepare_store("frames", frame_root, store_dir, videos_per_shard=4, estimate_sample=0, **QUIET)
    with open(os.path.join(store_dir, "shard_00001.jpgs"), "r+b") as f:
        f.truncate(100)
    with pytest.raises(StoreError, match=r"shard_00001\.jpgs: 100 bytes, the index says"):
        JpegStoreReader(store_dir)
    os.remove(os.path.join(store_dir, "index_videos.npy"))
    with pytest.raises(StoreError, match="index arrays unreadable"):
        JpegStoreReader(store_dir)
    with pytest.raises(StoreError, match="needs data.root"):
        JpegStoreReader("")
