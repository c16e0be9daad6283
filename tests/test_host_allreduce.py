"""Shared-memory all-reduce (dist_train/dist/host_allreduce.py) on 2 ranks: the CPU sync BN's small
sums, and the gradient average of CPU data parallelism."""
import json
import os

import pytest

from dist_train.dist import host_allreduce
from helpers import launch

pytestmark = pytest.mark.paddle2  # also run under Paddle 2.6.2 (scripts/test.sh leg 2)


@pytest.mark.multiproc
def test_shared_memory_sums_equal_gloo_and_leave_no_file(tmp_path):
    launch(["tests/host_allreduce_probe.py", str(tmp_path)], str(tmp_path / "log"))
    records = [json.load(open(os.path.join(tmp_path, f"rank{r}.json"))) for r in (0, 1)]
    for record in records:
        assert record["opened"] and not record["file_left"]
        assert record["mismatches"] == 0 and record["gathered_equal"] and record["segments_equal"]
        assert record["slot_bytes"] == host_allreduce.MIN_SLOT_BYTES  # so arrays took 2-3 chunks
        assert record["average_equal"] and record["average_changed"]
        assert record["strided_gradient"]  # the case the average sums through a copy
    for record in records:  # the same error on every rank, after the same collective
        assert "parameter 'b2' has a gradient on 1 of 2 ranks" in record["unused_error"]
    assert "rank(s) [1] did not arrive within 0.5 s" in records[0]["timeout_error"]
    # rank 1 arrived 0.3 s late: rank 0 waited for it, rank 1 (last) less (no fixed upper bound:
    # a loaded machine stretches waits)
    assert records[0]["late_rank_wait_s"] >= 0.25
    assert records[1]["late_rank_wait_s"] < records[0]["late_rank_wait_s"]


def test_one_process_or_disabled_means_no_shared_memory(monkeypatch):
    assert host_allreduce.open_host_allreduce() is None  # not distributed
    assert host_allreduce.waited_seconds() is None  # so the trainer logs no sync_wait
    assert host_allreduce.gradient_average([]) is None
    monkeypatch.setenv(host_allreduce.DISABLE_ENV, "0")
    assert not host_allreduce._supported_here()


def test_slots_fit_the_budget_for_any_world_size():
    for world in (2, 3, 8, 64, 1000):
        slot = host_allreduce.slot_bytes_for(world)
        assert slot % 4096 == 0 and slot >= host_allreduce.MIN_SLOT_BYTES
        assert 2 * world * slot <= max(host_allreduce.SLOTS_BUDGET_BYTES,
                                       2 * world * host_allreduce.MIN_SLOT_BYTES)
    assert host_allreduce.slot_bytes_for(2) == 4 << 20


def test_numpy_view_shares_the_tensor_memory():
    """The gradient average writes through these views: they must alias, not copy."""
    import numpy as np
    import paddle

    from dist_train.compat import numpy_view

    for dtype in ("float32", "float64", "int64"):
        tensor = paddle.arange(12, dtype=dtype).reshape([3, 4])
        view = numpy_view(tensor)
        assert view.shape == (3, 4) and view.dtype == np.dtype(dtype) and view.flags.writeable
        view[1, 2] = 100
        view *= 2
        assert tensor.numpy()[1, 2] == 200 and tensor.numpy()[0, 1] == 2
    param = paddle.create_parameter([5], "float32")
    (param * 3.0).sum().backward()
    numpy_view(param.grad)[:] = 7.0
    assert param.grad.numpy().tolist() == [7.0] * 5
    assert numpy_view(paddle.zeros([0, 3])).shape == (0, 3)
    assert numpy_view(paddle.to_tensor(2.5)).item() == 2.5


def test_numpy_view_refuses_what_it_cannot_alias():
    import paddle

    from dist_train.compat import numpy_view

    weight = paddle.create_parameter([3, 4], "float32")
    (paddle.ones([2, 3]) @ weight).sum().backward()
    strided = weight.t()
    assert not strided.is_contiguous()  # a strided view on both Paddle versions: asserted, not assumed
    with pytest.raises(ValueError, match=r"numpy_view: w \(shape \[4, 3\]\) is not contiguous"):
        numpy_view(strided, "w")
    with pytest.raises(TypeError, match="numpy_view: b has dtype bfloat16"):
        numpy_view(paddle.ones([2]).astype("bfloat16"), "b")
