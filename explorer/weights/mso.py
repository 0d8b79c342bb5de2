"""Mode subspace overlap (MSO) between updates, per tensor and per layer (paper section 5).

Per-layer value: the mean over the block's weight matrices (1-D norms and biases are reported per
tensor only, where their MSO is the squared cosine of two directions). Tensors outside the blocks
(embeddings, final norm, head) keep their own group at layer granularity.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from explorer.checkpoints.architectures import tensor_role
from explorer.checkpoints.family import ALIGNED, Family
from explorer.core.cache import cache_key, read_verified, result_path, write_frame
from explorer.core.errors import ParameterError
from explorer.core.progress import Callback
from explorer.weights.spectra import update_members
from explorer.weights.subspaces import (
    DEFAULT_ENERGIES,
    as_matrix,
    check_energies,
    left_svd,
    overlap_curve,
    right_svd,
    tall_overlap_curve,
)
from explorer.weights.updates import map_tensors, update_tensor

GRANULARITIES = ("tensor", "layer")
PAPER_PAIRS = (("useful", "harmful"), ("useful", "alignment"), ("harmful", "alignment"), ("contaminated", "alignment"))
COLUMNS = ["group", "granularity", "energy_frac", "k_a", "k_b", "mso", "mso_random"]


def _pair_key(family: Family, a: str, b: str, energies: list[float]) -> str:
    prints = family.fingerprints()
    members = sorted({m for u in (a, b) for m in update_members(family, u)})
    return cache_key("update-mso", a=a, b=b, energies=energies, members={m: prints[m] for m in members},
                     precision="float64")


def tensor_overlaps(family: Family, index: int, name: str, pairs: list[tuple[str, str]],
                    energies: list[float]) -> tuple[int, list[list[tuple[int, int, float, float]]]]:
    """One decomposition per update of one tensor, then the overlap curve of each pair: (columns, one curve per
    pair). A tall tensor's pairs need no (d, n) bases (tall_overlap_curve); its updates are read again per pair
    rather than all held, so memory stays at two updates however many pairs there are."""
    needed = sorted({u for pair in pairs for u in pair}, key=family.updates.index)
    energy = max(energies)
    rows, cols = as_matrix(torch.empty(family.store(ALIGNED).shape(name), device="meta")).shape
    if rows <= cols:
        bases = {}
        for update in needed:
            basis, values = left_svd(as_matrix(update_tensor(family, update, name)), dtype=torch.float64,
                                     energy=energy)  # no column past the top k
            bases[update] = (basis, (values**2).numpy())
        return cols, [overlap_curve(*bases[a], *bases[b], energies) for a, b in pairs]
    right, held = {}, {}
    for update in needed:
        held = {update: as_matrix(update_tensor(family, update, name))}
        right[update] = right_svd(held[update], energy=energy)
    curves = []
    for a, b in pairs:
        held = {u: m for u, m in held.items() if u in (a, b)}
        for update in (a, b):
            if update not in held:
                held[update] = as_matrix(update_tensor(family, update, name))
        curves.append(tall_overlap_curve(held[a], right[a], held[b], right[b], energies))
    return cols, curves


def family_pairs(family: Family) -> list[tuple[str, str]]:
    """The paper's pairs that exist in this family; every task update against alignment otherwise."""
    pairs = [(a, b) for a, b in PAPER_PAIRS if {a, b} <= set(family.updates)]
    return pairs or [(name, "alignment") for name in family.finetuned]


def update_mso(family: Family, pairs: list[tuple[str, str]], energies: list[float] | None = None,
               callback: Callback | None = None) -> dict[tuple[str, str], pd.DataFrame]:
    """Per-tensor MSO for each pair of updates, with one SVD per update and tensor for every pair and η."""
    energies = check_energies(energies or DEFAULT_ENERGIES)
    for a, b in pairs:
        family.check_update(a)
        family.check_update(b)
        if a == b:
            raise ParameterError(f"the two updates of a pair must differ (got {a!r} twice)")
    results, todo = {}, []
    for pair in pairs:
        cached = read_verified(result_path("update-mso", _pair_key(family, *pair, energies), ".parquet"),
                               pd.read_parquet)
        if cached is not None:
            results[pair] = cached
        else:
            todo.append(pair)
    if not todo:
        return results
    rows: dict[tuple[str, str], list[dict]] = {pair: [] for pair in todo}
    per_tensor = map_tensors(family, tensor_overlaps, (todo, energies), "update MSO", callback)
    for name, (cols, curves) in zip(family.tensor_names, per_tensor):
        role = tensor_role(name, family.arch)
        for pair, curve in zip(todo, curves):
            for eta, (ka, kb, value, baseline) in zip(energies, curve):
                rows[pair].append({"group": name, "granularity": "tensor", "layer": role.layer,
                                   "module": role.module, "cols": cols, "energy_frac": eta,
                                   "k_a": ka, "k_b": kb, "mso": value, "mso_random": baseline})
    for pair in todo:
        results[pair] = pd.DataFrame(rows[pair])
        write_frame(result_path("update-mso", _pair_key(family, *pair, energies), ".parquet"), results[pair])
    return results


def by_layer(per_tensor: pd.DataFrame) -> pd.DataFrame:
    """Layer granularity: the mean over each block's weight matrices, a mixture's experts of one module first
    averaged into one (so that its many experts do not outweigh attention); outside tensors keep their own group."""
    frame = per_tensor[(per_tensor["cols"] > 1) | (per_tensor["layer"] < 0)].copy()
    frame["group"] = np.where(frame["layer"] >= 0, "layers." + frame["layer"].astype(str), frame["module"])
    means = dict(k_a=("k_a", "mean"), k_b=("k_b", "mean"), mso=("mso", "mean"), mso_random=("mso_random", "mean"))
    if frame.duplicated(["group", "module", "energy_frac"]).any():
        frame = frame.groupby(["group", "layer", "module", "energy_frac"], as_index=False, sort=False).agg(**means)
    grouped = frame.groupby(["group", "layer", "energy_frac"], as_index=False, sort=False).agg(**means)
    grouped["granularity"] = "layer"
    return grouped


def pair_table(family: Family, a: str, b: str, energies: list[float] | None = None, granularity: str = "tensor",
               callback: Callback | None = None) -> pd.DataFrame:
    """The CLI's table for one pair at one granularity."""
    if granularity not in GRANULARITIES:
        raise ParameterError(f"unknown granularity {granularity!r}; choose tensor or layer")
    per_tensor = update_mso(family, [(a, b)], energies, callback)[(a, b)]
    return per_tensor if granularity == "tensor" else by_layer(per_tensor)
