"""Linear algebra shared by the analyses: exact singular values and vectors, energy ranks, subspace overlap,
random bases."""
from __future__ import annotations

import hashlib
from collections.abc import Iterator

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
    """2-D tensors as they are; 1-D tensors as a (d, 1) column; more dimensions (a convolution's kernel, experts
    stacked in one tensor) as their first dimension against the rest, as a convolution's weight is read."""
    if update.ndim == 2:
        return update
    return update.reshape(-1, 1) if update.ndim == 1 else update.reshape(update.shape[0], -1)


# A tall matrix's U comes from A V / s, whose orthogonality error grows as eps64 / cond^2: below this ratio of
# the smallest to the largest singular value (a rank-deficient update, such as an adapter's B @ A), LAPACK's SVD
# is used instead.
GRAM_MIN_CONDITION = 1e-4
BLOCK = 4096  # rows (or columns) converted to float64 at a time, so no float64 copy of a whole matrix is made


def _blocks(matrix: torch.Tensor, device: str, long_dim: int):
    for block in matrix.split(BLOCK, dim=long_dim):
        yield block.to(device, torch.float64)


def _gram_eigh(matrix: torch.Tensor, device: str, vectors: bool
               ) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
    """Eigendecomposition of the smaller Gram matrix (A A^T when rows <= cols, else A^T A) in float64, largest
    first: (singular values, eigenvectors or None, whether the eigenvectors are A's left singular vectors)."""
    wide = matrix.shape[0] <= matrix.shape[1]
    size = min(matrix.shape)
    gram = torch.zeros(size, size, dtype=torch.float64, device=device)
    for block in _blocks(matrix, device, 1 if wide else 0):
        gram.addmm_(block, block.T) if wide else gram.addmm_(block.T, block)
    if vectors:
        eigenvalues, eigenvectors = torch.linalg.eigh(gram)
        eigenvectors = eigenvectors.flip(1)
    else:
        eigenvalues, eigenvectors = torch.linalg.eigvalsh(gram), None
    return eigenvalues.flip(0).clamp_min(0.0).sqrt(), eigenvectors, wide


def _columns(values: torch.Tensor, energy: float | None) -> int | None:
    """How many of the top singular vectors hold `energy` of the squared singular values (None: all)."""
    return None if energy is None else max(1, energy_rank((values**2).cpu().numpy(), energy))


def singular_values(matrix: torch.Tensor, device: str | None = None) -> torch.Tensor:
    """Exact singular values, largest first, in float64 on the CPU, from the eigenvalues of the smaller Gram
    matrix: each is within about 1e-8 of the largest (float64 squares, then takes the square root)."""
    values, _, _ = _gram_eigh(matrix, device or settings().device, vectors=False)
    return values.cpu()


def left_svd(matrix: torch.Tensor, device: str | None = None, dtype: torch.dtype = torch.float32,
             energy: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """An exact thin SVD's left singular vectors (d, r) in `dtype`, or only the top ones holding `energy` of the
    squared singular values, and the singular values (r,) in float64, on the CPU.

    The eigendecomposition of the smaller Gram matrix in float64 takes about 0.4-0.9x the time of LAPACK's SVD
    in float32 on CPU, and much less on CUDA, where the SVD is slow. For a wide or square matrix the eigenvectors
    of A A^T are U; for a tall one, U = A V / s from those of A^T A, unless the matrix is too ill-conditioned.
    """
    device = device or settings().device
    values, vectors, wide = _gram_eigh(matrix, device, vectors=True)
    columns = _columns(values, energy)
    vectors = vectors[:, :columns]
    if wide:
        return vectors.to(dtype).cpu(), values.cpu()
    if values[-1] > GRAM_MIN_CONDITION * values[0]:
        scaled = vectors / values[:vectors.shape[1]]
        basis = torch.empty(matrix.shape[0], vectors.shape[1], dtype=dtype)
        for start, block in zip(range(0, matrix.shape[0], BLOCK), _blocks(matrix, device, 0)):
            basis[start:start + len(block)] = (block @ scaled).to(dtype).cpu()
        return basis, values.cpu()
    u, values, _ = torch.linalg.svd(matrix.to(device, dtype), full_matrices=False)
    return u[:, :columns].cpu(), values.double().cpu()


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
    ks_a, ks_b = _ranks(sq_a, energies), _ranks(sq_b, energies)
    top_a, top_b = max(ks_a), max(ks_b)
    if top_a == 0 or top_b == 0:
        return _curve(None, ks_a, ks_b, basis_a.shape[0])
    return _curve(basis_a[:, :top_a].double().T @ basis_b[:, :top_b].double(), ks_a, ks_b, basis_a.shape[0])


def right_svd(matrix: torch.Tensor, device: str | None = None, energy: float | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Right singular vectors (n, k) of a tall matrix, the top ones holding `energy`, and its singular values,
    in float64 on the CPU, from the eigendecomposition of A^T A."""
    values, vectors, _ = _gram_eigh(matrix, device or settings().device, vectors=True)
    return vectors[:, :_columns(values, energy)].cpu(), values.cpu()


def tall_overlap_curve(matrix_a: torch.Tensor, right_a: tuple[torch.Tensor, torch.Tensor], matrix_b: torch.Tensor,
                       right_b: tuple[torch.Tensor, torch.Tensor], energies: list[float], device: str | None = None
                       ) -> list[tuple[int, int, float, float]]:
    """overlap_curve of two tall matrices of one shape without their (d, n) bases: U = A V / s, so
    U_a^T U_b = S_a^-1 V_a^T (A^T B) V_b S_b^-1, from one float64 product A^T B taken a block of rows at a time.
    Where a used singular value is small against the largest, the division would amplify round-off, and the
    bases are computed instead (left_svd)."""
    (v_a, s_a), (v_b, s_b) = right_a, right_b
    ks_a, ks_b = _ranks((s_a**2).numpy(), energies), _ranks((s_b**2).numpy(), energies)
    top_a, top_b = max(ks_a), max(ks_b)
    dim = matrix_a.shape[0]
    if top_a == 0 or top_b == 0:
        return _curve(None, ks_a, ks_b, dim)
    if s_a[top_a - 1] <= GRAM_MIN_CONDITION * s_a[0] or s_b[top_b - 1] <= GRAM_MIN_CONDITION * s_b[0]:
        basis_a, basis_b = (left_svd(m, device, torch.float64, max(energies))[0] for m in (matrix_a, matrix_b))
        return _curve(basis_a[:, :top_a].T @ basis_b[:, :top_b], ks_a, ks_b, dim)
    device = device or settings().device
    cross = torch.zeros(matrix_a.shape[1], matrix_b.shape[1], dtype=torch.float64, device=device)
    for block_a, block_b in zip(_blocks(matrix_a, device, 0), _blocks(matrix_b, device, 0)):
        cross.addmm_(block_a.T, block_b)
    left = v_a[:, :top_a].to(device) / s_a[:top_a].to(device)
    right = v_b[:, :top_b].to(device) / s_b[:top_b].to(device)
    return _curve((left.T @ cross @ right).cpu(), ks_a, ks_b, dim)


def _ranks(sq_values: np.ndarray, energies: list[float]) -> list[int]:
    return [energy_rank(sq_values, e) for e in energies]


def _curve(product: torch.Tensor | None, ks_a: list[int], ks_b: list[int], dim: int
           ) -> list[tuple[int, int, float, float]]:
    """(k_a, k_b, mso, random baseline) per energy from U_a^T U_b over the top columns (None: an update is zero)."""
    if product is None:
        return [(ka, kb, float("nan"), float("nan")) for ka, kb in zip(ks_a, ks_b)]
    prefix = (product**2).cumsum(0).cumsum(1).numpy()
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
    """Orthonormal (dim, rank): the Q of a seeded Gaussian's QR with R's diagonal positive, which is unique, so
    its first k columns span a uniformly random k-dim subspace, for every k."""
    if dim < 4 * rank:
        gaussian = torch.randn(dim, rank, generator=seeded_generator(seed, name), dtype=torch.float64)
        q, r = torch.linalg.qr(gaussian)
        return q.mul_(torch.sign(torch.diagonal(r))).float()
    # A tall Gaussian is well conditioned (cond < 3), where CholeskyQR2 gives the same Q to round-off. Each pass
    # draws the Gaussian again, a block of rows at a time (the generator's stream in blocks gives the same values),
    # rather than holding it in float64: only the float32 result is as large as the matrix (the peak of a projection).
    uppers: list[torch.Tensor] = []
    for _ in range(2):
        gram = torch.zeros(rank, rank, dtype=torch.float64)
        for _, block in _gaussian_blocks(dim, rank, seed, name, uppers):
            gram.addmm_(block.T, block)
        uppers.append(torch.linalg.cholesky(gram, upper=True))
    basis = torch.empty(dim, rank)
    for start, block in _gaussian_blocks(dim, rank, seed, name, uppers):
        basis[start:start + len(block)] = block
    return basis


def _gaussian_blocks(dim: int, rank: int, seed: int, name: str, uppers: list[torch.Tensor]
                     ) -> Iterator[tuple[int, torch.Tensor]]:
    """The seeded (dim, rank) Gaussian a block of rows at a time, (first row, block), each block divided on the
    right by every triangular factor in `uppers`, in order."""
    starts = list(range(0, dim, BLOCK))
    if len(starts) > 1 and (dim - starts[-1]) * rank < 16:
        starts.pop()  # torch draws fewer than 16 normal values another way: a short tail joins the block before it
    generator = seeded_generator(seed, name)
    for start, stop in zip(starts, starts[1:] + [dim]):
        block = torch.randn(stop - start, rank, generator=generator, dtype=torch.float64)
        for upper in uppers:
            block = torch.linalg.solve_triangular(upper, block, upper=True, left=False)
        yield start, block


def random_permutation(size: int, seed: int, name: str) -> torch.Tensor:
    return torch.randperm(size, generator=seeded_generator(seed, "perm:" + name))
