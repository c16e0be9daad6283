"""train.cpu_keep_freed_memory: glibc keeps freed blocks, so a step's large tensors stop
page-faulting (dist_train/cpu_memory.py has the measurements)."""
import json
import os
import platform
import subprocess
import sys

import pytest

from helpers import REPO

pytestmark = [pytest.mark.paddle2,  # also run under Paddle 2.6.2 (scripts/test.sh leg 2)
              pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc malloc only")]


def probe(mode, **env):
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    environ.update(env, PYTHONPATH=REPO)
    out = subprocess.run([sys.executable, os.path.join(REPO, "tests", "cpu_memory_probe.py"), mode],
                         env=environ, capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_freed_blocks_are_reused_without_page_faults():
    default, tuned = probe("default"), probe("tuned")
    # 8 x 4 MB touched per step: ~4,000 faults here (~8,000 pages, part of them huge pages)
    # when glibc trims and unmaps, none when it keeps the memory
    assert default["faults_per_step"] > 1000, default
    assert tuned["faults_per_step"] < 50, tuned
    assert "stay in the heap" in tuned["message"]


def test_the_users_malloc_settings_win():
    result = probe("tuned", MALLOC_TRIM_THRESHOLD_="131072")
    assert result["message"] == "malloc: left as set by MALLOC_TRIM_THRESHOLD_"
    assert result["faults_per_step"] > 1000
    result = probe("tuned", GLIBC_TUNABLES="glibc.malloc.trim_threshold=131072")
    assert result["message"] == "malloc: left as set by GLIBC_TUNABLES"
