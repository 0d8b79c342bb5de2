"""2-D embeddings of one layer's activations: PCA (instant) or UMAP (seeded; coordinates vary across runs)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from explorer.core.errors import ParameterError
from explorer.core.imports import locked_import

METHODS = ("pca", "umap")


def embed(states: dict[str, np.ndarray], method: str = "pca", seed: int = 0) -> pd.DataFrame:
    """Columns set, index, x, y for every prompt of every set, from one layer's (n, d) arrays."""
    if method not in METHODS:
        raise ParameterError(f"unknown embedding {method!r}; choose pca or umap")
    names = list(states)
    features = np.concatenate([states[n] for n in names]).astype(np.float32)
    if method == "pca":
        from sklearn.decomposition import PCA

        coords = PCA(2, random_state=seed).fit_transform(features)
    else:
        umap = locked_import("umap")
        coords = umap.UMAP(n_neighbors=15, min_dist=0.1, random_state=seed, n_jobs=1).fit_transform(features)
    sets = np.concatenate([[n] * len(states[n]) for n in names])
    index = np.concatenate([np.arange(len(states[n])) for n in names])
    return pd.DataFrame({"set": sets, "index": index, "x": coords[:, 0], "y": coords[:, 1]})
