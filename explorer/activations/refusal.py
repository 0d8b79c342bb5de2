"""The refusal direction per layer (difference of means, harmful - benign) and whether alignment writes along it."""
from __future__ import annotations

import numpy as np
import pandas as pd

from explorer.checkpoints.architectures import RESIDUAL_WRITERS, tensor_role
from explorer.checkpoints.family import Family
from explorer.weights.subspaces import left_svd
from explorer.weights.updates import update_tensor

TOP_DIRECTIONS = 8


def refusal_directions(harmful: np.ndarray, benign: np.ndarray) -> pd.DataFrame:
    """Per layer: the unit direction, its norm and the gap, i.e. the separation of the two sets' projections
    on it in units of their pooled standard deviation (d')."""
    rows = []
    for layer in range(harmful.shape[1]):
        h, b = harmful[:, layer].astype(np.float64), benign[:, layer].astype(np.float64)
        direction = h.mean(0) - b.mean(0)
        norm = float(np.linalg.norm(direction))
        unit = direction / norm if norm > 0 else direction
        ph, pb = h @ unit, b @ unit
        pooled = float(np.sqrt((ph.var() + pb.var()) / 2))
        rows.append({"layer": layer, "norm": norm, "gap": float(ph.mean() - pb.mean()) / pooled if pooled else 0.0,
                     "direction": unit.astype(np.float32)})
    return pd.DataFrame(rows)


def writer_bases(family: Family, top: int = TOP_DIRECTIONS) -> dict[tuple[int, str], np.ndarray]:
    """Top left singular vectors (d_model, top) of the alignment update of each residual-stream writer."""
    bases = {}
    for name in family.tensor_names:
        role = tensor_role(name, family.arch)
        if role.module in RESIDUAL_WRITERS:
            basis, _ = left_svd(update_tensor(family, "alignment", name))
            bases[(role.layer, role.module)] = basis[:, :top].numpy()
    return bases


def alignment_cosines(directions: pd.DataFrame, bases: dict[tuple[int, str], np.ndarray]) -> pd.DataFrame:
    """For hidden state l (the output of block l-1): |cos| between the refusal direction and the top alignment
    direction of that block's o_proj and down_proj, the share of the direction inside their top-k subspace,
    and the random baseline of that share, sqrt(k / d)."""
    rows = []
    for _, row in directions.iterrows():
        block = int(row["layer"]) - 1
        for module in RESIDUAL_WRITERS:
            basis = bases.get((block, module))
            if basis is None:
                continue
            coords = basis.T @ row["direction"]
            rows.append({"layer": int(row["layer"]), "module": module, "cosine_top1": float(abs(coords[0])),
                         "share_topk": float(np.linalg.norm(coords)), "k": basis.shape[1],
                         "share_random": float(np.sqrt(basis.shape[1] / basis.shape[0]))})
    return pd.DataFrame(rows)
