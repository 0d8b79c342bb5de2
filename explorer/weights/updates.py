"""The updates of a family, read one tensor at a time: alignment = aligned - base, task = member - aligned."""
from __future__ import annotations

import torch

from explorer.checkpoints.family import ALIGNED, ALIGNMENT, BASE, Family
from explorer.checkpoints.stores import LoraStore


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
        return torch.zeros(store.shape(name)) if delta is None else delta
    return store.tensor(name) - family.store(reference).tensor(name)
