"""glibc malloc settings for CPU processes: keep freed memory in the heap for reuse.

Why: Paddle's CPU allocator takes every tensor from malloc and frees it after use. glibc serves
blocks above ``M_MMAP_THRESHOLD`` with a fresh mmap and unmaps them on free, and returns the
top of the heap to the system above ``M_TRIM_THRESHOLD``; setting either by hand also ends
glibc's dynamic raising of the mmap threshold. So a large activation is new zero-filled memory
at every step and each of its 4 KiB pages costs a page fault when first written; on a 1.6 MB
BatchNorm3D activation that is most of the layer's time (benchmarks/README.md).

``keep_freed_memory`` sets the mmap threshold to 32 MiB (the ceiling of glibc's own dynamic
threshold on 64-bit; larger blocks, rare on CPU, keep their mmap) and the trim threshold to
1 GiB: blocks up to 32 MiB are reused from the heap. The cost is that the process keeps its
peak heap (resident memory does not shrink between steps), the trade PyTorch's caching
allocator makes on GPU. Nothing is changed when MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_,
MALLOC_TOP_PAD_ or a ``glibc.malloc.*`` tunable in GLIBC_TUNABLES is set (the user's settings
win), or without glibc.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD = -1  # glibc malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 << 20  # DEFAULT_MMAP_THRESHOLD_MAX on 64-bit
TRIM_THRESHOLD_BYTES = 1 << 30
USER_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


def keep_freed_memory() -> str:
    """Apply the settings above to this process (and the processes it forks later); returns
    what was done, for the log."""
    user = [name for name in USER_ENV if name in os.environ]
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        user.append("GLIBC_TUNABLES")
    if user:
        return f"malloc: left as set by {', '.join(user)}"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError) as e:
        return f"malloc: not tuned (no glibc mallopt here: {e})"
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    refused = [name for name, option, value in (
        ("M_MMAP_THRESHOLD", M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
        ("M_TRIM_THRESHOLD", M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)) if not mallopt(option, value)]
    if refused:  # glibc returns 0 for a value it does not take; the other one still applies
        return f"malloc: mallopt refused {', '.join(refused)}; freed memory may still page-fault"
    return (f"malloc: freed blocks up to {MMAP_THRESHOLD_BYTES >> 20} MiB stay in the heap for "
            "reuse (fewer page faults in Paddle's CPU kernels; train.cpu_keep_freed_memory)")
