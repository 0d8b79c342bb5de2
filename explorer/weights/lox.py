"""LoX (Perin et al., "LoX: Low-Rank Extrapolation Robustifies LLM Safety Against Fine-tuning", arXiv 2506.15606):
the aligned model extrapolated along the top-k subspace of its own alignment update, before any later fine-tuning,

    W = W_aligned + α · U_k U_kᵀ dA,    dA = W_aligned − W_base,

in every weight matrix inside the transformer blocks, with U_k the top-k left singular vectors of dA and
k = max(1, round(ρ · min(M, N))) as in the projections. U_k U_kᵀ dA is dA's best rank-k approximation. Embeddings,
the output head and 1-D tensors (norms, biases) keep the aligned model's values.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from explorer.checkpoints.architectures import loaded_tensor, tensor_role
from explorer.checkpoints.family import ALIGNED, ALIGNMENT, Family
from explorer.core.errors import ParameterError
from explorer.core.progress import Callback, track
from explorer.weights.projection import rank_k
from explorer.weights.subspaces import check_frac, left_svd, on_device
from explorer.weights.updates import update_tensor

METHOD = "lox"
MAX_ALPHA = 100.0  # far past any useful extrapolation; larger values only overflow the weights


def check_alpha(alpha: float) -> float:
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and 0 <= alpha <= MAX_ALPHA):
        raise ParameterError(f"LoX's α must be a number from 0 to {MAX_ALPHA:g}, not {alpha!r}")
    return float(alpha)


def lox_tensors(family: Family) -> set[str]:
    """The matrices LoX extrapolates: 2-D tensors inside the transformer blocks."""
    aligned = family.store(ALIGNED)
    return {name for name in family.tensor_names
            if len(aligned.shape(name)) == 2 and tensor_role(name, family.arch).layer >= 0}


def low_rank_part(update: torch.Tensor, frac: float) -> tuple[torch.Tensor, float, float]:
    """U_k U_kᵀ dA for a 2-D update, with its squared norm (the top-k squared singular values) and dA's."""
    basis, values = left_svd(update)
    top = basis[:, :rank_k(min(update.shape), frac)]
    squares = values.double() ** 2
    return on_device(top, on_device(top.T, update)), float(squares[:top.shape[1]].sum()), float(squares.sum())


def lox_point(family: Family, alpha: float, frac: float, write: Callable[[str, torch.Tensor], None] | None = None,
              callback: Callback | None = None) -> dict:
    """LoX's metrics at (α, ρ); with `write`, also every tensor of the extrapolated model, as write(name, weight).

    `alignment_energy_extrapolated`: the share of the alignment update's energy (over the extrapolated matrices)
    in their top-k parts; `relative_change`: ‖α · U_k U_kᵀ dA‖ / ‖W_aligned‖ over the same matrices."""
    alpha, frac = check_alpha(alpha), check_frac(frac)
    chosen = lox_tensors(family)
    aligned = family.store(ALIGNED)
    names = family.tensor_names if write else [n for n in family.tensor_names if n in chosen]
    kept = total = weight_sq = 0.0
    for name in track(names, f"LoX at α = {alpha:g}, ρ = {frac:g}", callback=callback):
        weight = aligned.tensor(name)
        if name in chosen:
            part, part_sq, update_sq = low_rank_part(update_tensor(family, ALIGNMENT, name), frac)
            kept, total, weight_sq = kept + part_sq, total + update_sq, weight_sq + float((weight.double() ** 2).sum())
            weight = weight + alpha * part  # a store may hand out its cached tensor: no in-place add
        if write:
            write(name, weight)
    return {"method": METHOD, "alpha": alpha, "frac": frac, "tensors": len(chosen),
            "alignment_energy_extrapolated": kept / total if total > 0 else 0.0,
            "relative_change": alpha * math.sqrt(kept / weight_sq) if weight_sq > 0 else 0.0}


@torch.no_grad()
def apply_lox(model: torch.nn.Module, family: Family, alpha: float, frac: float,
              callback: Callback | None = None) -> dict:
    """Write the extrapolated model into a loaded model's parameters, every tensor (so whatever an earlier point
    wrote is replaced); return the metrics."""
    params = dict(model.named_parameters())

    def write(name: str, weight: torch.Tensor) -> None:
        param = loaded_tensor(params, name, family.arch)
        if param is not None:  # None: an lm_head tied to the embeddings
            param.copy_(weight.to(param.dtype))

    return lox_point(family, alpha, frac, write, callback)
