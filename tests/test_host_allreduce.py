"""Shared-memory all-reduce of the CPU sync BN (dist_train/host_allreduce.py), on 2 ranks."""
import json
import os

import pytest

from dist_train import host_allreduce
from helpers import launch


@pytest.mark.multiproc
def test_shared_memory_sums_equal_gloo_and_leave_no_file(tmp_path):
    launch(["tests/host_allreduce_probe.py", str(tmp_path)], str(tmp_path / "log"))
    records = [json.load(open(os.path.join(tmp_path, f"rank{r}.json"))) for r in (0, 1)]
    for record in records:
        assert record["opened"] and not record["file_left"]
        assert record["mismatches"] == 0 and record["gathered_equal"]
    assert "rank(s) [1] did not arrive within 0.5 s" in records[0]["timeout_error"]


def test_one_process_or_disabled_means_no_shared_memory(monkeypatch):
    assert host_allreduce.open_host_allreduce() is None  # not distributed
    monkeypatch.setenv(host_allreduce.DISABLE_ENV, "0")
    assert not host_allreduce._supported_here()
