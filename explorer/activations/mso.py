"""MSO between prompt sets in activation space, per layer (paper section 6).

Each set's (n, d) matrix of last-token states is used transposed, (d, n), exactly like an update matrix;
uncentered by default, as in the paper, with centering (subtracting the set's mean) as an option.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from explorer.weights.subspaces import (
    DEFAULT_ENERGIES,
    check_energies,
    left_svd,
    overlap_curve,
)

HEADLINE_DEPTH = (0.65, 0.90)


def set_basis(states: np.ndarray, center: bool = False) -> tuple[torch.Tensor, np.ndarray]:
    """Left singular vectors and squared singular values of one layer's (d, n) matrix."""
    matrix = torch.from_numpy(np.asarray(states, dtype=np.float64))
    if center:
        matrix = matrix - matrix.mean(0, keepdim=True)
    basis, values = left_svd(matrix.T, dtype=torch.float64)
    return basis, (values.double() ** 2).numpy()


def activation_mso(states_a: np.ndarray, states_b: np.ndarray, energies: list[float] | None = None,
                   center: bool = False) -> pd.DataFrame:
    """Columns layer, energy_frac, k_a, k_b, mso, mso_random for (n, layers, d) activation arrays."""
    energies = check_energies(energies or DEFAULT_ENERGIES)
    rows = []
    for layer in range(states_a.shape[1]):
        curve = overlap_curve(*set_basis(states_a[:, layer], center), *set_basis(states_b[:, layer], center), energies)
        rows += [{"layer": layer, "energy_frac": eta, "k_a": ka, "k_b": kb, "mso": mso, "mso_random": base}
                 for eta, (ka, kb, mso, base) in zip(energies, curve)]
    return pd.DataFrame(rows)


def headline_layers(n_layers: int) -> list[int]:
    """Hidden-state indices (1..n_layers) at 65-90% depth, the band the paper averages over; for models too
    shallow to have one, the layer nearest the band's middle."""
    low, high = HEADLINE_DEPTH
    band = [layer for layer in range(1, n_layers + 1) if low <= layer / n_layers <= high]
    return band or [min(n_layers, max(1, round((low + high) / 2 * n_layers)))]


def headline(table: pd.DataFrame) -> pd.DataFrame:
    """Mean MSO and baseline over the 65-90% depth band, per energy fraction (and any other key columns)."""
    n_layers = int(table["layer"].max())
    band = table[table["layer"].isin(headline_layers(n_layers))]
    keys = [c for c in ("member", "a", "b") if c in table] + ["energy_frac"]
    return band.groupby(keys, as_index=False)[["mso", "mso_random"]].mean()
