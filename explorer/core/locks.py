"""An exclusive lock on a file, for the writers of one result (two `precompute --extend` runs, the app and the CLI):
each reads, changes and writes it in turn, so that no writer's results are lost."""
from __future__ import annotations

import fcntl
import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from explorer.core.errors import BusyError, OutputError

log = logging.getLogger("explorer")
POLL_S = 0.2


@contextmanager
def exclusive(path: Path, what: str, timeout_s: float = 600.0) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if need be) for the block; wait up to `timeout_s` for another
    holder, saying so, then refuse. The kernel releases the lock when its process ends, however it ends."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise OutputError(f"cannot write {what}: {path}: {exc.strerror or exc}") from None
    try:
        deadline = time.monotonic() + timeout_s
        waiting = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise BusyError(f"another run has been writing {what} for {timeout_s:.0f} s (it holds {path}); "
                                    "try again when it has finished") from None
                if not waiting:
                    log.warning("waiting for another run that is writing %s", what)
                    waiting = True
                time.sleep(POLL_S)
        yield
    finally:
        os.close(fd)
