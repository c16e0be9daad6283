"""TEST INSTRUMENTATION: with ``DIST_TRAIN_SAMPLE_LOG=1`` every rank appends, per global step,
what it trained on to ``<run.dir>/samples.rank<R>.jsonl``: the sampler's keys and, from the batch
the loader actually delivered, a hash of every clip and its label. Tests compare runs with it
(straight against resumed, 1 rank against 2); a resume cuts the file back to its checkpoint."""
from __future__ import annotations

import collections
import hashlib
import json
import os

import numpy as np

from dist_train.atomic import atomic_write_text

SAMPLE_LOG_ENV = "DIST_TRAIN_SAMPLE_LOG"


class SampleLog:
    """Per-rank jsonl of what each global step trained on (tests compare runs): the sampler's
    keys and, from the batch the loader delivered, a hash of every clip and its label."""

    def __init__(self, run_dir: str, rank: int, resumed_step: int):
        self.path = os.path.join(run_dir, f"samples.rank{rank}.jsonl")
        kept = ""
        if os.path.exists(self.path):  # cut back to the checkpoint, as metrics.jsonl is
            with open(self.path, encoding="utf-8") as f:
                kept = "".join(line for line in f
                               if line.strip() and json.loads(line)["global_step"] <= resumed_step)
        atomic_write_text(self.path, kept)
        self.file = open(self.path, "a", encoding="utf-8")
        # (clip hashes, labels) of the batches handed out and not logged yet, oldest first (a
        # device prefetcher takes one batch ahead of the step)
        self.delivered = collections.deque()

    def recording(self, loader):
        """``loader`` (same batches, same attributes) noting each batch it hands out."""
        return _RecordingLoader(loader, self)

    def write(self, sampler, epoch: int, step: int, global_step: int) -> None:
        keys = sampler.rank_slice(sampler.global_batch(step))
        hashes, labels = self.delivered.popleft()
        self.file.write(json.dumps({"global_step": global_step, "epoch": epoch, "step": step,
                                    "indices": [int(i) for i in keys], "clips": hashes,
                                    "labels": labels}) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class _RecordingLoader:
    def __init__(self, loader, log: SampleLog):
        self._loader, self._log = loader, log

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def __len__(self):
        return len(self._loader)

    def __iter__(self):
        for batch in self._loader:
            self._log.delivered.append(
                ([hashlib.sha1(np.ascontiguousarray(c).tobytes()).hexdigest()[:16]
                  for c in np.asarray(batch[0])], [int(v) for v in np.asarray(batch[1]).reshape(-1)]))
            yield batch
