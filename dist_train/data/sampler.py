"""Global-batch sampler for training and whole-video sharding for evaluation.

Training: a permutation of the samples from ``numpy.random.default_rng([seed, epoch])``; global
batch b is ``perm[b*G:(b+1)*G]``; rank r always takes the contiguous slice
``[r*G/W:(r+1)*G/W]`` of it. Together with datasets whose draws depend only on
``(seed, epoch, index)`` this makes the clips of a global step independent of the number of
ranks and loader workers, and lets a resumed run start at any global step.

Evaluation: whole videos per rank (contiguous blocks), disjoint, covering every video once, no
padding. Ranks may therefore run different numbers of eval batches: gather results once at the
end, never all-reduce per batch.
"""
import numpy as np


class GlobalBatchSampler:
    """Yields this rank's keys ``[(epoch, index), ...]`` for each remaining global step.

    ``drop_last=True`` (training) drops the last incomplete global batch. ``drop_last=False``
    keeps every sample: the last, smaller batch is split equally across the ranks, so its size
    ``num_samples % global_batch_size`` must be a multiple of ``world_size``; otherwise the
    constructor raises ValueError instead of silently dropping the remainder.
    """

    def __init__(self, num_samples, global_batch_size, rank=0, world_size=1, seed=0, epoch=0,
                 start_step=0, drop_last=True):
        if global_batch_size < 1 or world_size < 1:
            raise ValueError("global_batch_size and world_size must be >= 1")
        if global_batch_size % world_size:
            raise ValueError(f"train.batch_size {global_batch_size} is not divisible by the "
                             f"world size {world_size}: choose a multiple of it")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        if num_samples < 1:
            raise ValueError("the dataset is empty")
        self.num_samples = int(num_samples)
        self.global_batch_size = int(global_batch_size)
        self.rank, self.world_size = int(rank), int(world_size)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        rest = self.num_samples % self.global_batch_size
        if not self.drop_last and rest % self.world_size:
            raise ValueError(
                f"drop_last=False keeps every sample, but the last global batch of {num_samples} "
                f"samples in batches of {global_batch_size} holds {rest}, which {world_size} ranks "
                f"cannot share equally: use drop_last=True, or a sample count whose remainder is "
                f"a multiple of {world_size}")
        self.epoch = int(epoch)
        self.start_step = int(start_step)
        if self.start_step < 0 or self.start_step > self.steps_per_epoch:
            raise ValueError(f"start_step {start_step} outside 0..{self.steps_per_epoch}")

    @property
    def steps_per_epoch(self):
        full, rest = divmod(self.num_samples, self.global_batch_size)
        return full + 1 if rest and not self.drop_last else full

    def set_epoch(self, epoch, start_step=0):
        self.epoch = int(epoch)
        self.start_step = int(start_step)

    def permutation(self):
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.num_samples)

    def global_batch(self, step, perm=None):
        perm = self.permutation() if perm is None else perm
        return perm[step * self.global_batch_size:(step + 1) * self.global_batch_size]

    def rank_slice(self, batch):
        share = len(batch) // self.world_size
        return batch[self.rank * share:(self.rank + 1) * share]

    def __iter__(self):
        perm = self.permutation()
        for step in range(self.start_step, self.steps_per_epoch):
            yield [(self.epoch, int(i)) for i in self.rank_slice(self.global_batch(step, perm))]

    def __len__(self):
        return self.steps_per_epoch - self.start_step


def shard_videos(num_videos, rank, world_size):
    """Contiguous block of whole videos for ``rank``: disjoint, covering all, no padding."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world size {world_size}")
    return range(rank * num_videos // world_size, (rank + 1) * num_videos // world_size)


class EvalBatchSampler:
    """Batches (``batch_size`` per rank) of this rank's item indices of an eval dataset.

    ``dataset`` needs ``video_clip_ranges`` (list of (begin, end) per video). The last batch
    may be smaller; a rank with no videos yields nothing.
    """

    def __init__(self, dataset, batch_size, rank=0, world_size=1):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.batch_size = int(batch_size)
        ranges = dataset.video_clip_ranges
        self.videos = shard_videos(len(ranges), rank, world_size)
        self.indices = [i for v in self.videos for i in range(*ranges[v])]

    def __iter__(self):
        for b in range(0, len(self.indices), self.batch_size):
            yield self.indices[b:b + self.batch_size]

    def __len__(self):
        return -(-len(self.indices) // self.batch_size)
