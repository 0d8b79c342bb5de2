"""Linear algebra shared by the analyses: exact SVDs, energy ranks, subspace overlap, random bases."""
from __future__ import annotations

import hashlib

import numpy as np
import torch

from explorer.core.config import settings
from explorer.core.errors import ParameterError

DEFAULT_ENERGIES = (0.01, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.99)


SEED_MAX = 2**63 - 1  # results store the seed as a 64-bit integer


def check_energies(energies: list[float] | tuple[float, ...]) -> list[float]:
    """The energy fractions, checked, each once: a repeat would add duplicate rows to every table."""
    energies = list(dict.fromkeys(float(e) for e in energies))
    if not energies:
        raise ParameterError("give at least one energy fraction")
    bad = [e for e in energies if not 0.0 < e <= 1.0]
    if bad:
        raise ParameterError(f"energy fraction {bad[0]} is outside (0, 1]")
    return energies


def check_frac(frac: float) -> float:
    if not 0.0 < frac < 1.0:
        raise ParameterError(f"rank fraction {frac} is outside (0, 1)")
    return float(frac)


def check_seed(seed: object) -> int:
    """A seed of the random subspaces, checked before any work (a table stores it as a 64-bit integer)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise ParameterError(f"seed {seed!r} is not an integer from 0 to {SEED_MAX}")
    return seed


def as_matrix(update: torch.Tensor) -> torch.Tensor:
    """2-D tensors as they are; 1-D tensors as a (d, 1) column."""
    return update if update.ndim == 2 else update.reshape(-1, 1)


def left_svd(matrix: torch.Tensor, device: str | None = None, dtype: torch.dtype = torch.float32
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact thin SVD on the configured device: left singular vectors (d, r) and singular values (r,), on CPU."""
    device = device or settings().device
    u, s, _ = torch.linalg.svd(matrix.to(device, dtype), full_matrices=False)
    return u.cpu(), s.cpu()


def on_device(left: torch.Tensor, right: torch.Tensor, device: str | None = None) -> torch.Tensor:
    """left @ right on the configured device, returned on the CPU."""
    device = device or settings().device
    return (left.to(device) @ right.to(device)).cpu()


def energy_rank(sq_values: np.ndarray, fraction: float) -> int:
    """Smallest k whose top-k squared singular values hold at least `fraction` of the total (0 if all zero)."""
    total = float(sq_values.sum())
    if total <= 0.0:
        return 0
    cumulative = np.cumsum(sq_values) / total
    # Round-off can leave the last cumulative value a hair under 1.0.
    return int(min(np.searchsorted(cumulative, fraction - 1e-12) + 1, len(sq_values)))


def overlap_curve(basis_a: torch.Tensor, sq_a: np.ndarray, basis_b: torch.Tensor, sq_b: np.ndarray,
                  energies: list[float]) -> list[tuple[int, int, float, float]]:
    """Mode subspace overlap for every energy fraction from one product of the two bases.

    Returns (k_a, k_b, mso, random baseline) per fraction; MSO is NaN where an update is zero. The product is
    taken in float64 and the result clipped to [0, 1], which round-off of nearly orthonormal bases can leave.
    """
    ks_a = [energy_rank(sq_a, e) for e in energies]
    ks_b = [energy_rank(sq_b, e) for e in energies]
    dim = basis_a.shape[0]
    top_a, top_b = max(ks_a), max(ks_b)
    if top_a == 0 or top_b == 0:
        return [(ka, kb, float("nan"), float("nan")) for ka, kb in zip(ks_a, ks_b)]
    product = (basis_a[:, :top_a].double().T @ basis_b[:, :top_b].double()) ** 2  # (top_a, top_b)
    prefix = product.cumsum(0).cumsum(1).numpy()
    rows = []
    for ka, kb in zip(ks_a, ks_b):
        mso = min(1.0, max(0.0, float(prefix[ka - 1, kb - 1]) / min(ka, kb)))
        rows.append((ka, kb, mso, max(ka, kb) / dim))
    return rows


def seeded_generator(seed: int, name: str) -> torch.Generator:
    """A CPU generator per (seed, tensor) so results do not depend on order or device."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def random_basis(dim: int, rank: int, seed: int, name: str) -> torch.Tensor:
    """Orthonormal (dim, rank): its first k columns span a uniformly random k-dim subspace, for every k."""
    gaussian = torch.randn(dim, rank, generator=seeded_generator(seed, name), dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    return (q * torch.sign(torch.diagonal(r))).float()


def random_permutation(size: int, seed: int, name: str) -> torch.Tensor:
    return torch.randperm(size, generator=seeded_generator(seed, "perm:" + name))
