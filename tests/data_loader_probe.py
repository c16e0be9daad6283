"""Run under paddle.distributed.launch: iterate the train and eval loaders of this rank (the
trainer's default shared-memory loader; ``--loader stock`` for paddle.io.DataLoader) and write
(key, clip hash) per sample to OUT/rank<r>.json (see tests/test_data_multiproc.py)."""
import argparse
import hashlib
import json
import os

from dist_train import dist  # before paddle: Paddle 2.6 breaks PNG decoding otherwise (compat.py)
from dist_train.data.datasets import EvalClipDataset, TrainClipDataset
from dist_train.data.lists import read_list
from dist_train.data.loader import make_loader
from dist_train.data.readers import FrameFolderReader
from dist_train.data.sampler import EvalBatchSampler, GlobalBatchSampler

TEMPLATE = "img_{:05d}.png"


def clip_hash(clip):
    return hashlib.sha1(clip.tobytes()).hexdigest()


def train_records(dataset, sampler, workers, kind):
    loader = make_loader(dataset, sampler, workers, kind)
    records = []
    for step, (keys, (clips, labels)) in enumerate(zip(list(sampler), loader)):
        clips, labels = clips.numpy(), labels.numpy()
        records.extend([sampler.start_step + step, e, i, int(labels[k]), clip_hash(clips[k])]
                       for k, (e, i) in enumerate(keys))
    if hasattr(loader, "close"):
        loader.close()
    return records


def main(argv=None):
    parser = argparse.ArgumentParser()
    for name in ("--root", "--list", "--out"):
        parser.add_argument(name, required=True)
    for name, default in (("--seed", 0), ("--batch", 4), ("--workers", 2), ("--resume-step", 2)):
        parser.add_argument(name, type=int, default=default)
    parser.add_argument("--loader", default="shm", choices=["shm", "stock"])
    args = parser.parse_args(argv)
    dist.init()
    rank, world = dist.get_rank(), dist.get_world_size()
    entries = read_list(args.list)
    reader = FrameFolderReader(args.root, TEMPLATE)
    train = TrainClipDataset(entries, reader, clip_len=6, crop_size=16, seed=args.seed)
    out = {"rank": rank, "world": world, "epochs": [], "resumed": [], "eval": []}
    for epoch in (0, 1):
        sampler = GlobalBatchSampler(len(train), args.batch, rank, world, args.seed, epoch)
        out["epochs"].append(train_records(train, sampler, args.workers, args.loader))
    resumed = GlobalBatchSampler(len(train), args.batch, rank, world, args.seed, epoch=1,
                                 start_step=args.resume_step)
    out["resumed"] = train_records(train, resumed, args.workers, args.loader)
    evaluation = EvalClipDataset(entries, reader, clip_len=6, crop_size=16, mode="test")
    loader = make_loader(evaluation, EvalBatchSampler(evaluation, 3, rank, world), args.workers,
                         args.loader)
    for clips, labels, videos, clip_indices in loader:
        out["eval"].extend([int(v), int(c), clip_hash(x)] for x, v, c in
                           zip(clips.numpy(), videos.numpy(), clip_indices.numpy()))
    if hasattr(loader, "close"):
        loader.close()
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"rank{rank}.json"), "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
