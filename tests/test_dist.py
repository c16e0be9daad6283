import json

import numpy as np
import pytest

pytestmark = pytest.mark.paddle2

from dist_train import dist
from helpers import launch


def test_single_process_fallbacks():
    dist.init()
    assert (dist.get_rank(), dist.get_world_size(), dist.get_local_rank()) == (0, 1, 0)
    assert dist.is_main_process()
    assert dist.all_reduce_sum(3) == 3.0
    assert dist.all_reduce_mean(np.array([1.0, 2.0])).tolist() == [1.0, 2.0]
    assert dist.all_gather_object({"a": 1}) == [{"a": 1}]
    assert dist.broadcast_object([1, 2]) == [1, 2]
    dist.barrier("alone", timeout_s=0.1)  # returns at once


@pytest.mark.multiproc
def test_two_ranks_under_launcher(tmp_path):
    launch(["tests/dist_probe.py", str(tmp_path)], log_dir=str(tmp_path / "log"), timeout=180)
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    for r, res in ((0, r0), (1, r1)):
        assert res["rank"] == r and res["world"] == 2 and res["local_rank"] == r
        assert res["main"] == (r == 0)
        assert res["sum_scalar"] == 3.0
        assert res["mean_scalar"] == 0.5
        assert res["sum_array"] == [[2.0, 1.0], [4.0, 10.0]]
        assert res["max_scalar"] == 3.0
        assert [g["rank"] for g in res["gathered"]] == [0, 1]
        assert [len(g["payload"]) for g in res["gathered"]] == [3, 1003]
        assert res["broadcast"] == {"from": 0, "list": [0, 1]}
    # rank 1 slept 1.5 s before the barrier: rank 0 really waited for it, rank 1 (last) less
    # (no upper bounds on waits: a loaded machine stretches them)
    assert r0["barrier_wait_s"] > 1.2
    assert r1["barrier_wait_s"] < r0["barrier_wait_s"]
    # rank 1 never reached the second barrier: rank 0 failed after its 2 s timeout, naming rank 1,
    # while rank 1 was still alive (before its 3.5 s sleep ended)
    assert r0["timeout_error"] is not None and "[1]" in r0["timeout_error"]
    assert "never" in r0["timeout_error"]
    assert r0["timeout_wait_s"] > 1.9 and r0["timeout_at"] < r1["back_at"]
    assert r1["absent"] is True
