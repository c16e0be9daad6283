"""Packed clip store: path-equality rules (textured synthetic videos), resume, atomicity,
verification and clear errors for damaged stores."""
import json
import os

import numpy as np
import pytest

from dist_train.data.datasets import EvalClipDataset, TrainClipDataset
from dist_train.data.prepare.extract import extract_video, find_videos
from dist_train.data.lists import ListEntry
from dist_train.data.readers import BadSampleError, FrameFolderReader, VideoReader
from dist_train.data.store import PackedStoreReader, StoreError, evict_from_page_cache
from dist_train.data.prepare.pack_store import free_space_problems, pack_store, verify_store
from dist_train.data.prepare.synthetic import make_synthetic
from dist_train.data.transforms import CropSizeError

import data_tools.pack_clips as pack_cli

pytestmark = pytest.mark.paddle2  # also run under Paddle 2.6.2 (scripts/test.sh leg 2)

JPG = "img_{:05d}.jpg"
QUIET = dict(log=lambda *a: None, progress_stream=open(os.devnull, "w"))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    make_synthetic(str(root / "syn"), num_classes=2, videos_per_class=5, seed=3, height=48,
                   width=64, min_frames=6, max_frames=22)
    videos_root = str(root / "syn" / "UCF-101")
    frames_root = str(root / "frames")
    names = find_videos(videos_root)
    counts = {}
    for video in names:  # sequential: no process pool needed for 12 tiny videos
        counts[video] = extract_video(os.path.join(videos_root, video + ".avi"),
                                      os.path.join(frames_root, video), JPG)
    entries = [ListEntry(v, counts[v], k % 2) for k, v in enumerate(names)]
    store_frames = str(root / "store_frames")
    store_video = str(root / "store_video")
    store_resized = str(root / "store_s32")
    pack_store("frames", frames_root, store_frames, workers=2, **QUIET)
    pack_store("video", videos_root, store_video, workers=1, **QUIET)
    pack_store("frames", frames_root, store_resized, short_side=32, workers=1, **QUIET)
    return dict(root=root, videos=videos_root, frames=frames_root, entries=entries,
                store_frames=store_frames, store_video=store_video, store_resized=store_resized)


CROPS = [("multiscale_corner", True), ("multiscale_corner", False), ("random", True),
         ("random", False)]


def train_clips(entries, reader, epochs=3, crop="multiscale_corner", hflip=True):
    ds = TrainClipDataset(entries, reader, clip_len=8, crop_size=24, seed=5, train_crop=crop,
                          hflip=hflip)
    return [ds[(epoch, i)] for epoch in range(epochs) for i in range(len(ds))]


def eval_clips(entries, reader, short_side=32):
    ds = EvalClipDataset(entries, reader, clip_len=8, crop_size=24, mode="test",
                         short_side=short_side, num_crops=3)
    return [ds[i] for i in range(len(ds))]


def assert_same_items(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x[0].dtype == np.uint8 and x[0].shape == y[0].shape
        np.testing.assert_array_equal(x[0], y[0])
        assert x[1:] == y[1:]


def test_content_is_textured(data):
    clip = FrameFolderReader(data["frames"], JPG).read(data["entries"][0].video, [0, 1])
    assert clip.std() > 10 and len(np.unique(clip)) > 100


@pytest.mark.parametrize("crop, hflip", CROPS)
def test_store_from_frames_equals_frame_reader_bit_exact(data, crop, hflip):
    store = PackedStoreReader(data["store_frames"])
    frames = FrameFolderReader(data["frames"], JPG)
    assert_same_items(train_clips(data["entries"], store, 3, crop, hflip),
                      train_clips(data["entries"], frames, 3, crop, hflip))
    assert_same_items(eval_clips(data["entries"], store), eval_clips(data["entries"], frames))


@pytest.mark.parametrize("crop, hflip", CROPS)
def test_store_from_videos_equals_video_reader_bit_exact(data, crop, hflip):
    store = PackedStoreReader(data["store_video"])
    video = VideoReader(data["videos"])
    assert_same_items(train_clips(data["entries"], store, 2, crop, hflip),
                      train_clips(data["entries"], video, 2, crop, hflip))
    assert_same_items(eval_clips(data["entries"], store), eval_clips(data["entries"], video))


def test_resized_store_equals_eval_path_at_that_short_side(data):
    # Same resize function as the eval path: resizing a 32-sided frame to 32 is a no-op.
    store = PackedStoreReader(data["store_resized"])
    assert store.frames(data["entries"][0].video).shape[1:] == (32, 43, 3)
    frames = FrameFolderReader(data["frames"], JPG)
    assert_same_items(eval_clips(data["entries"], store, 32), eval_clips(data["entries"], frames, 32))


@pytest.mark.parametrize("crop", ["multiscale_corner", "random"])
def test_jpeg_frames_vs_raw_video_within_tolerance(data, crop):
    """Stated tolerance: JPEG (quality 95) frames of the decoded video differ from the decoded
    video by at most 5 grey levels on average and PSNR >= 30 dB (lossy; REFERENCE §3)."""
    jpeg = train_clips(data["entries"], PackedStoreReader(data["store_frames"]), 1, crop)
    video = train_clips(data["entries"], PackedStoreReader(data["store_video"]), 1, crop)
    diffs = np.concatenate([(a[0].astype(np.float64) - b[0]).ravel() for a, b in zip(jpeg, video)])
    assert 0 < np.abs(diffs).mean() <= 5
    psnr = 10 * np.log10(255 ** 2 / np.mean(diffs ** 2))
    assert psnr >= 30, psnr


def test_reader_slices_loop_padded_indices_and_pickles_without_maps(data):
    import pickle
    store = PackedStoreReader(data["store_frames"])
    video = data["entries"][1].video
    full = store.frames(video)
    padded = store.read(video, [3, 4, 0, 3])
    np.testing.assert_array_equal(padded, full[[3, 4, 0, 3]])
    for indices in ([1, 2, 3, 4], [0, 2, 4], [5]):  # evenly spaced: a read-only view, no copy
        view = store.read(video, indices)
        np.testing.assert_array_equal(view, full[indices])
        assert np.shares_memory(view, full) and not view.flags.writeable
    assert not np.shares_memory(padded, full)
    assert store.frame_size(video) == (48, 64)
    assert store._maps
    clone = pickle.loads(pickle.dumps(store))
    assert clone._maps == {}
    np.testing.assert_array_equal(clone.read(video, [1, 2]), full[1:3])
    with pytest.raises(BadSampleError, match="not in the store index"):
        store.read("Nope/v_nope", [0])
    with pytest.raises(BadSampleError, match="frame 1000 requested"):
        store.read(video, [999])


def test_random_crop_on_a_store_smaller_than_the_crop_fails_before_training(data):
    store = PackedStoreReader(data["store_resized"])  # frames 32x43
    with pytest.raises(CropSizeError, match=r"store_s32/.*: frames are 32x43 \(HxW\), smaller "
                                             r"than the 40x40 crop.*--short-side"):
        TrainClipDataset(data["entries"], store, clip_len=8, crop_size=40, seed=0,
                         train_crop="random")
    clip, _ = TrainClipDataset(data["entries"], store, clip_len=8, crop_size=32, seed=0,
                               train_crop="random")[(0, 0)]
    assert clip.shape == (3, 8, 32, 32)


def test_resume_skips_packed_videos_and_removes_leftovers(data, tmp_path):
    names = [e.video for e in data["entries"]]
    out = str(tmp_path / "store")
    first = pack_store("frames", data["frames"], out, videos=names[:5], workers=1, **QUIET)
    assert first["videos"] == 5 and first["packed_now"] == 5
    # leftovers of a crash: a temp shard and a shard the index never recorded
    open(os.path.join(out, "shard_00000.u8.tmp-999"), "wb").write(b"x" * 10)
    open(os.path.join(out, "shard_09999.u8"), "wb").write(b"y" * 10)
    second = pack_store("frames", data["frames"], out, videos=names, workers=2, **QUIET)
    assert second["videos"] == len(names) and second["packed_now"] == len(names) - 5
    assert sorted(os.listdir(out)) == sorted(["index.json"] + list(
        json.load(open(os.path.join(out, "index.json")))["shards"]))
    third = pack_store("frames", data["frames"], out, workers=1, **QUIET)
    assert third["packed_now"] == 0 and third["store_bytes"] == second["store_bytes"]
    a, b = PackedStoreReader(out), PackedStoreReader(data["store_frames"])
    for video in names:
        np.testing.assert_array_equal(a.frames(video), b.frames(video))
    assert verify_store(out) == []
    with pytest.raises(StoreError, match="short side"):
        pack_store("frames", data["frames"], out, short_side=32, **QUIET)


def test_verify_detects_flipped_byte_and_errors_name_the_file(data, tmp_path):
    out = str(tmp_path / "store")
    pack_store("frames", data["frames"], out, workers=1, **QUIET)
    index = json.load(open(os.path.join(out, "index.json")))
    shard = sorted(index["shards"])[0]
    path = os.path.join(out, shard)
    with open(path, "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    problems = verify_store(out)
    assert len(problems) == 1 and shard in problems[0] and "checksum" in problems[0]
    assert pack_cli.main(["--out", out, "--verify"]) == 1
    # truncated shard: a clear error naming the shard when the reader opens the store
    with open(path, "r+b") as f:
        f.truncate(50)
    with pytest.raises(StoreError, match=f"{shard}.*truncated"):
        PackedStoreReader(out)
    # corrupt index
    with open(os.path.join(out, "index.json"), "w") as f:
        f.write('{"format": "dist_train.packed_store", "vers')
    with pytest.raises(StoreError, match="index.json.*corrupt"):
        PackedStoreReader(out)
    with pytest.raises(StoreError, match="index.json: missing"):
        PackedStoreReader(str(tmp_path))


def test_space_check_and_cli(data, tmp_path, capsys):
    problems = free_space_problems(str(tmp_path), 10 ** 18)
    assert problems and "GB needed" in problems[0]
    assert free_space_problems(str(tmp_path), 1) == []
    out = str(tmp_path / "cli")
    assert pack_cli.main(["--src", data["videos"], "--source", "video", "--out", out,
                          "--workers", "1", "--verify"]) == 0
    text = capsys.readouterr().out
    assert "estimated size" in text and "GB on disk" in text and "0 problem(s)" in text
    assert evict_from_page_cache(out) == sum(json.load(open(
        os.path.join(out, "index.json")))["shards"].values())


def test_factory_builds_datasets_on_the_store(data, tmp_path):
    from dist_train.data import factory
    from dist_train.data.lists import write_list
    list_path = str(tmp_path / "list.txt")
    write_list(list_path, data["entries"])
    cfg = {"data.root": data["store_frames"], "data.source": "packed", "data.train_list": list_path,
           "data.val_list": list_path, "data.test_list": None, "data.clip_len": 8,
           "data.crop_size": 24, "data.temporal_stride": 1, "data.train_crop": "multiscale_corner",
           "data.scales": [1.0, 0.5], "data.hflip": True, "data.eval_short_side": 32,
           "data.val_clips": 3, "data.test_crops": 1, "data.skip_bad_samples": False,
           "train.seed": 0}
    train = factory.build_train_dataset(cfg)
    assert isinstance(train.reader, PackedStoreReader)
    clip, label = train[(0, 3)]
    assert clip.shape == (3, 8, 24, 24) and clip.dtype == np.uint8
    val = factory.build_eval_dataset(cfg, "val")
    assert len(val) == 3 * len(data["entries"])


def test_random_crop_from_the_config_through_the_shm_loader(data, tmp_path):
    from dist_train.config import load_config
    from dist_train.data import factory
    from dist_train.data.lists import write_list
    from dist_train.data.loader import make_loader
    from dist_train.data.sampler import GlobalBatchSampler
    list_path = str(tmp_path / "list.txt")
    write_list(list_path, data["entries"])
    cfg = load_config(None, [f"data.root={data['store_resized']}", "data.source=packed",
                             f"data.train_list={list_path}", f"data.val_list={list_path}",
                             "data.clip_len=8", "data.crop_size=24", "data.train_crop=random"])
    train = factory.build_train_dataset(cfg)
    loader = make_loader(train, GlobalBatchSampler(len(train), 4, seed=0), 1)
    batches = [[t.numpy() for t in batch] for batch in loader]
    loader.close()
    assert len(batches) == len(data["entries"]) // 4
    for clips, labels in batches:
        assert clips.shape == (4, 3, 8, 24, 24) and clips.dtype == np.uint8 and clips.std() > 10
