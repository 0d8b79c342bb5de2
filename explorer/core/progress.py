"""Progress for long work: a tqdm bar in the terminal, or a callback (the app's progress bar)."""
from __future__ import annotations

from typing import Callable, Iterable, Iterator, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
Callback = Callable[[float, str], None]


def track(items: Iterable[T], desc: str, total: int | None = None, callback: Callback | None = None) -> Iterator[T]:
    """Yield from `items`, reporting progress to `callback` if given, else to a tqdm bar on stderr."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if callback is None:
        yield from tqdm(items, desc=desc, total=total, leave=False, disable=None)
        return
    callback(0.0, desc)
    for done, item in enumerate(items, start=1):
        yield item
        callback(done / total if total else 1.0, desc)
