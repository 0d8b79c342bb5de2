"""Where independent pieces of work run: in this process by default, or on a runner installed for one run
(explorer.distributed installs a Ray cluster's for `--ray`). Nothing here imports Ray."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, Protocol

from explorer.core.progress import Callback


class Runner(Protocol):
    """Runs per-tensor, per-member and per-point work elsewhere; every result it returns is small."""

    def map_tensors(self, family: Any, work: Callable, args: tuple, desc: str,
                    callback: Callback | None = None) -> list: ...

    def map_members(self, family: Any, work: Callable, members: list[str], args: tuple, desc: str,
                    callback: Callback | None = None) -> list: ...

    def score_points(self, family: Any, points: list[tuple[str, str, str, float]], seed: int, profile: str,
                     callback: Callback | None = None) -> list[dict]: ...


_active: list[Runner] = []


def active_runner() -> Runner | None:
    return _active[-1] if _active else None


@contextmanager
def running_on(runner: Runner) -> Iterator[Runner]:
    """Send the work of every analysis called inside the block to `runner`."""
    _active.append(runner)
    try:
        yield runner
    finally:
        _active.remove(runner)
