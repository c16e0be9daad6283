"""Build readers and datasets from a config (``cfg["data.xxx"]`` lookups only), and name the
classes of its lists."""
import os

from dist_train.data.jpeg_store import JpegStoreReader
from dist_train.data.datasets import EvalClipDataset, TrainClipDataset, sample_video_test_clips
from dist_train.data.lists import CLASS_INDEX_FILE, class_names_for_lists, read_list
from dist_train.data.readers import FrameFolderReader, VideoReader
from dist_train.data.sampling import test_protocol_crops
from dist_train.data.store import PackedStoreReader


def build_reader(cfg):
    source = cfg["data.source"]
    if source == "frames":
        return FrameFolderReader(cfg["data.root"], cfg["data.frame_template"])
    if source == "video":
        return VideoReader(cfg["data.root"], cfg["data.video_ext"])
    if source == "packed":
        return PackedStoreReader(cfg["data.root"])  # data.root is the store directory
    if source == "jpeg_store":
        return JpegStoreReader(cfg["data.root"])  # data.root is the store directory
    raise ValueError(f"unknown data.source {source!r}: use frames, video, packed or jpeg_store")


LIST_KEYS = ("data.train_list", "data.val_list", "data.test_list")


def class_index_path(cfg):
    """data.class_index, else the classes.txt beside the train, val or test list (the first
    found), else None (names come from the lists' class folders)."""
    if cfg["data.class_index"]:
        return cfg["data.class_index"]
    for key in LIST_KEYS:
        if cfg[key]:
            candidate = os.path.join(os.path.dirname(cfg[key]), CLASS_INDEX_FILE)
            if os.path.isfile(candidate):
                return candidate
    return None


def class_names(cfg):
    """The name of every label (lists.class_names_for_lists over the configured lists)."""
    return class_names_for_lists([cfg[key] for key in LIST_KEYS], cfg["model.num_classes"],
                                 class_index_path(cfg))


def build_train_dataset(cfg):
    reader = build_reader(cfg)
    return TrainClipDataset(
        read_list(cfg["data.train_list"]), reader,
        clip_len=cfg["data.clip_len"], crop_size=cfg["data.crop_size"], seed=cfg["train.seed"],
        stride=cfg["data.temporal_stride"], train_crop=cfg["data.train_crop"],
        scales=cfg["data.scales"], hflip=cfg["data.hflip"],
        skip_bad_samples=cfg["data.skip_bad_samples"])


def build_eval_dataset(cfg, mode):
    """mode 'val': data.val_clips clips per video from data.val_list, one centre crop;
    mode 'test': the clips of eval.protocol from each video (data.test_list, else
    data.val_list): every non-overlapping clip with data.test_crops crops ('paper'), or 10
    evenly spaced clips x 3 crops ('10x3')."""
    reader = build_reader(cfg)
    if mode == "val":
        list_path, crops = cfg["data.val_list"], 1
    elif mode == "test":
        list_path = cfg["data.test_list"] or cfg["data.val_list"]
        crops = test_protocol_crops(cfg["eval.protocol"], cfg["data.test_crops"])
    else:
        raise ValueError(f"eval mode must be 'val' or 'test', got {mode!r}")
    return EvalClipDataset(
        read_list(list_path), reader, clip_len=cfg["data.clip_len"],
        crop_size=cfg["data.crop_size"], mode=mode, val_clips=cfg["data.val_clips"],
        stride=cfg["data.temporal_stride"], short_side=cfg["data.eval_short_side"],
        num_crops=crops, skip_bad_samples=cfg["data.skip_bad_samples"],
        protocol=cfg["eval.protocol"] if mode == "test" else "paper")


def load_video_clips(path, clip_len, crop_size, short_side=None, stride=1, num_crops=1,
                     protocol="paper"):
    """Every test clip of one raw video file: uint8 [num_clips * num_crops, 3, T, H, W].

    The sampling and crops of ``build_eval_dataset(cfg, 'test')`` (clip-major order, crops
    innermost), from the whole decoded video held in memory: short videos and the reference
    that ``data.video_stream.iter_test_clips`` (prediction's one-pass, bounded-memory path) is
    tested against, bit for bit.
    """
    return sample_video_test_clips(path, clip_len, crop_size, short_side, stride, num_crops,
                                   protocol)
