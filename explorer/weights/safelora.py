"""Safe LoRA (Hsu et al., NeurIPS 2024, arXiv 2405.16833): the subspace defence the paper argues against.

For a candidate tensor, with V = W_aligned - W_base, the alignment matrix is C = V V^T / ||V||_F (not a
projector) and the projected task update is C dT, applied from the left whatever the shape. Threshold mode
projects a tensor when cos(C dT, dT) <= tau; number mode projects the N tensors with the lowest cosine (exactly
N, ties broken by tensor order; the authors' reference code projects every tensor tied with the N-th). Every
other tensor keeps its task update. Candidates are the 2-D matrices inside the transformer blocks; for a LoRA
adapter, only those it targets. One streaming pass per (family, variant) stores each tensor's cosine and the
three energies the pooled metrics need, so any tau or N costs no new pass.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from explorer.checkpoints.architectures import loaded_tensor, tensor_role
from explorer.checkpoints.family import ALIGNED, ALIGNMENT, BASE, Family
from explorer.checkpoints.stores import LoraStore
from explorer.core.cache import cache_key, cached_frame
from explorer.core.errors import ParameterError
from explorer.core.progress import Callback, track
from explorer.weights.subspaces import on_device
from explorer.weights.updates import update_tensor

METHOD = "safelora"
# Fractions of the candidate tensors projected at the thresholds a precompute scores.
GRID_FRACTIONS = (0.1, 0.25, 0.4, 0.55, 0.7, 0.85, 1.0)
COLUMNS = ["tensor", "layer", "module", "candidate", "cosine", "total", "projected_sq", "inner"]


def check_selection(threshold: float | None, layers: int | None) -> None:
    """Exactly one of a threshold tau in [-1, 1] (it is compared with a cosine) or a count N >= 1."""
    if (threshold is None) == (layers is None):
        raise ParameterError("Safe LoRA needs exactly one of a threshold τ (--threshold) or a number of "
                             "tensors N (--layers)" + (", not both" if threshold is not None else ""))
    if threshold is not None and not (math.isfinite(threshold) and -1.0 <= threshold <= 1.0):
        raise ParameterError(f"Safe LoRA threshold τ = {threshold} is outside [-1, 1]; it is compared with a cosine")
    if layers is not None and (isinstance(layers, bool) or int(layers) != layers or layers < 1):
        raise ParameterError(f"the number of tensors Safe LoRA projects must be a whole number >= 1, got {layers}")


@dataclass
class SafeLoraStats:
    """Per-tensor cosines and energies of one task update, enough for the metrics at every tau and N."""

    tensors: pd.DataFrame  # COLUMNS; cosine is NaN for tensors that are not candidates

    @property
    def candidates(self) -> pd.DataFrame:
        return self.tensors[self.tensors["candidate"]]

    def selected(self, threshold: float | None = None, layers: int | None = None) -> np.ndarray:
        """A boolean mask over the tensors: those Safe LoRA projects."""
        check_selection(threshold, layers)
        candidate = self.tensors["candidate"].to_numpy(bool)
        cosine = self.tensors["cosine"].to_numpy(np.float64)
        if threshold is not None:
            return candidate & (cosine <= threshold)
        count = int(candidate.sum())
        if layers > count:
            raise ParameterError(f"Safe LoRA cannot project N = {layers} tensors: this update has {count} candidates")
        lowest = np.flatnonzero(candidate)[np.argsort(cosine[candidate], kind="stable")[:int(layers)]]
        mask = np.zeros(len(cosine), bool)
        mask[lowest] = True
        return mask

    def projected(self, threshold: float | None = None, layers: int | None = None) -> list[str]:
        return self.tensors["tensor"][self.selected(threshold, layers)].tolist()

    def point(self, threshold: float | None = None, layers: int | None = None) -> dict:
        """Pooled over every tensor of the update: energy kept, cos(task, kept), projected and candidate counts."""
        mask = self.selected(threshold, layers)
        total = self.tensors["total"].to_numpy(np.float64)
        kept_sq = np.where(mask, self.tensors["projected_sq"].to_numpy(np.float64), total)
        inner = np.where(mask, self.tensors["inner"].to_numpy(np.float64), total)
        total_sum, kept_sum = total.sum(), kept_sq.sum()
        return {
            "energy_kept_ratio": float(kept_sum / total_sum) if total_sum > 0 else 0.0,
            "cosine_task_kept": float(inner.sum() / np.sqrt(total_sum * kept_sum)) if kept_sum > 0 else 0.0,
            "projected_tensors": int(mask.sum()),
            "candidate_tensors": int(self.tensors["candidate"].sum()),
        }

    def threshold_grid(self, fractions: tuple[float, ...] = GRID_FRACTIONS) -> list[float]:
        """Thresholds spread over the observed cosines: the cosine below which a fraction of candidates lies."""
        cosines = np.sort(self.candidates["cosine"].to_numpy(np.float64))
        if cosines.size == 0:
            return []
        picks = sorted({max(1, round(f * cosines.size)) for f in fractions})
        return [float(cosines[i - 1]) for i in picks]


def candidate_names(family: Family, variant: str) -> set[str]:
    """2-D matrices inside the transformer blocks; for a LoRA adapter, only the modules it targets."""
    store = family.store(variant)
    in_blocks = {name for name in family.tensor_names
                 if len(store.shape(name)) == 2 and tensor_role(name, family.arch).layer >= 0}
    if isinstance(store, LoraStore) and store.parent is family.store(ALIGNED):
        return in_blocks & store.lora_targets
    return in_blocks


def aligned_update(align_update: torch.Tensor, task_update: torch.Tensor) -> torch.Tensor:
    """C dT = V (V^T dT) / ||V||_F, without forming the (M, M) matrix C when the tensor is tall."""
    norm = float(align_update.double().norm())
    if norm == 0.0:
        return torch.zeros_like(task_update)  # an unchanged tensor has no alignment matrix
    rows, cols = align_update.shape
    if cols <= rows:
        product = on_device(align_update, on_device(align_update.T, task_update))  # (M, N) @ (N, N)
    else:
        product = on_device(on_device(align_update, align_update.T), task_update)  # (M, M) @ (M, N)
    return product / norm


def _cosine(inner: float, total: float, projected_sq: float) -> float:
    return inner / math.sqrt(total * projected_sq) if total > 0 and projected_sq > 0 else 0.0


def safelora_stats(family: Family, variant: str, callback: Callback | None = None) -> SafeLoraStats:
    """Cosines and energies of every tensor of a task update, from one streaming pass, cached per variant."""
    if variant not in family.finetuned:
        raise ParameterError(f"{variant!r} is not a fine-tuned member of {family.name!r}; "
                             f"choose from {', '.join(family.finetuned)}")
    prints = family.fingerprints()
    key = cache_key("safelora-cosines", base=prints[BASE], aligned=prints[ALIGNED], member=prints[variant], rule=1)

    def compute() -> pd.DataFrame:
        candidates = candidate_names(family, variant)
        rows = []
        for name in track(family.tensor_names, f"Safe LoRA cosines of {variant}", callback=callback):
            task = update_tensor(family, variant, name)
            role = tensor_role(name, family.arch)
            total = float((task.double() ** 2).sum())
            row = {"tensor": name, "layer": role.layer, "module": role.module, "candidate": name in candidates,
                   "cosine": np.nan, "total": total, "projected_sq": total, "inner": total}
            if name in candidates:
                projected = aligned_update(update_tensor(family, ALIGNMENT, name), task).double()
                row["projected_sq"] = float((projected ** 2).sum())
                row["inner"] = float((projected * task.double()).sum())
                row["cosine"] = _cosine(row["inner"], total, row["projected_sq"])
            rows.append(row)
        return pd.DataFrame(rows, columns=COLUMNS)

    return SafeLoraStats(cached_frame("safelora", key, compute))


@torch.no_grad()
def apply_safelora(model: torch.nn.Module, family: Family, variant: str, threshold: float | None = None,
                   layers: int | None = None, callback: Callback | None = None) -> dict:
    """Write W = W_A + (Safe LoRA's task update) into a loaded model's parameters, in place; return the metrics."""
    stats = safelora_stats(family, variant, callback)
    chosen = set(stats.projected(threshold, layers))
    params = dict(model.named_parameters())
    aligned = family.store(ALIGNED)
    for name in track(family.tensor_names, f"Safe LoRA on {variant}", callback=callback):
        param = loaded_tensor(params, name, family.arch)
        if param is None:
            continue  # e.g. lm_head tied to the embeddings
        task = update_tensor(family, variant, name)
        if name in chosen:
            task = aligned_update(update_tensor(family, ALIGNMENT, name), task)
        param.copy_((aligned.tensor(name) + task).to(param.dtype))
    return {"variant": variant, "method": METHOD, "threshold": threshold, "layers": layers,
            **stats.point(threshold, layers)}
