import numpy as np
import pytest
import torch

from explorer.checkpoints.family import load_family
from explorer.weights.mso import by_layer, pair_table, update_mso
from explorer.weights.subspaces import energy_rank, overlap_curve


def _basis(matrix):
    u, s, _ = torch.linalg.svd(matrix, full_matrices=False)
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
