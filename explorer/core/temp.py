"""Temporary files and folders of writes in progress, and the removal of those left by killed runs.

Their names carry a tag of the machine and the process that writes them, so that the cache can tell the
leftovers of a run that is gone from the work of one still running (another CLI command, another app session).
"""
from __future__ import annotations

import ctypes
import errno
import hashlib
import logging
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path

from explorer.core.errors import unwritable

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
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=folder, prefix=_prefix(label), suffix=suffix)
    except OSError as exc:
        raise unwritable(folder, exc) from None
    os.close(fd)
    return Path(name)


def temp_dir(folder: Path, label: str) -> Path:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=folder, prefix=_prefix(label)))
    except OSError as exc:
        raise unwritable(folder, exc) from None


# A folder being swapped in: `.NAME.ready.tmp-…` is complete (renamed so only once written), `.NAME.old.tmp-…`
# holds what it replaces.
_SWAP = re.compile(r"\.(?P<name>.+?)\.(?P<role>ready|old)\.tmp-")
_RENAME_EXCHANGE = 2  # renameat2(2), Linux 3.15+


def _exchange(a: Path, b: Path) -> bool:
    """Swap two folders in one atomic step where the kernel can (Linux); False where it cannot."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    at_cwd = -100
    if renameat2(at_cwd, os.fsencode(a), at_cwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EPERM, errno.ENOTSUP):  # a filesystem without the exchange
        return False
    raise OSError(code, os.strerror(code), str(b))


def replace_dir(tmp: Path, target: Path) -> None:
    """Put the complete folder `tmp` (made by temp_dir) in place of `target`, so that a kill at any instant leaves
    the old folder or the new one, never neither, and a reader never finds neither.

    Where the kernel cannot exchange two folders atomically, the swap takes two renames; a kill between them leaves
    the new folder named `.NAME.ready…`, and recover_swaps finishes the swap when the cache is next opened.
    """
    ready = Path(tempfile.mkdtemp(dir=target.parent, prefix=_prefix(f"{target.name}.ready")))
    os.replace(tmp, ready)
    if not target.exists():
        os.replace(ready, target)
        return
    if _exchange(ready, target):
        shutil.rmtree(ready, ignore_errors=True)  # now the old folder
        return
    old = temp_dir(target.parent, f"{target.name}.old")
    os.replace(target, old)
    os.replace(ready, target)
    shutil.rmtree(old, ignore_errors=True)


def recover_swaps(folder: Path) -> list[Path]:
    """Finish the folder swaps that runs now gone left half done: where `NAME` is missing, put back the complete new
    folder (`.NAME.ready…`), else the old one. Returns the folders restored."""
    try:
        stale = [p for p in folder.iterdir() if p.is_dir() and is_stale(p.name, "families")]
    except OSError:
        return []
    candidates: dict[str, list[Path]] = {}
    for entry in stale:
        match = _SWAP.match(entry.name)
        if match:
            candidates.setdefault(match["name"], []).append(entry)
    restored = []
    for name, entries in candidates.items():
        target = folder / name
        if target.exists():
            continue
        ready = [e for e in entries if _SWAP.match(e.name)["role"] == "ready"]
        chosen = max(ready or entries, key=lambda e: e.stat().st_mtime)
        try:
            os.replace(chosen, target)
        except OSError:
            continue
        log.warning("restored %s, which a run killed while replacing it had left as %s", target, chosen.name)
        restored.append(target)
    return restored


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
    """Delete the stale temporary entries in the folders where the cache writes them, after finishing the swaps of
    results that killed runs left half done; return what was removed."""
    recover_swaps(cache_dir / "families")
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
