"""glibc's allocator during a weight pass.

glibc serves a block below its mmap threshold from a heap, one per thread, and keeps it there once freed for
reuse; the threshold starts at 128 KiB and rises to 32 MiB as larger blocks are freed. A weight pass makes and
frees blocks of a few MiB to a few tens (float64 row blocks, Gram matrices, updates of mid-sized tensors) on two
threads, so each thread's heap keeps 100 to 200 MB that the other cannot use, on top of the largest tensor's
working set: the demo's `sweep` peaked at 2.2x its checkpoint. While a pass runs, blocks above 4 MiB are mapped
and unmapped on their own instead; afterwards the thresholds glibc reaches by itself are set back. Mapping costs
time (fresh pages on every allocation): above 1 MiB the demo's `mso` ran 1.21x slower, above 4 MiB 1.09x, and a
quick-profile evaluation 1.32x slower above 1 MiB, so evaluation keeps glibc's own setting.
"""
from __future__ import annotations

import ctypes
import platform
import threading
from contextlib import contextmanager
from functools import cache
from typing import Iterator

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
PASS_MMAP_THRESHOLD = 4 << 20
# What glibc's own adjustment settles at once a block of 32 MiB or more has been freed (any model's logits or
# embedding): mallopt switches that adjustment off, so these are set back explicitly.
SETTLED_MMAP_THRESHOLD, SETTLED_TRIM_THRESHOLD = 32 << 20, 64 << 20

_lock = threading.Lock()
_passes = 0


@cache
def _mallopt():
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return None


@contextmanager
def mapped_blocks() -> Iterator[None]:
    """Blocks above 4 MiB mapped and returned to the system one by one while the body runs (nested and
    concurrent passes share one setting, set back when the last ends); nothing on other allocators."""
    global _passes
    mallopt = _mallopt()
    if mallopt is None:
        yield
        return
    with _lock:
        _passes += 1
        if _passes == 1:
            mallopt(M_MMAP_THRESHOLD, PASS_MMAP_THRESHOLD)
            mallopt(M_TRIM_THRESHOLD, PASS_MMAP_THRESHOLD)
    try:
        yield
    finally:
        with _lock:
            _passes -= 1
            if _passes == 0:
                mallopt(M_MMAP_THRESHOLD, SETTLED_MMAP_THRESHOLD)
                mallopt(M_TRIM_THRESHOLD, SETTLED_TRIM_THRESHOLD)
