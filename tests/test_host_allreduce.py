"""Shared-memory all-reduce (dist_train/host_allreduce.py) on 2 ranks: the CPU sync BN's small
sums, and the gradient average of CPU data parallelism."""
import json
import os

import pytest

from dist_train import host_allreduce
from helpers import launch

pytestmark = pytest.mark.paddle2  # also run under Paddle 2.6.2 (scripts/test.sh leg 2)


@pytest.mark.multiproc
def test_shared_memory_sums_equal_gloo_and_leave_no_file(tmp_path):
    launch(["tests/host_allreduce_probe.py", str(tmp_path)], str(tmp_path / "log"))
    records = [json.load(open(os.path.join(tmp_path, f"rank{r}.json"))) for r in (0, 1)]
    for record in records:
        assert record["opened"] and not record["file_left"]
        assert record["mismatches"] == 0 and record["gathered_equal"]
        assert record["slot_bytes"] == host_allreduce.MIN_SLOT_BYTES  # so arrays took 2-3 chunks
        assert record["average_equal"] and record["average_changed"]
    for record in records:  # the same error on every rank, after the same collective
        assert "parameter 'b2' has a gradient on 1 of 2 ranks" in record["unused_error"]
    assert "rank(s) [1] did not arrive within 0.5 s" in records[0]["timeout_error"]


def test_one_process_or_disabled_means_no_shared_memory(monkeypatch):
    assert host_allreduce.open_host_allreduce() is None  # not distributed
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
