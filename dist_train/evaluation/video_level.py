"""Video-level evaluation as in the paper (REFERENCE §1, evaluation protocol).

Every video is cut into non-overlapping consecutive clips covering all of it (the last one
loop-padded), optionally 3 crops per clip; the softmax of every clip (and crop) is averaged per
video and the video's prediction is the top-1 of that average. Whole videos are sharded across
ranks (no padding, no duplicates); each rank keeps one small record per video and the records
are gathered ONCE at the end, so ``num_videos`` equals the list length for any world size and
batch size. From raw video each video is decoded once, in order: loader workers take whole
videos (``_WholeVideosPerWorker``) and the reader goes on from the previous clip.

The evaluation model (uint8 clips -> logits: preprocessing + network) comes from
``models/from_config.py``, which training and export use too; the per-clip softmax averaging
here is the one prediction reuses, so the paths compute the same numbers.
"""
from __future__ import annotations

import logging
import os
import time

import numpy as np
import paddle
import paddle.nn as nn

from dist_train import dist
from dist_train.data import factory
from dist_train.data.readers import BadSampleError
from dist_train.data.workers import register_parent_cleanup, worker_init_fn
from dist_train.checkpoint import adopt_source_model, load_weights
from dist_train.models.from_config import EvalModel, build_eval_model

log = logging.getLogger("dist_train")


def load_eval_model(cfg, weights: str) -> EvalModel:
    """The evaluation model with ``weights`` (a .pdparams file or checkpoint directory); every
    key must fit (CheckpointError otherwise): evaluating with a fresh head is meaningless."""
    model = build_eval_model(cfg)
    load_weights(weights, model.network, allow_head_mismatch=False)
    model.eval()
    return model


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (the one used by evaluation and prediction alike)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def class_names(cfg) -> list[str]:
    """Class name of every label: data.class_index or the classes.txt beside the lists, else
    each label's class folder (``<Class>/<video>``); see ``data.factory.class_names``."""
    return factory.class_names(cfg)


class _FlaggedItems:
    """Dataset view whose items never raise BadSampleError: a failed item comes back as a zero
    clip with ok=False, and the main process re-reads it to raise the error naming the file.
    (Paddle's DataLoader cannot rebuild our exception from a worker process.)"""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        try:
            clip, label, video, clip_index = self.dataset[index]
            return clip, label, video, clip_index, index, True
        except BadSampleError:
            d = self.dataset
            clip = np.zeros((3, d.clip_len, d.crop_size, d.crop_size), np.uint8)
            return clip, -1, -1, -1, index, False


def deal_videos(item_counts, num_workers):
    """Whole videos per loader worker: each ``(video, items)`` in turn goes to the worker with
    the fewest items so far (lowest id on ties); every worker's videos stay in order."""
    shares, loads = [[] for _ in range(num_workers)], [0] * num_workers
    for video, items in item_counts:
        worker = loads.index(min(loads))
        shares[worker].append(video)
        loads[worker] += items
    return shares


class _WholeVideosPerWorker(paddle.io.IterableDataset):
    """This rank's items for loader workers over a sequential reader (raw video): a worker reads
    whole videos, each in order, so every video is decoded once (``VideoReader`` goes on from the
    previous clip) instead of by every worker that a batch sampler would hand one of its clips.
    Each worker batches its own items; items are flagged as by ``_FlaggedItems``."""

    def __init__(self, dataset, videos, num_workers):
        super().__init__()
        self.items = _FlaggedItems(dataset)
        ranges = dataset.video_clip_ranges
        self.shares = deal_videos([(v, ranges[v][1] - ranges[v][0]) for v in videos],
                                  num_workers)

    def __iter__(self):
        info = paddle.io.get_worker_info()
        ranges = self.items.dataset.video_clip_ranges
        for video in self.shares[0 if info is None else info.id]:
            for index in range(*ranges[video]):
                yield self.items[index]

    def num_batches(self, batch_size):
        ranges = self.items.dataset.video_clip_ranges
        return sum(-(-sum(ranges[v][1] - ranges[v][0] for v in share) // batch_size)
                   for share in self.shares)


def _eval_batches(dataset, sampler, num_workers):
    """(number of batches, iterator of (clips tensor, video indices, clip indices) per batch).

    In this process: the batches of ``sampler``. With loader workers: the same batches, or,
    over a sequential reader, each worker's batches of whole videos (``_WholeVideosPerWorker``).
    """
    if num_workers == 0:
        return len(sampler), _batches_here(dataset, sampler)
    register_parent_cleanup()
    if getattr(dataset.reader, "sequential", False):
        items = _WholeVideosPerWorker(dataset, sampler.videos, num_workers)
        loader = paddle.io.DataLoader(items, batch_size=sampler.batch_size,
                                      num_workers=num_workers, worker_init_fn=worker_init_fn)
        return items.num_batches(sampler.batch_size), _checked(dataset, loader)
    loader = paddle.io.DataLoader(_FlaggedItems(dataset), batch_sampler=sampler,
                                  num_workers=num_workers, worker_init_fn=worker_init_fn)
    return len(sampler), _checked(dataset, loader)


def _batches_here(dataset, sampler):
    # Read in this thread: Paddle's single-process DataLoader hangs when an item raises.
    for indices in sampler:
        batch = [dataset[i] for i in indices]
        yield (paddle.to_tensor(np.stack([b[0] for b in batch])), [b[2] for b in batch],
               [b[3] for b in batch])


def _checked(dataset, loader):
    for clips, _, videos, clip_indices, indices, ok in loader:
        ok = ok.numpy().astype(bool)
        if not ok.all():
            bad = int(indices.numpy()[~ok][0])
            dataset[bad]  # raises the BadSampleError naming the file
            raise BadSampleError(f"evaluation item {bad}",
                                 "unreadable in a loader worker, readable when retried")
        yield clips, videos.numpy().tolist(), clip_indices.numpy().tolist()


def _video_records(model, dataset, batch_size, rank, world_size, num_workers):
    """Per video of this rank: (mean softmax float64 [C], items, clips, correct clips)."""
    from dist_train.data.sampler import EvalBatchSampler

    sampler = EvalBatchSampler(dataset, batch_size, rank, world_size)
    prob_sums: dict[int, np.ndarray] = {}
    items: dict[int, int] = {}
    clip_sums: dict[int, dict[int, np.ndarray]] = {}
    started, done = time.monotonic(), 0
    with paddle.no_grad():
        num_batches, batches = _eval_batches(dataset, sampler, num_workers)
        for clips, videos, clip_indices in batches:
            probs = softmax(model(clips).numpy())
            for p, v, c in zip(probs, videos, clip_indices):
                prob_sums[v] = prob_sums.get(v, 0.0) + p
                items[v] = items.get(v, 0) + 1
                per_clip = clip_sums.setdefault(v, {})  # crops of a clip averaged for clip_top1
                per_clip[c // dataset.num_crops] = per_clip.get(c // dataset.num_crops, 0.0) + p
            done += 1
            if done % 20 == 0 or done == num_batches:
                log.info("eval: %d/%d batches on rank %d (%.1f s)", done, num_batches, rank,
                         time.monotonic() - started)
    labels = dataset.labels
    records = {}
    for v in sampler.videos:
        if v not in items:
            raise RuntimeError(f"video {dataset.video_names[v]} produced no clips")
        clip_preds = [int(np.argmax(s)) for s in clip_sums[v].values()]
        records[v] = (prob_sums[v] / items[v], items[v], len(clip_preds),
                      sum(p == labels[v] for p in clip_preds))
    return records


class EvalDataError(RuntimeError):
    """Some rank could not read its clips; raised on every rank after the one gather."""


def gather_records(records: dict, num_videos: int, failure: str | None = None):
    """One gather of every rank's records (or its failure); checks that the shards are disjoint
    and cover the list. Returns (records by video index, video indices per rank)."""
    per_rank = dist.all_gather_object((records, failure))
    failures = [f"rank {r}: {f}" for r, (_, f) in enumerate(per_rank) if f]
    if failures:
        raise EvalDataError("evaluation data could not be read (set data.skip_bad_samples=true "
                            "to replace unreadable clips by other clips of the same video):\n  "
                            + "\n  ".join(failures))
    merged, rank_videos = {}, []
    for part, _ in per_rank:
        rank_videos.append(sorted(part))
        for v, record in part.items():
            if v in merged:
                raise RuntimeError(f"video index {v} was evaluated on two ranks")
            merged[v] = record
    if sorted(merged) != list(range(num_videos)):
        raise RuntimeError(f"evaluated {len(merged)} of {num_videos} videos")
    return merged, rank_videos


def build_report(probs, labels, num_clips, clip_correct, video_names, names, topk) -> dict:
    """Metrics of per-video probabilities ``probs`` [V, C] (pure numpy; rank independent)."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    order = np.argsort(-probs, axis=1, kind="stable")
    pred = order[:, 0]
    top5 = min(5, probs.shape[1])
    in_top5 = (order[:, :top5] == labels[:, None]).any(axis=1)
    confusion = np.zeros((len(names), len(names)), dtype=np.int64)
    np.add.at(confusion, (labels, pred), 1)
    per_class = {}
    for c, name in enumerate(names):
        count = int(confusion[c].sum())
        per_class[name] = {"videos": count,
                           "accuracy": float(confusion[c, c] / count) if count else None}
    present = [v["accuracy"] for v in per_class.values() if v["accuracy"] is not None]
    k = min(int(topk), probs.shape[1])
    videos = [{"video": video_names[i], "label": int(labels[i]), "label_name": names[labels[i]],
               "num_clips": int(num_clips[i]),
               "topk": [{"label": int(c), "name": names[c], "score": float(probs[i, c])}
                        for c in order[i, :k]]}
              for i in range(len(labels))]
    return {
        "num_videos": int(len(labels)),
        "num_clips": int(np.sum(num_clips)),
        "video_top1": float(np.mean(pred == labels)),
        "video_top5": float(np.mean(in_top5)),
        "clip_top1": float(np.sum(clip_correct) / np.sum(num_clips)),
        "mean_class_accuracy": float(np.mean(present)),
        "per_class_accuracy": per_class,
        "videos": videos,
        "confusion_matrix": confusion.tolist(),
    }


def evaluate_videos(cfg, weights: str, out_dir: str | None = None) -> dict:
    """COLLECTIVE: video-level evaluation of ``weights`` (a .pdparams file, checkpoint, run or
    export directory) with the model of ``cfg``, whose network, normalisation and class count
    are first reconciled with what ``weights`` records; see ``evaluate_model``."""
    cfg, adopted = adopt_source_model(cfg, weights, include_classes=True)
    if adopted and dist.is_main_process():
        log.info("taken from %s: %s", weights, ", ".join(adopted))
    return evaluate_model(cfg, load_eval_model(cfg, weights), out_dir,
                          source=os.path.abspath(weights))


def evaluate_model(cfg, model: nn.Layer, out_dir: str | None = None, source: str = "") -> dict:
    """COLLECTIVE: video-level evaluation of ``model`` (uint8 clips -> logits, e.g. an EvalModel
    around the trained network) on the test list (data.test_list, else
    data.val_list) with data.test_crops crops. Rank 0 writes report.json, the confusion matrix
    (CSV + PNG) and per-video probabilities to ``out_dir`` (default ``<run.dir>/eval``). Every
    rank returns the report.
    """
    from dist_train.evaluation.report import write_eval_outputs

    rank, world_size = dist.get_rank(), dist.get_world_size()
    dataset = factory.build_eval_dataset(cfg, "test")
    names = class_names(cfg)
    started = time.monotonic()
    # A rank that cannot read a video must still join the gather, or the others would wait for
    # it until the collective timeout; the failure travels with the records instead.
    was_training = model.training
    model.eval()  # BatchNorm running statistics; the caller's mode is restored below
    try:
        records, failure = _video_records(model, dataset, cfg["eval.batch_size"], rank,
                                          world_size, cfg["data.num_workers"]), None
    except BadSampleError as e:
        records, failure = {}, str(e)
    except Exception as e:  # any failure must still reach the gather, or the other ranks hang
        records, failure = {}, f"{type(e).__name__}: {e}"
    finally:
        if was_training:
            model.train()
    merged, rank_videos = gather_records(records, dataset.num_videos, failure)
    ordered = [merged[v] for v in range(dataset.num_videos)]
    probs = np.stack([r[0] for r in ordered])
    report = build_report(probs, dataset.labels, [r[2] for r in ordered],
                          [r[3] for r in ordered], dataset.video_names, names, cfg["eval.topk"])
    report.update({"num_items": int(sum(r[1] for r in ordered)), "crops": dataset.num_crops,
                   "protocol": cfg["eval.protocol"],
                   "world_size": world_size, "batch_size_per_rank": cfg["eval.batch_size"],
                   "rank_videos": rank_videos, "weights": source,
                   "list": cfg["data.test_list"] or cfg["data.val_list"],
                   "seconds": round(time.monotonic() - started, 3)})
    write_error = None
    if rank == 0:
        out_dir = out_dir or os.path.join(cfg["run.dir"], "eval")
        try:
            write_eval_outputs(out_dir, report, probs, names)
        except Exception as e:  # raised on every rank below, not only here
            write_error = f"writing the evaluation report to {out_dir} failed: {type(e).__name__}: {e}"
    dist.barrier("videoeval_written")
    write_error = dist.broadcast_object(write_error)
    if write_error is not None:
        raise EvalDataError(write_error)
    if rank == 0:
        log.info("video-level: top1 %.4f top5 %.4f clip top1 %.4f over %d videos / %d clips "
                 "-> %s", report["video_top1"], report["video_top5"], report["clip_top1"],
                 report["num_videos"], report["num_clips"], out_dir)
    return report
