import numpy as np
import pytest
import torch

from explorer.checkpoints.family import load_family
from explorer.weights.mso import by_layer, pair_table, update_mso
from explorer.weights.subspaces import energy_rank, overlap_curve


def _basis(matrix):
    u, s, _ = torch.linalg.svd(matrix.double(), full_matrices=False)  # float32 bases are orthonormal to ~1e-6
    return u, (s.double() ** 2).numpy()


def test_mso_of_an_update_with_itself_is_one():
    m = torch.randn(40, 12)
    u, s2 = _basis(m)
    for _, _, mso, _ in overlap_curve(u, s2, u, s2, [0.1, 0.5, 0.99]):
        assert mso == pytest.approx(1.0, abs=1e-6)


def test_mso_is_symmetric_and_has_the_random_baseline():
    a, b = _basis(torch.randn(50, 8)), _basis(torch.randn(50, 20))
    ab = overlap_curve(*a, *b, [0.3, 0.9])
    ba = overlap_curve(*b, *a, [0.3, 0.9])
    for (ka, kb, m1, r1), (kb2, ka2, m2, r2) in zip(ab, ba):
        assert (ka, kb) == (ka2, kb2) and m1 == pytest.approx(m2) and r1 == r2 == max(ka, kb) / 50


def test_planted_shared_subspace_and_disjoint_subspaces():
    q, _ = torch.linalg.qr(torch.randn(64, 64))
    shared = q[:, :4]
    a = shared @ torch.randn(4, 30)
    b = shared @ torch.randn(4, 30)
    c = q[:, 10:14] @ torch.randn(4, 30)
    assert overlap_curve(*_basis(a), *_basis(b), [0.99])[0][2] == pytest.approx(1.0, abs=1e-4)
    assert overlap_curve(*_basis(a), *_basis(c), [0.99])[0][2] == pytest.approx(0.0, abs=1e-4)
    # Half of b's subspace shared: overlap 2 of 4 directions.
    d = torch.cat([q[:, :2], q[:, 20:22]], 1) @ torch.randn(4, 30)
    assert overlap_curve(*_basis(a), *_basis(d), [0.999])[0][2] == pytest.approx(0.5, abs=1e-3)


def test_energy_rank():
    sq = np.array([5.0, 3.0, 2.0])
    assert [energy_rank(sq, e) for e in (0.1, 0.5, 0.8, 0.81, 1.0)] == [1, 1, 2, 3, 3]
    assert energy_rank(np.zeros(3), 0.5) == 0


@pytest.fixture(scope="module")
def family(qwen_family):
    return load_family(qwen_family)


def test_family_mso_tables(family):
    tables = update_mso(family, [("useful", "harmful"), ("useful", "alignment")], [0.1, 0.5, 0.99])
    per_tensor = tables[("useful", "harmful")]
    assert set(per_tensor["group"]) == set(family.tensor_names)
    assert per_tensor["mso"].between(0, 1 + 1e-9).all()
    # 1-D Qwen2 biases are (d, 1) columns: k = 1 and baseline 1/d.
    bias = per_tensor[per_tensor["group"] == "model.layers.0.self_attn.k_proj.bias"]
    assert (bias["k_a"] == 1).all() and bias["mso_random"].iloc[0] == pytest.approx(1 / 16)
    layers = by_layer(per_tensor)
    assert {"layers.0", "layers.1", "embed_tokens", "lm_head"} <= set(layers["group"])


def test_family_mso_is_symmetric(family):
    table = pair_table(family, "useful", "harmful", [0.5])
    again = pair_table(family, "harmful", "useful", [0.5])
    np.testing.assert_allclose(table["mso"].to_numpy(), again["mso"].to_numpy(), rtol=1e-9)


def _numpy_mso(a: np.ndarray, b: np.ndarray, energies: list[float]) -> list[float]:
    """MSO from numpy's SVD in float64, written out from the definition."""
    (u_a, s_a, _), (u_b, s_b, _) = (np.linalg.svd(m, full_matrices=False) for m in (a, b))
    out = []
    for eta in energies:
        ka, kb = energy_rank(s_a**2, eta), energy_rank(s_b**2, eta)
        out.append(np.nan if ka == 0 or kb == 0 else
                   float(np.sum((u_a[:, :ka].T @ u_b[:, :kb]) ** 2) / min(ka, kb)))
    return out


def test_family_mso_matches_numpy_on_every_tensor_wide_and_tall(family):
    """Wide tensors go through A A^T's eigenvectors, tall ones (embeddings, MLP inputs, 1-D biases) through
    A^T B without bases: both must equal the definition on numpy's SVD."""
    from explorer.weights.subspaces import as_matrix
    from explorer.weights.updates import update_tensor

    energies = [0.1, 0.5, 0.9, 0.99]
    table = update_mso(family, [("alignment", "useful")], energies)[("alignment", "useful")]
    shapes = set()
    for name in family.tensor_names:
        a, b = (as_matrix(update_tensor(family, u, name)).double().numpy() for u in ("alignment", "useful"))
        shapes.add(a.shape[0] > a.shape[1])
        got = table[table["group"] == name].sort_values("energy_frac")["mso"].to_numpy()
        np.testing.assert_allclose(got, _numpy_mso(a, b, energies), atol=1e-8, err_msg=name)
    assert shapes == {True, False}


def test_tall_overlaps_fall_back_to_bases_where_a_used_value_is_tiny():
    from explorer.weights.subspaces import right_svd, tall_overlap_curve

    rng = np.random.default_rng(4)
    u, _ = np.linalg.qr(rng.standard_normal((300, 6)))
    v, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    a = torch.from_numpy((u * [1.0, 0.8, 0.6, 0.4, 3e-6, 2e-6]) @ v.T).double()  # all the energy needs tiny ones
    b = torch.from_numpy(rng.standard_normal((300, 6)))
    energies = [0.5, 1.0]
    got = tall_overlap_curve(a, right_svd(a), b, right_svd(b), energies)
    expected = _numpy_mso(a.numpy(), b.numpy(), energies)
    assert [k for k, _, _, _ in got] == [2, 6]
    np.testing.assert_allclose([m for _, _, m, _ in got], expected, atol=1e-9)
