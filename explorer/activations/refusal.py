"""The refusal direction per layer (difference of means, harmful - benign) and whether alignment writes along it."""
from __future__ import annotations

import numpy as np
import pandas as pd

from explorer.checkpoints.architectures import residual_writers, tensor_role
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


def writer_bases(family: Family, top: int = TOP_DIRECTIONS) -> dict[tuple[int, str, int | None], np.ndarray]:
    """Top left singular vectors (d_model, top) of the alignment update of each residual-stream writer of the
    family's architecture, keyed by (layer, module, expert): a mixture of experts has one per expert (expert None
    elsewhere); experts stacked in one 3-D tensor (experts, d_model, cols) are taken one slice at a time."""
    writers = residual_writers(family.arch)
    bases = {}
    for name in family.tensor_names:
        role = tensor_role(name, family.arch)
        if role.module not in writers:
            continue
        update = update_tensor(family, "alignment", name)
        parts = enumerate(update) if update.ndim == 3 else [(role.expert, update)]
        for expert, matrix in parts:
            basis, _ = left_svd(matrix)
            bases[(role.layer, role.module, expert)] = basis[:, :top].numpy()
    return bases


def alignment_cosines(directions: pd.DataFrame, bases: dict[tuple[int, str, int | None], np.ndarray]
                      ) -> pd.DataFrame:
    """For hidden state l (the output of block l-1): per residual-stream writer of that block (o_proj and
    down_proj, or a mixture's expert down-projections), |cos| between the refusal direction and the writer's top
    alignment direction, the share of the direction inside its top-k subspace, and the random baseline of that
    share, sqrt(k / d). A mixture's experts give one row per module: the mean over its experts (`experts` of
    them), and the best expert's share (`share_topk_best`)."""
    rows = []
    for _, row in directions.iterrows():
        block = int(row["layer"]) - 1
        per_module: dict[str, list[dict]] = {}
        for (layer, module, _), basis in bases.items():
            if layer != block:
                continue
            coords = basis.T @ row["direction"]
            per_module.setdefault(module, []).append(
                {"cosine_top1": float(abs(coords[0])), "share_topk": float(np.linalg.norm(coords)),
                 "k": basis.shape[1], "share_random": float(np.sqrt(basis.shape[1] / basis.shape[0]))})
        for module, experts in per_module.items():
            mean = pd.DataFrame(experts).mean()
            rows.append({"layer": int(row["layer"]), "module": module, "cosine_top1": float(mean["cosine_top1"]),
                         "share_topk": float(mean["share_topk"]), "k": experts[0]["k"],
                         "share_random": float(mean["share_random"]), "experts": len(experts),
                         "share_topk_best": max(e["share_topk"] for e in experts)})
    return pd.DataFrame(rows)
