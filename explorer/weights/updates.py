"""The updates of a family, read one tensor at a time: alignment = aligned - base, task = member - aligned."""
from __future__ import annotations

from typing import Callable

import torch

from explorer.checkpoints.family import ALIGNED, ALIGNMENT, BASE, Family
from explorer.checkpoints.stores import LoraStore
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
        update = store.tensor(name) - family.store(reference).tensor(name)
        cause = "weights near ±3.4e38 of opposite sign"
    if not torch.isfinite(update).all():
        # Both members are finite (tensor() checks them), so the update itself overflowed.
        raise NonFiniteError(f"tensor {name}: {member} minus {reference} overflows float32 ({cause}); {member} "
                             f"cannot be a fine-tune of {reference}: check both checkpoints")
    return update


def map_tensors(family: Family, work: Callable, args: tuple, desc: str, callback: Callback | None = None) -> list:
    """[work(family, index, name, *args) for every tensor], in order: one tensor at a time here, or in tasks on
    the active runner (a Ray cluster), so `work` must be a module-level function returning a small result."""
    runner = active_runner()
    if runner is not None:
        return runner.map_tensors(family, work, args, desc, callback)
    return [work(family, index, name, *args)
            for index, name in enumerate(track(family.tensor_names, desc, callback=callback))]
