"""The updates of a family, read one tensor at a time: alignment = aligned - base, task = member - aligned."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import torch

from explorer.checkpoints.family import ALIGNED, ALIGNMENT, BASE, Family
from explorer.checkpoints.stores import LoraStore, all_finite
from explorer.core.allocator import mapped_blocks
from explorer.core.config import settings
from explorer.core.errors import NonFiniteError
from explorer.core.progress import Callback, track
from explorer.core.runners import active_runner


def update_tensor(family: Family, update: str, name: str) -> torch.Tensor:
    """One tensor of an update as float32 on the CPU."""
    family.check_update(update)
    if update == ALIGNMENT:
        return _difference(family, ALIGNED, BASE, name)
    return _difference(family, update, ALIGNED, name)


def _difference(family: Family, member: str, reference: str, name: str) -> torch.Tensor:
    store = family.store(member)
    if isinstance(store, LoraStore) and store.parent is family.store(reference):
        # Exact and cheap: the update is the adapter's own scale * B @ A.
        delta = store.delta(name)
        update = torch.zeros(store.shape(name)) if delta is None else delta
        cause = "the adapter's scale * B @ A is beyond float32's range"
    else:
        update = store.tensor(name)
        if store.fresh_reads:  # the read is our own copy: subtract in place, the reference read a block at a time
            family.store(reference).subtract_from(name, update)
        else:
            update = update - family.store(reference).tensor(name)
        cause = "weights near ±3.4e38 of opposite sign"
    if not all_finite(update):
        # Both members are finite (tensor() checks them), so the update itself overflowed.
        raise NonFiniteError(f"tensor {name}: {member} minus {reference} overflows float32 ({cause}); {member} "
                             f"cannot be a fine-tune of {reference}: check both checkpoints")
    return update


def map_tensors(family: Family, work: Callable, args: tuple, desc: str, callback: Callback | None = None) -> list:
    """[work(family, index, name, *args) for every tensor], in order: two tensors at a time here, or in tasks on
    the active runner (a Ray cluster), so `work` must be a module-level function returning a small result."""
    runner = active_runner()
    if runner is not None:
        return runner.map_tensors(family, work, args, desc, callback)
    names = family.tensor_names
    threads = torch.get_num_threads()
    with mapped_blocks():
        if settings().device != "cpu" or threads < 2:
            return [work(family, index, name, *args)
                    for index, name in enumerate(track(names, desc, callback=callback))]
        # Two tensors at once, each on half the cores: an eigendecomposition or SVD of a few hundred rows keeps
        # only about one core busy, so two of them in parallel finish sooner than one after the other on every
        # core. At most two tensors' work is held in memory at a time.
        pool = ThreadPoolExecutor(2, thread_name_prefix="tensor")
        torch.set_num_threads(threads // 2)
        try:
            futures = [pool.submit(work, family, index, name, *args) for index, name in enumerate(names)]
            return [future.result() for future in track(futures, desc, callback=callback)]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            torch.set_num_threads(threads)
