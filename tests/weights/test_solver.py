"""The Gram-matrix solver against numpy's SVD in float64: singular values, top-k subspaces, orthonormality, and
LAPACK's SVD kept for the tall matrices it cannot serve."""
import numpy as np
import pytest
import torch

from explorer.weights import subspaces
from explorer.weights.subspaces import left_svd, singular_values


def planted(rows: int, cols: int, values: np.ndarray, seed: int = 0) -> torch.Tensor:
    """A matrix with the given singular values and random singular vectors."""
    rng = np.random.default_rng(seed)
    rank = len(values)
    u, _ = np.linalg.qr(rng.standard_normal((rows, rank)))
    v, _ = np.linalg.qr(rng.standard_normal((cols, rank)))
    return torch.from_numpy((u * values) @ v.T).float()


def reference(matrix: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    u, s, _ = np.linalg.svd(matrix.double().numpy(), full_matrices=False)
    return u, s


SHAPES = [(40, 40), (24, 64), (64, 24), (500, 16), (16, 1)]


@pytest.mark.parametrize("rows, cols", SHAPES)
def test_singular_values_match_numpy(rows, cols):
    matrix = torch.randn(rows, cols, generator=torch.Generator().manual_seed(rows * cols))
    _, expected = reference(matrix)
    got = singular_values(matrix).numpy()
    assert got.dtype == np.float64 and got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-8 * expected[0]
    assert np.all(np.diff(got) <= 0)


@pytest.mark.parametrize("rows, cols", SHAPES)
def test_left_vectors_are_orthonormal_and_span_the_top_subspaces(rows, cols):
    rank = min(rows, cols)
    values = np.geomspace(10.0, 0.01, rank)  # distinct values: every top-k subspace is well defined
    matrix = planted(rows, cols, values)
    u_ref, s_ref = reference(matrix)
    basis, got = left_svd(matrix, dtype=torch.float64)
    basis = basis.numpy()
    assert basis.shape == (rows, rank)
    assert np.abs(got.numpy() - s_ref).max() <= 1e-8 * s_ref[0]
    assert np.abs(basis.T @ basis - np.eye(rank)).max() <= 1e-10
    for k in range(1, rank + 1, max(1, rank // 5)):
        ours, theirs = basis[:, :k] @ basis[:, :k].T, u_ref[:, :k] @ u_ref[:, :k].T
        assert np.abs(ours - theirs).max() <= 1e-8, k


def test_projection_energies_of_another_matrix_match_the_svd():
    """What projection computes from the basis: the energy of a task update in the top-k alignment subspace."""
    align = planted(96, 48, np.linspace(3.0, 0.05, 48), seed=1)
    task = torch.randn(96, 48, generator=torch.Generator().manual_seed(2))
    u_ref, _ = reference(align)
    basis, _ = left_svd(align, dtype=torch.float64)
    ours = np.cumsum(((basis.numpy().T @ task.double().numpy()) ** 2).sum(1))
    theirs = np.cumsum(((u_ref.T @ task.double().numpy()) ** 2).sum(1))
    assert np.abs(ours - theirs).max() <= 1e-6 * theirs[-1]


def test_a_rank_deficient_tall_matrix_falls_back_to_lapack(monkeypatch):
    """An adapter's B @ A: U = A V / s would divide by zero, so LAPACK's SVD gives an orthonormal U."""
    generator = torch.Generator().manual_seed(3)
    matrix = torch.randn(80, 4, generator=generator) @ torch.randn(4, 32, generator=generator)
    calls = []
    lapack = torch.linalg.svd
    monkeypatch.setattr(torch.linalg, "svd", lambda *a, **k: calls.append(1) or lapack(*a, **k))
    basis, values = left_svd(matrix)
    assert calls, "the Gram solver was used on a rank-deficient tall matrix"
    assert torch.isfinite(basis).all()
    assert torch.allclose(basis.T @ basis, torch.eye(32), atol=1e-5)
    assert np.abs(values.numpy() - reference(matrix)[1]).max() <= 1e-5 * float(values[0])


def test_a_well_conditioned_tall_matrix_needs_no_lapack(monkeypatch):
    monkeypatch.setattr(torch.linalg, "svd", lambda *a, **k: pytest.fail("LAPACK's SVD was called"))
    matrix = planted(80, 32, np.geomspace(1.0, 10 * subspaces.GRAM_MIN_CONDITION, 32))
    basis, _ = left_svd(matrix)
    assert torch.allclose(basis.T @ basis, torch.eye(32), atol=1e-6)


def test_a_zero_update_has_zero_values():
    for shape in ((8, 20), (20, 8)):
        _, values = left_svd(torch.zeros(shape))
        assert torch.equal(values, torch.zeros(8, dtype=torch.float64))
        assert torch.equal(singular_values(torch.zeros(shape)), torch.zeros(8, dtype=torch.float64))


@pytest.mark.parametrize("dim, rank", [(4000, 96), (9000, 40), (500, 125), (96, 96), (64, 1)])
def test_random_basis_is_the_q_of_the_seeded_gaussian(dim, rank):
    """CholeskyQR2 a block of rows at a time for tall shapes (9000 rows: two whole blocks and a short one),
    Householder otherwise: both the unique Q with R's diagonal > 0."""
    gaussian = torch.randn(dim, rank, generator=subspaces.seeded_generator(7, "t"), dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    expected = q * torch.sign(torch.diagonal(r))
    got = subspaces.random_basis(dim, rank, 7, "t")
    assert got.dtype == torch.float32
    assert torch.allclose(got.double(), expected, atol=1e-6, rtol=0)
    assert torch.allclose(got.double().T @ got.double(), torch.eye(rank, dtype=torch.float64), atol=1e-5)


@pytest.mark.parametrize("dim, rank", [(9000, 40), (8192, 3), (4097, 5), (8195, 1), (4100, 4)])
def test_the_gaussian_drawn_a_block_at_a_time_is_the_gaussian_drawn_whole(dim, rank):
    """What lets each CholeskyQR2 pass draw the Gaussian again instead of holding it: the same bits, a short
    last block (fewer than 16 values, which torch draws another way) included."""
    whole = torch.randn(dim, rank, generator=subspaces.seeded_generator(3, "w"), dtype=torch.float64)
    assert torch.equal(torch.cat([block for _, block in subspaces._gaussian_blocks(dim, rank, 3, "w", [])]), whole)


def test_tensors_of_more_than_two_dimensions_are_matrices_of_their_first():
    kernel = torch.randn(8, 3, 2, 2)
    assert subspaces.as_matrix(kernel).shape == (8, 12)
    assert subspaces.as_matrix(torch.randn(5)).shape == (5, 1)
    assert torch.equal(subspaces.as_matrix(kernel)[3], kernel[3].reshape(-1))
