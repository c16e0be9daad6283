"""Same sample index -> identical clip under (1 rank, 0 workers) and (2 ranks, 2 workers), also
at the same step of a resumed run; evaluation shards cover every video exactly once."""
import json
import os

import numpy as np
import pytest

from dist_train.data.lists import ListEntry, write_list

from data_helpers import write_frame_folder
from helpers import launch

pytestmark = [pytest.mark.multiproc, pytest.mark.paddle2]


@pytest.fixture(scope="module")
def noise_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("mp")
    rng = np.random.default_rng(0)
    entries = []
    for v in range(18):
        n = int(rng.integers(4, 20))
        frames = rng.integers(0, 256, (n, 24, 32, 3), dtype=np.uint8)
        write_frame_folder(str(root / "frames"), f"C{v % 3}/v{v}", list(frames))
        entries.append(ListEntry(f"C{v % 3}/v{v}", n, v % 3))
    write_list(str(root / "list.txt"), entries)
    return root


def run_probe(root, out, argv_extra=(), nproc=None):
    import data_loader_probe as probe

    args = ["--root", str(root / "frames"), "--list", str(root / "list.txt"), "--out", str(out),
            *argv_extra]
    if nproc is None:
        probe.main(args)
    else:
        launch(["tests/data_loader_probe.py", *args], str(out / "log"), nproc=nproc, timeout=240)
    ranks = sorted(name for name in os.listdir(out) if name.startswith("rank"))
    return [json.load(open(os.path.join(out, name))) for name in ranks]


def test_two_ranks_two_workers_equal_one_rank_no_workers(noise_dataset, tmp_path):
    # the reference through paddle.io.DataLoader, the 2 ranks through the trainer's default
    # shared-memory loader
    (single,) = run_probe(noise_dataset, tmp_path / "one", ["--workers", "0", "--loader", "stock"])
    both = run_probe(noise_dataset, tmp_path / "two", ["--workers", "2"], nproc=2)
    assert [r["world"] for r in both] == [2, 2] and [r["rank"] for r in both] == [0, 1]
    for epoch in (0, 1):
        reference = single["epochs"][epoch]
        assert len(reference) == 16  # 18 samples, global batch 4, last batch dropped
        merged = []
        for step in range(4):  # rank 0 then rank 1 = the global batch, in order
            for r in both:
                merged.extend(rec for rec in r["epochs"][epoch] if rec[0] == step)
        assert merged == reference
        for r in both:
            assert len(r["epochs"][epoch]) == 8
    # Different epochs draw different clips for the same index.
    hashes = [{(rec[2]): rec[4] for rec in single["epochs"][e]} for e in (0, 1)]
    common = set(hashes[0]) & set(hashes[1])
    assert all(hashes[0][i] != hashes[1][i] for i in common)
    # A run resumed at step 2 of epoch 1 sees the clips of the straight run's steps 2 and 3.
    for r in both + [single]:
        straight = [rec for rec in r["epochs"][1] if rec[0] >= 2]
        assert len(straight) > 0 and r["resumed"] == straight
    # Evaluation: shards of whole videos, every video once, clips equal to the single run.
    assert sorted(map(tuple, both[0]["eval"] + both[1]["eval"])) == \
        sorted(map(tuple, single["eval"]))
    videos = [{v for v, _, _ in r["eval"]} for r in both]
    assert not videos[0] & videos[1] and videos[0] | videos[1] == set(range(18))


def test_exit_with_live_stock_workers_prints_no_worker_error():
    from helpers import run_cli

    done = run_cli(["tests/exit_cleanup_probe.py"], timeout=120)
    assert "exiting with workers alive" in done.stdout
    assert "killed by signal" not in done.stderr, done.stderr[-2000:]
