"""Build readers and datasets from a config (``cfg["data.xxx"]`` lookups only)."""
from dist_train.data.datasets import EvalClipDataset, TrainClipDataset, sample_video_test_clips
from dist_train.data.lists import read_list
from dist_train.data.readers import FrameFolderReader, VideoReader
from dist_train.data.store import PackedStoreReader


def build_reader(cfg):
    source = cfg["data.source"]
    if source == "frames":
        return FrameFolderReader(cfg["data.root"], cfg["data.frame_template"])
    if source == "video":
        return VideoReader(cfg["data.root"], cfg["data.video_ext"])
    if source == "packed":
        return PackedStoreReader(cfg["data.root"])  # data.root is the store directory
    raise ValueError(f"unknown data.source {source!r}: use frames, video or packed")


def _num_classes(cfg):
    """model.num_classes, for the per-sample label check (None: a partial mapping, unchecked)."""
    try:
        return cfg["model.num_classes"]
    except KeyError:
        return None


def build_train_dataset(cfg):
    reader = build_reader(cfg)
    return TrainClipDataset(
        read_list(cfg["data.train_list"]), reader,
        clip_len=cfg["data.clip_len"], crop_size=cfg["data.crop_size"], seed=cfg["train.seed"],
        stride=cfg["data.temporal_stride"], train_crop=cfg["data.train_crop"],
        scales=cfg["data.scales"], hflip=cfg["data.hflip"],
        skip_bad_samples=cfg["data.skip_bad_samples"], num_classes=_num_classes(cfg))


def build_eval_dataset(cfg, mode):
    """mode 'val': data.val_clips clips per video from data.val_list, one centre crop;
    mode 'test': every clip of each video (data.test_list, else data.val_list) with
    data.test_crops crops."""
    reader = build_reader(cfg)
    if mode == "val":
        list_path, crops = cfg["data.val_list"], 1
    elif mode == "test":
        list_path, crops = cfg["data.test_list"] or cfg["data.val_list"], cfg["data.test_crops"]
    else:
        raise ValueError(f"eval mode must be 'val' or 'test', got {mode!r}")
    return EvalClipDataset(
        read_list(list_path), reader, clip_len=cfg["data.clip_len"],
        crop_size=cfg["data.crop_size"], mode=mode, val_clips=cfg["data.val_clips"],
        stride=cfg["data.temporal_stride"], short_side=cfg["data.eval_short_side"],
        num_crops=crops, skip_bad_samples=cfg["data.skip_bad_samples"],
        num_classes=_num_classes(cfg))


def load_video_clips(path, clip_len, crop_size, short_side=None, stride=1, num_crops=1):
    """Every test clip of one raw video file: uint8 [num_clips * num_crops, 3, T, H, W].

    The sampling and crops of ``build_eval_dataset(cfg, 'test')``, so prediction equals
    evaluation (clip-major order, crops innermost).
    """
    return sample_video_test_clips(path, clip_len, crop_size, short_side, stride, num_crops)
