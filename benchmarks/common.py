"""Shared by the benchmark scripts: a fresh cache per measurement, timing, and where results go."""
from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "families" / "demo.toml"
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))


@contextmanager
def fresh_cache():
    """A private, empty EXPLORER_CACHE_DIR (checkpoint fingerprints stay memoised in the real one)."""
    old = os.environ.get("EXPLORER_CACHE_DIR")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["EXPLORER_CACHE_DIR"] = tmp
        try:
            yield Path(tmp)
        finally:
            if old is None:
                os.environ.pop("EXPLORER_CACHE_DIR")
            else:
                os.environ["EXPLORER_CACHE_DIR"] = old


def timed(fn, repeat: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def save(name: str, results: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    results = {"date": date.today().isoformat(), "machine": f"{platform.processor() or platform.machine()}, "
               f"{len(os.sched_getaffinity(0))} cores", **results}
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))
