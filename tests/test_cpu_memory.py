"""train.cpu_keep_freed_memory: glibc keeps freed blocks, so a step's large tensors stop
page-faulting (dist_train/cpu_memory.py has the measurements)."""
import json
import os
import platform
import sys

import pytest

from helpers import REPO, run_in_own_group

pytestmark = [pytest.mark.paddle2,  # also run under Paddle 2.6.2 (scripts/test.sh leg 2)
              pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc malloc only")]


def probe(mode, **env):
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    environ.update(env, PYTHONPATH=REPO)
    out = run_in_own_group([sys.executable, os.path.join(REPO, "tests", "cpu_memory_probe.py"), mode],
                           120, REPO, environ)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def tuned():
    return probe("tuned")


# 8 x 4 MB touched per step: when glibc trims and unmaps, every page faults again (~4,000 faults
# a step here; with transparent huge pages as few as 16 a step), none when it keeps the memory.
# Compared relative to each other: absolute counts depend on glibc's thresholds and page sizes.
def test_freed_blocks_are_reused_without_page_faults(tuned):
    default = probe("default")
    assert default["faults_per_step"] >= 16, default  # at least 32 MB in 2 MB pages
    assert tuned["faults_per_step"] <= default["faults_per_step"] / 20, (tuned, default)
    assert "stay in the heap" in tuned["message"]


def test_the_users_malloc_settings_win(tuned):
    result = probe("tuned", MALLOC_TRIM_THRESHOLD_="131072")
    assert result["message"] == "malloc: left as set by MALLOC_TRIM_THRESHOLD_"
    assert result["faults_per_step"] >= 16 and result["faults_per_step"] >= 20 * tuned["faults_per_step"]
    result = probe("tuned", GLIBC_TUNABLES="glibc.malloc.trim_threshold=131072")
    assert result["message"] == "malloc: left as set by GLIBC_TUNABLES"
