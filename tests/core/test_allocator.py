"""The weight pass's allocator setting: memory freed by two threads goes back to the system."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from explorer.core import allocator

RETAINED = """
import sys, threading, torch
from explorer.core.allocator import mapped_blocks

def rss():
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) // 1024

def work():
    held = []
    for i in range(30):  # tensors of 6 to 18 MB, five alive at a time, as a weight pass's blocks
        held.append(torch.ones((i % 7 + 3) << 19))
        if len(held) > 4:
            held.pop(0)

def retained():
    before = rss()
    threads = [threading.Thread(target=work) for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    return rss() - before

if sys.argv[1] == "pass":
    with mapped_blocks():
        print(retained())
else:
    print(retained())
"""


def _retained_mb(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", RETAINED, mode], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).parents[2], check=True)
    return int(out.stdout)


@pytest.mark.skipif(allocator._mallopt() is None, reason="glibc only")
def test_a_weight_pass_returns_freed_blocks_where_glibc_would_keep_them():
    assert _retained_mb("control") > 60  # glibc's heaps keep what the threads freed
    assert _retained_mb("pass") < 20


def test_the_setting_is_made_once_and_set_back_when_the_last_pass_ends(monkeypatch):
    calls = []
    monkeypatch.setattr(allocator, "_mallopt", lambda: lambda option, value: calls.append((option, value)))
    with pytest.raises(RuntimeError):
        with allocator.mapped_blocks():
            with allocator.mapped_blocks():
                assert len(calls) == 2
            assert len(calls) == 2  # the outer pass still runs
            raise RuntimeError
    assert calls == [(allocator.M_MMAP_THRESHOLD, 4 << 20), (allocator.M_TRIM_THRESHOLD, 4 << 20),
                     (allocator.M_MMAP_THRESHOLD, 32 << 20), (allocator.M_TRIM_THRESHOLD, 64 << 20)]
