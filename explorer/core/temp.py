"""Temporary files and folders of writes in progress, and the removal of those left by killed runs.

Their names carry a tag of the machine and the process that writes them, so that the cache can tell the
leftovers of a run that is gone from the work of one still running (another CLI command, another app session).
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path

log = logging.getLogger("explorer")

_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]
_TAG = re.compile(r"\.tmp-([0-9a-f]{6})-(\d+)-")
_RANDOM = r"[a-z0-9_]{8}"
# Untagged temporary names that earlier versions wrote, per folder of the cache.
_UNTAGGED = {"": rf"\.fingerprints\.json\.{_RANDOM}", "bases": rf"\.(align|task)\.{_RANDOM}",
             "results": rf"\.[0-9a-f]{{24}}\.\w+\.{_RANDOM}\.\w+", "families": rf"\.[A-Za-z0-9][\w.-]*\.({_RANDOM}|old)",
             "models": rf"\.gguf-.+\.{_RANDOM}"}


def _prefix(label: str) -> str:
    return f".{label}.tmp-{_HOST}-{os.getpid()}-"


def temp_file(folder: Path, label: str, suffix: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=folder, prefix=_prefix(label), suffix=suffix)
    os.close(fd)
    return Path(name)


def temp_dir(folder: Path, label: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=folder, prefix=_prefix(label)))


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def is_stale(name: str, area: str) -> bool:
    """A temporary entry of a process of this machine that has ended, or an untagged one of an earlier version;
    `area` is the cache folder it lies in ("" for the cache's own folder, "results" for any results folder)."""
    if not name.startswith("."):
        return False
    match = _TAG.search(name)
    if match is None:
        return re.fullmatch(_UNTAGGED[area], name) is not None
    return match.group(1) == _HOST and not _running(int(match.group(2)))


def remove_stale(cache_dir: Path) -> list[Path]:
    """Delete the stale temporary entries in the folders where the cache writes them; return what was removed."""
    folders = [(cache_dir / area, area) for area in ("", "bases", "families", "models")]
    try:
        folders += [(p, "results") for p in (cache_dir / "results").iterdir() if p.is_dir()]
    except OSError:
        pass
    removed = []
    for folder, area in folders:
        try:
            entries = [p for p in folder.iterdir() if is_stale(p.name, area)]
        except OSError:
            continue
        for entry in entries:
            try:
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
            except OSError:
                continue  # a read-only cache keeps its leftovers; they harm nothing
            removed.append(entry)
    if removed:
        log.warning("removed %d temporary file(s) left in %s by interrupted runs", len(removed), cache_dir)
    return removed
