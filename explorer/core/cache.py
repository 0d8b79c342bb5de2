"""Disk cache of analysis results, keyed by a hash of everything that determines them.

The key covers checkpoint fingerprints (content hashes), parameters and CACHE_VERSION, which is
bumped whenever a change to the code changes what an analysis returns. Writes are atomic. Reads are verified:
an entry that cannot be read (truncated, corrupt) is removed with a warning and computed again.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np
import pandas as pd

from explorer.core.config import settings
from explorer.core.errors import one_line, unwritable
from explorer.core.temp import temp_file

log = logging.getLogger("explorer")
T = TypeVar("T")
# What readers of a damaged file raise: pyarrow's ArrowInvalid is a ValueError, numpy's a ValueError or an
# EOFError, a cut .npz a BadZipFile, an .npz without one of its arrays a KeyError.
UNREADABLE = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile)

CACHE_VERSION = 2


def cache_key(kind: str, **parts: object) -> str:
    payload = json.dumps({"kind": kind, "version": CACHE_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def result_path(kind: str, key: str, suffix: str) -> Path:
    return settings().results_dir / kind / f"{key}{suffix}"


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write` on a temporary file next to `path`, then rename it into place."""
    tmp = None
    try:
        tmp = temp_file(path.parent, path.name, path.suffix)
        write(Path(tmp))
        os.replace(tmp, path)
    except OSError as exc:
        raise unwritable(path, exc) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
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


def discard(path: Path, reason: object) -> None:
    """Remove a damaged cache entry, saying so: whatever needs it is computed again."""
    log.warning("removed unreadable cache entry %s (%s); it will be computed again", path, one_line(reason, 160))
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass  # a read-only cache: the entry is recomputed, and its write reports the problem


def read_verified(path: Path, read: Callable[[Path], T]) -> T | None:
    """`read(path)`, or None when there is no entry or it cannot be read (then it is removed)."""
    if not path.exists():
        return None
    try:
        return read(path)
    except UNREADABLE as exc:
        discard(path, exc)
        return None


def cached_frame(kind: str, key: str, compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    path = result_path(kind, key, ".parquet")
    frame = read_verified(path, pd.read_parquet)
    if frame is None:
        frame = compute()
        write_frame(path, frame)
    return frame


def cached_json(kind: str, key: str, compute: Callable[[], dict]) -> dict:
    path = result_path(kind, key, ".json")
    data = read_verified(path, lambda p: json.loads(p.read_text()))
    if data is None:
        data = compute()
        write_json(path, data)
    return data
