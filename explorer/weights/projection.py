"""Projection of task updates onto, or away from, the top-k alignment subspace (paper sections 3-4).

One exact SVD of the alignment update per tensor serves every k: with C = U^T dT, P_k dT = U[:, :k] C[:k]
and ||P_k dT||^2 is the sum of the first k squared row norms of C. 1-D tensors are (d, 1) columns, so their
"subspace" is the direction of the alignment update, as in the paper.

Two sides. `left` (the paper's and its code's, the default) projects every 2-D tensor with the left singular
vectors of dA. `short` projects a tall matrix (M > N) on its smaller side, dT V_k V_k^T (the same maths on the
transposes): the left subspace of a tall matrix has only N of M dimensions, so left projection can never
reproduce the fine-tune at full rank. The two agree on square and wide matrices and on 1-D tensors.
The random control is a seeded Gaussian basis orthonormalised by QR: its first k columns span a uniformly
random k-dim subspace for every k.
"""
from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from explorer.checkpoints.architectures import loaded_tensor, tensor_role
from explorer.checkpoints.family import ALIGNED, BASE, Family
from explorer.core.cache import (
    atomic_write,
    cache_key,
    read_verified,
    result_path,
    write_frame,
    write_npy,
)
from explorer.core.config import settings
from explorer.core.errors import ParameterError
from explorer.core.progress import Callback, track
from explorer.core.temp import temp_dir
from explorer.weights.subspaces import (
    BLOCK,
    as_matrix,
    check_frac,
    left_svd,
    on_device,
    random_basis,
    random_permutation,
)
from explorer.weights.updates import map_tensors, update_tensor

METHODS = ("same", "orth", "opp")
SUBSPACES = ("alignment", "random", "random-k")
SIDES = ("left", "short")
PAPER_SIDE = "left"
ALIGN_ARRAYS, TASK_ARRAYS = ("U", "Q", "perm"), ("C", "D")
log = logging.getLogger("explorer")


def rank_k(rank: int, frac: float) -> int:
    """k = max(1, round(rho * min(M, N))), as in the reference code (the paper writes floor)."""
    return max(1, round(frac * rank))


def oriented(tensor: torch.Tensor, side: str = PAPER_SIDE) -> torch.Tensor:
    """The view the projection acts on: 1-D as a (d, 1) column; on the `short` side, tall matrices transposed."""
    matrix = as_matrix(tensor)
    return matrix.T if side == "short" and tensor.ndim == 2 and matrix.shape[0] > matrix.shape[1] else matrix


def check_side(side: str) -> str:
    if side not in SIDES:
        raise ParameterError(f"unknown projection side {side!r}; choose from {', '.join(SIDES)}")
    return side


def check_point(method: str, subspace: str, frac: float, side: str = PAPER_SIDE) -> None:
    check_side(side)
    if method not in METHODS:
        raise ParameterError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    if subspace not in SUBSPACES:
        raise ParameterError(f"unknown subspace {subspace!r}; choose from {', '.join(SUBSPACES)}")
    check_frac(frac)


@dataclass
class ProjectionStats:
    """Per-tensor energies of one task update in each subspace, enough for the metrics at every (k, method)."""

    tensors: pd.DataFrame  # tensor, layer, module, rank, total, inner_align, align_sq
    cumulative: dict[str, list[np.ndarray]]  # subspace -> per tensor, kept energy for k = 0..rank

    def _kept(self, subspace: str, frac: float) -> np.ndarray:
        return np.array([cum[rank_k(len(cum) - 1, frac)] for cum in self.cumulative[subspace]])

    def point(self, method: str, subspace: str, frac: float) -> dict[str, float]:
        """Pooled metrics: energy kept, cos(task, kept), cos(task, alignment), total k."""
        check_point(method, subspace, frac)
        total = self.tensors["total"].to_numpy()
        projected = self._kept(subspace, frac)
        kept = total - projected if method == "orth" else projected
        inner = -kept if method == "opp" else kept  # <dT, P dT> = ||P dT||^2 for a projector P
        total_sum, kept_sum = total.sum(), kept.sum()
        align_sq = self.tensors["align_sq"].sum()
        return {
            "energy_kept_ratio": float(kept_sum / total_sum) if total_sum else 0.0,
            "cosine_task_kept": float(inner.sum() / np.sqrt(total_sum * kept_sum)) if kept_sum > 0 else 0.0,
            "cosine_task_alignment": float(self.tensors["inner_align"].sum() / np.sqrt(total_sum * align_sq))
            if total_sum > 0 and align_sq > 0 else 0.0,
            "k_total": int(sum(rank_k(r, frac) for r in self.tensors["rank"])),
        }

    def removed_by_layer(self, method: str, subspace: str, frac: float) -> pd.DataFrame:
        """Task-update energy removed by the projection, per layer (-1: tensors outside the blocks)."""
        check_point(method, subspace, frac)
        frame = self.tensors[["layer", "total"]].copy()
        projected = self._kept(subspace, frac)
        frame["removed"] = projected if method == "orth" else frame["total"] - projected
        by_layer = frame.groupby("layer", as_index=False)[["total", "removed"]].sum()
        by_layer["removed_frac"] = by_layer["removed"] / by_layer["total"].where(by_layer["total"] > 0)
        return by_layer

    def energy_curve(self, fracs: list[float] | np.ndarray) -> pd.DataFrame:
        """Energy kept by `same` against rho, for every subspace (orth keeps the rest)."""
        rows = [{"frac": float(f), "subspace": s, **self.point("same", s, float(f))} for s in SUBSPACES for f in fracs]
        return pd.DataFrame(rows)


def _save_stats(path: Path, stats: ProjectionStats) -> None:
    arrays = {f"{s}:{i}": cum for s, cums in stats.cumulative.items() for i, cum in enumerate(cums)}

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    atomic_write(path.with_suffix(".npz"), write)
    write_frame(path.with_suffix(".parquet"), stats.tensors)


def _load_stats(path: Path) -> ProjectionStats | None:
    tensors = read_verified(path.with_suffix(".parquet"), pd.read_parquet)
    if tensors is None:
        return None

    def read(npz: Path) -> dict[str, list[np.ndarray]]:
        with np.load(npz) as arrays:
            return {s: [arrays[f"{s}:{i}"] for i in range(len(tensors))] for s in SUBSPACES}

    cumulative = read_verified(path.with_suffix(".npz"), read)
    return None if cumulative is None else ProjectionStats(tensors, cumulative)


def _complete_npy(path: Path) -> bool:
    """Whether an .npy file has a readable header and exactly the bytes its header announces."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(fh)
            expected = fh.tell() + int(np.prod(shape)) * dtype.itemsize
        return path.stat().st_size == expected
    except (OSError, ValueError, EOFError):
        return False


def _intact_bases(folder: Path, count: int, labels: tuple[str, ...]) -> bool:
    """Whether a bases folder holds every array of `count` tensors, each complete; a damaged folder is removed."""
    if not folder.exists():
        return False
    for index in range(count):
        for label in labels:
            if not _complete_npy(folder / f"{index:05d}.{label}.npy"):
                log.warning("removed damaged SVD bases %s (%05d.%s.npy is missing or truncated); they will be "
                            "computed again", folder, index, label)
                shutil.rmtree(folder, ignore_errors=True)
                return False
    return True


def _keys(family: Family, variant: str, seed: int, side: str) -> tuple[str, str]:
    prints = family.fingerprints()
    align_key = cache_key("alignment-basis", base=prints[BASE], aligned=prints[ALIGNED], seed=seed, side=side)
    return align_key, cache_key("task-coeffs", alignment=align_key, member=prints[variant])


def tensor_projection(family: Family, index: int, name: str, variant: str, seed: int, align_dir: Path | None,
                      align_out: Path | None, task_out: Path | None, side: str = PAPER_SIDE
                      ) -> tuple[dict, dict[str, np.ndarray]]:
    """One tensor's energies in each subspace: its row of ProjectionStats.tensors and its cumulative energies.
    Reads the alignment bases from `align_dir`, or computes them (and stores them in `align_out`)."""
    rows, cols = oriented(torch.empty(family.store(ALIGNED).shape(name), device="meta"), side).shape
    rank = min(rows, cols)
    # The random basis first, before any update is held: its float64 Gaussian and QR are the largest temporaries.
    if align_dir is not None:
        rand_basis, perm = (torch.from_numpy(_load(align_dir, index, label, mmap=False)) for label in ("Q", "perm"))
    else:
        rand_basis, perm = random_basis(rows, rank, seed, name), random_permutation(rank, seed, name)
        if align_out is not None:
            _store(align_out, index, Q=rand_basis, perm=perm)
    task = oriented(update_tensor(family, variant, name), side)
    random_energy = _coefficient_energy(rand_basis, task, task_out, index, "D")
    del rand_basis
    align = oriented(update_tensor(family, "alignment", name), side)
    if align_dir is not None:
        basis = torch.from_numpy(_load(align_dir, index, "U", mmap=False))
    else:
        basis, values = left_svd(align)
        if not bool((values > 0).any()):
            basis = torch.zeros_like(basis)  # an unchanged tensor has no alignment subspace
        if align_out is not None:
            _store(align_out, index, U=basis)
    energy = _coefficient_energy(basis, task, task_out, index, "C")
    del basis
    cumulative = {"alignment": _cumsum(energy), "random-k": _cumsum(energy[perm]), "random": _cumsum(random_energy)}
    role = tensor_role(name, family.arch)
    row = {"tensor": name, "layer": role.layer, "module": role.module, "rank": rank,
           "total": _inner64(task, task), "inner_align": _inner64(task, align), "align_sq": _inner64(align, align)}
    return row, cumulative


def projection_stats(family: Family, variant: str, seed: int = 0, keep_bases: bool = False,
                     callback: Callback | None = None, side: str = PAPER_SIDE) -> ProjectionStats:
    """Energies of a task update in the alignment, random-k and random subspaces, cached.

    With keep_bases, the bases and coefficients are also written under cache/bases so that projected
    weights can later be written into a model without another SVD pass.
    """
    if variant not in family.finetuned:
        raise ParameterError(f"{variant!r} is not a fine-tuned member of {family.name!r}; "
                             f"choose from {', '.join(family.finetuned)}")
    check_side(side)
    align_key, task_key = _keys(family, variant, seed, side)
    stats_path = result_path("projection", task_key, "")
    bases = settings().bases_dir
    count = len(family.tensor_names)
    align_ok = _intact_bases(bases / align_key, count, ALIGN_ARRAYS)
    if not align_ok:
        shutil.rmtree(bases / task_key, ignore_errors=True)  # its coefficients belong to the bases to be redone
    task_ok = _intact_bases(bases / task_key, count, TASK_ARRAYS)
    cached = _load_stats(stats_path)
    if cached is not None and (not keep_bases or task_ok):
        return cached
    align_dir = bases / align_key if align_ok else None
    align_out = temp_dir(bases, "align") if keep_bases and not align_dir else None
    task_out = temp_dir(bases, "task") if keep_bases else None
    try:
        per_tensor = map_tensors(family, tensor_projection, (variant, seed, align_dir, align_out, task_out, side),
                                 f"projection bases of {variant}", callback)
        rows = [row for row, _ in per_tensor]
        cumulative = {s: [cums[s] for _, cums in per_tensor] for s in SUBSPACES}
        stats = ProjectionStats(pd.DataFrame(rows), cumulative)
        if align_out is not None:
            _publish(align_out, bases / align_key)
        if task_out is not None:
            _publish(task_out, bases / task_key)
        _save_stats(stats_path, stats)
        return stats
    finally:
        for tmp in (align_out, task_out):
            if tmp is not None and tmp.exists():
                shutil.rmtree(tmp)


def _cumsum(energy: torch.Tensor) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(energy.numpy())])


def _store(folder: Path, index: int, **arrays: torch.Tensor) -> None:
    # Atomic per file: on a cluster, a retried task may rewrite a file that its first attempt left half-written.
    for label, array in arrays.items():
        write_npy(folder / f"{index:05d}.{label}.npy", array.numpy())


def _load(folder: Path, index: int, label: str, mmap: bool = True) -> np.ndarray:
    """A stored array: memory-mapped for reading a few rows, or read whole (a copy of a mapped file would also
    keep its pages resident)."""
    return np.load(folder / f"{index:05d}.{label}.npy", mmap_mode="r" if mmap else None)


def _coefficient_energy(basis: torch.Tensor, task: torch.Tensor, task_out: Path | None, index: int, label: str
                        ) -> torch.Tensor:
    """The energy of the task update along each basis direction: the squared row norms of the (rank, cols)
    coefficients basis^T task, in float64 a block of columns at a time, stored first where bases are kept. On the
    short side a tall tensor's coefficients are as large as the tensor, so they are not held any longer."""
    coeffs = on_device(basis.T, task)
    if task_out is not None:
        _store(task_out, index, **{label: coeffs})
    return sum((block.double() ** 2).sum(1) for block in coeffs.split(BLOCK, dim=1))


def _inner64(left: torch.Tensor, right: torch.Tensor) -> float:
    """<left, right> accumulated in float64 a block of rows (or columns, of a wide one) at a time, without a
    float64 copy of either."""
    dim = 0 if left.shape[0] >= left.shape[-1] else 1
    return sum(float((a.double() * b.double()).sum())
               for a, b in zip(left.split(BLOCK, dim=dim), right.split(BLOCK, dim=dim)))


def _publish(tmp: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(tmp)
    else:
        tmp.rename(target)


class InPlaceProjector:
    """Writes projected task updates into one loaded model's parameters, in place, and remembers what each tensor
    holds: a new ρ of the same (variant, method, subspace, seed, side) adds or removes only the directions between
    the held k and the new one (Δk), instead of rewriting every tensor from the checkpoints.

    Each tensor's record changes only after its weights do, so an interrupted pass (a page rerun, a cancel)
    leaves every tensor either at its old point or at its new one, never unknown."""

    def __init__(self, model: torch.nn.Module, family: Family):
        self.family = family
        self._params = dict(model.named_parameters())
        self._held: dict[str, tuple[tuple, int]] = {}  # tensor -> (setting, k) its weights hold

    def forget(self) -> None:
        """Something else wrote the model's weights (a Safe LoRA point): rewrite every tensor next time."""
        self._held.clear()

    @torch.no_grad()
    def apply(self, variant: str, method: str, subspace: str, frac: float, seed: int = 0,
              callback: Callback | None = None, side: str = PAPER_SIDE) -> dict[str, float]:
        """Make the model W = W_A + (projected task update) at this point; return the point's metrics."""
        check_point(method, subspace, frac, side)
        stats = projection_stats(self.family, variant, seed, keep_bases=True, callback=callback, side=side)
        align_key, task_key = _keys(self.family, variant, seed, side)
        align_dir, task_dir = settings().bases_dir / align_key, settings().bases_dir / task_key
        setting = (variant, method, subspace, seed, side)
        label_basis, label_coeffs = ("Q", "D") if subspace == "random" else ("U", "C")
        sign = 1.0 if method == "same" else -1.0  # orth and opp subtract the projected part
        aligned = self.family.store(ALIGNED)
        for i, name in enumerate(track(self.family.tensor_names, f"projecting {variant}", callback=callback)):
            param = loaded_tensor(self._params, name, self.family.arch)
            if param is None:
                continue  # e.g. lm_head tied to the embeddings
            basis = np.load(align_dir / f"{i:05d}.{label_basis}.npy", mmap_mode="r")  # (rows, rank)
            coeffs = np.load(task_dir / f"{i:05d}.{label_coeffs}.npy", mmap_mode="r")  # (rank, cols)
            k = rank_k(basis.shape[1], frac)
            held_setting, held_k = self._held.get(name, (None, 0))
            if held_setting == setting:
                if held_k == k:
                    continue
                low, high = sorted((held_k, k))
                delta = self._part(basis, coeffs, align_dir, i, subspace, low, high, param.shape)
                param.add_(delta.to(param.dtype), alpha=sign if k > held_k else -sign)
            else:
                base = aligned.tensor(name)
                weight = base + sign * self._part(basis, coeffs, align_dir, i, subspace, 0, k, base.shape)
                if method == "orth":
                    weight += update_tensor(self.family, variant, name)
                param.copy_(weight.to(param.dtype))
            self._held[name] = (setting, k)
        return {"variant": variant, "method": method, "subspace": subspace, "frac": frac, "seed": seed, "side": side,
                **stats.point(method, subspace, frac)}

    @staticmethod
    def _part(basis: np.ndarray, coeffs: np.ndarray, align_dir: Path, index: int, subspace: str, low: int,
              high: int, shape: torch.Size) -> torch.Tensor:
        """The projected task update's directions low..high-1 of the subspace, shaped like the parameter."""
        chosen = np.sort(np.array(_load(align_dir, index, "perm"))[low:high]) if subspace == "random-k" else \
            slice(low, high)
        part = on_device(torch.from_numpy(np.array(basis[:, chosen])),
                         torch.from_numpy(np.array(coeffs[chosen])))  # (rows, cols) of the oriented view
        if len(shape) != 2:
            return part.reshape(shape)  # a vector's column, or a kernel's first dimension against the rest
        return part if part.shape == shape else part.T


def apply_projection(model: torch.nn.Module, family: Family, variant: str, method: str, subspace: str, frac: float,
                     seed: int = 0, callback: Callback | None = None, side: str = PAPER_SIDE) -> dict[str, float]:
    """Write W = W_A + (projected task update) into a loaded model's parameters, in place; return the metrics."""
    return InPlaceProjector(model, family).apply(variant, method, subspace, frac, seed, callback, side)
