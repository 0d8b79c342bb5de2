"""Spectra of updates: singular values, norms, effective and stable rank, energy ranks, per tensor."""
from __future__ import annotations

import numpy as np
import pandas as pd

from explorer.checkpoints.architectures import tensor_role
from explorer.checkpoints.family import ALIGNED, ALIGNMENT, BASE, Family
from explorer.core.cache import cache_key, cached_frame
from explorer.core.progress import Callback
from explorer.weights.subspaces import as_matrix, energy_rank, singular_values
from explorer.weights.updates import map_tensors, update_tensor


def spectrum_summary(values: np.ndarray) -> dict[str, float]:
    """Norm, effective rank (exp of the entropy of s / sum s), stable rank and 50/90/99% energy ranks."""
    sq = values.astype(np.float64) ** 2
    total = float(sq.sum())
    if total <= 0.0:
        return {"frobenius": 0.0, "effective_rank": 0.0, "stable_rank": 0.0, "k50": 0, "k90": 0, "k99": 0}
    p = values / values.sum()
    p = p[p > 0]
    return {
        "frobenius": total**0.5,
        "effective_rank": float(np.exp(-(p * np.log(p)).sum())),
        "stable_rank": total / float(sq.max()),
        "k50": energy_rank(sq, 0.5),
        "k90": energy_rank(sq, 0.9),
        "k99": energy_rank(sq, 0.99),
    }


def update_members(family: Family, update: str) -> tuple[str, str]:
    return (BASE, ALIGNED) if update == ALIGNMENT else (ALIGNED, update)


def tensor_spectrum(family: Family, index: int, name: str, update: str) -> np.ndarray:
    """Singular values of one tensor of an update."""
    return singular_values(as_matrix(update_tensor(family, update, name))).numpy()


def spectra(family: Family, update: str, callback: Callback | None = None) -> pd.DataFrame:
    """Singular values of every tensor of an update: columns tensor, layer, module, index, singular_value."""
    family.check_update(update)
    names = family.tensor_names
    prints = family.fingerprints()
    key = cache_key("spectra", update=update, members={m: prints[m] for m in update_members(family, update)})

    def compute() -> pd.DataFrame:
        frames = []
        per_tensor = map_tensors(family, tensor_spectrum, (update,), f"spectra of {update}", callback)
        for name, values in zip(names, per_tensor):
            role = tensor_role(name, family.arch)
            frames.append(pd.DataFrame({"tensor": name, "layer": role.layer, "module": role.module,
                                        "index": np.arange(len(values)), "singular_value": values}))
        return pd.concat(frames, ignore_index=True)

    return cached_frame("spectra", key, compute)


def summarize(values: pd.DataFrame) -> pd.DataFrame:
    """One row per tensor with the summary statistics, from the singular-value table."""
    rows = []
    for (name, layer, module), group in values.groupby(["tensor", "layer", "module"], sort=False):
        rows.append({"tensor": name, "layer": layer, "module": module, "rank_max": len(group),
                     **spectrum_summary(group["singular_value"].to_numpy())})
    return pd.DataFrame(rows)
