"""Disk cache of analysis results, keyed by a hash of everything that determines them.

The key covers checkpoint fingerprints (content hashes), parameters and CACHE_VERSION, which is
bumped whenever a change to the code changes what an analysis returns. Writes are atomic.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from explorer.core.config import settings

CACHE_VERSION = 2


def cache_key(kind: str, **parts: object) -> str:
    payload = json.dumps({"kind": kind, "version": CACHE_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def result_path(kind: str, key: str, suffix: str) -> Path:
    return settings().results_dir / kind / f"{key}{suffix}"


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write` on a temporary file next to `path`, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_frame(path: Path, frame: pd.DataFrame) -> None:
    atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))


def write_npy(path: Path, array: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:  # a file object, or np.save would append ".npy" to the temporary name
            np.save(fh, array)

    atomic_write(path, write)


def write_json(path: Path, data: object) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=1, sort_keys=True, default=float)))


def cached_frame(kind: str, key: str, compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    path = result_path(kind, key, ".parquet")
    if path.exists():
        return pd.read_parquet(path)
    frame = compute()
    write_frame(path, frame)
    return frame


def cached_json(kind: str, key: str, compute: Callable[[], dict]) -> dict:
    path = result_path(kind, key, ".json")
    if path.exists():
        return json.loads(path.read_text())
    data = compute()
    write_json(path, data)
    return data
