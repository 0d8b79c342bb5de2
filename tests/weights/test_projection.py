import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from explorer.checkpoints.family import load_family
from explorer.weights.projection import (
    SUBSPACES,
    apply_projection,
    oriented,
    projection_stats,
    rank_k,
)
from explorer.weights.updates import update_tensor


@pytest.fixture(scope="module")
def family(llama_family):
    return load_family(llama_family)


@pytest.mark.parametrize("subspace", SUBSPACES)
@pytest.mark.parametrize("frac", [0.05, 0.3, 0.7])
def test_same_and_orth_energies_sum_to_one(family, subspace, frac):
    stats = projection_stats(family, "useful")
    same = stats.point("same", subspace, frac)["energy_kept_ratio"]
    orth = stats.point("orth", subspace, frac)["energy_kept_ratio"]
    assert 0 < same < 1 and same + orth == pytest.approx(1.0, abs=1e-9)


def test_opposite_flips_cosine_and_keeps_energy(family):
    stats = projection_stats(family, "harmful")
    same, opp = stats.point("same", "alignment", 0.4), stats.point("opp", "alignment", 0.4)
    assert opp["energy_kept_ratio"] == pytest.approx(same["energy_kept_ratio"])
    assert opp["cosine_task_kept"] == pytest.approx(-same["cosine_task_kept"])
    assert same["cosine_task_kept"] == pytest.approx(np.sqrt(same["energy_kept_ratio"]))


def test_energy_grows_with_rank(family):
    curve = projection_stats(family, "useful").energy_curve(np.linspace(0.05, 0.95, 10))
    for _, group in curve.groupby("subspace"):
        assert np.all(np.diff(group["energy_kept_ratio"].to_numpy()) >= -1e-12)


def test_cosine_task_alignment_is_the_correct_formula(family):
    names = family.tensor_names
    task = torch.cat([update_tensor(family, "useful", n).flatten() for n in names]).double()
    align = torch.cat([update_tensor(family, "alignment", n).flatten() for n in names]).double()
    expected = float(task @ align / (task.norm() * align.norm()))
    got = projection_stats(family, "useful").point("same", "alignment", 0.5)["cosine_task_alignment"]
    assert got == pytest.approx(expected, rel=1e-6)


def test_k_follows_the_rounding_rule():
    assert rank_k(32, 0.01) == 1 and rank_k(32, 0.5) == 16 and rank_k(32, 0.99) == 32 and rank_k(1, 0.3) == 1


def _loaded(family, member):
    return AutoModelForCausalLM.from_pretrained(family.store(member).folder).eval()


@pytest.mark.parametrize("side", ["left", "short"])
def test_full_rank_reproduces_fine_tuned_matrices(family, side):
    """At full rank `same` rebuilds the fine-tune, except tall matrices on the paper's left side: their left
    subspace spans only N of M dimensions (the reason `short` exists)."""
    model = _loaded(family, "aligned")
    apply_projection(model, family, "useful", "same", "alignment", 0.999, side=side)
    tuned = family.store("useful")
    tall = 0
    for name, param in model.named_parameters():
        if param.ndim != 2:
            continue
        if side == "left" and param.shape[0] > param.shape[1]:
            tall += 1
            assert not torch.allclose(param.detach(), tuned.tensor(name), atol=1e-5, rtol=1e-4)
        else:
            torch.testing.assert_close(param.detach(), tuned.tensor(name), atol=1e-5, rtol=1e-4)
    assert tall > 0 or side == "short"


def test_one_dimensional_tensors_keep_their_alignment_direction(family):
    model = _loaded(family, "aligned")
    apply_projection(model, family, "useful", "same", "alignment", 0.5)
    name = "model.norm.weight"
    align, task = update_tensor(family, "alignment", name), update_tensor(family, "useful", name)
    expected = family.store("aligned").tensor(name) + (task @ align) / (align @ align) * align
    torch.testing.assert_close(dict(model.named_parameters())[name].detach(), expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("method,subspace", [("same", "alignment"), ("orth", "random"), ("opp", "random-k")])
def test_applied_weights_match_the_metrics(family, method, subspace):
    model = _loaded(family, "aligned")
    point = apply_projection(model, family, "contaminated", method, subspace, 0.3)
    aligned = family.store("aligned")
    kept = {n: p.detach() - aligned.tensor(n) for n, p in model.named_parameters()}
    total = sum(float((update_tensor(family, "contaminated", n) ** 2).sum()) for n in kept)
    energy = sum(float((v ** 2).sum()) for v in kept.values())
    assert energy / total == pytest.approx(point["energy_kept_ratio"], rel=1e-4)


def test_random_subspace_is_seeded(family):
    a = projection_stats(family, "useful", seed=1).point("same", "random", 0.3)
    b = projection_stats(family, "useful", seed=1).point("same", "random", 0.3)
    c = projection_stats(family, "useful", seed=2).point("same", "random", 0.3)
    assert a == b and a["energy_kept_ratio"] != c["energy_kept_ratio"]


def test_top_subspace_of_aligned_update_keeps_more_of_a_task_update_that_shares_it(tmp_path):
    """A task update planted in the alignment update's top subspace keeps far more energy there than at random."""
    from builders import TINY, low_rank, write_family
    from transformers import LlamaConfig

    config = LlamaConfig(**TINY)
    torch.manual_seed(0)
    base = dict(AutoModelForCausalLM.from_config(config).state_dict())
    gen = torch.Generator().manual_seed(5)
    aligned, useful = {}, {}
    for k, v in base.items():
        left = torch.randn(oriented(v).shape[0], 3, generator=gen)
        aligned[k] = v + low_rank(oriented(v).shape, 3, 0.1, gen, left).reshape(v.shape)
        useful[k] = aligned[k] + low_rank(oriented(v).shape, 3, 0.1, gen, left).reshape(v.shape)
    family = load_family(write_family(tmp_path, config, {"base": base, "aligned": aligned, "useful": useful}))
    stats = projection_stats(family, "useful")
    top = stats.point("same", "alignment", 0.1)["energy_kept_ratio"]
    assert top > 0.95
    assert stats.point("same", "random", 0.1)["energy_kept_ratio"] < 0.5


@pytest.mark.parametrize("method,subspace,side", [("same", "alignment", "left"), ("orth", "random-k", "left"),
                                                  ("opp", "random", "short"), ("orth", "alignment", "short")])
def test_a_step_of_rho_rewrites_only_the_changed_directions_and_equals_a_fresh_projection(family, method, subspace,
                                                                                        side):
    """InPlaceProjector: stepping ρ up and down on one model (Δk per tensor) gives the weights a fresh
    projection at the last ρ gives; a new setting rewrites every tensor."""
    from explorer.weights.projection import InPlaceProjector

    stepped = _loaded(family, "aligned")
    projector = InPlaceProjector(stepped, family)
    projector.apply("contaminated", "same", "alignment", 0.5, side=side)  # another setting first
    for frac in (0.2, 0.21, 0.6, 0.35):
        point = projector.apply("contaminated", method, subspace, frac, side=side)
    fresh = _loaded(family, "aligned")
    expected = apply_projection(fresh, family, "contaminated", method, subspace, 0.35, side=side)
    assert point == expected
    fresh_params = dict(fresh.named_parameters())
    for name, param in stepped.named_parameters():
        torch.testing.assert_close(param.detach(), fresh_params[name].detach(), atol=1e-6, rtol=1e-5)
    aligned = _loaded(family, "aligned")
    projector.forget()  # e.g. a Safe LoRA point wrote the weights: the next point rewrites every tensor
    with torch.no_grad():
        for (_, param), (_, original) in zip(stepped.named_parameters(), aligned.named_parameters()):
            param.copy_(original)
    projector.apply("contaminated", method, subspace, 0.35, side=side)
    for name, param in stepped.named_parameters():
        torch.testing.assert_close(param.detach(), fresh_params[name].detach(), atol=1e-6, rtol=1e-5)


def test_a_step_that_changes_no_k_reads_nothing(family, monkeypatch):
    from explorer.weights import projection
    from explorer.weights.projection import InPlaceProjector

    model = _loaded(family, "aligned")
    projector = InPlaceProjector(model, family)
    projector.apply("useful", "same", "alignment", 0.5)
    parts = []
    original = InPlaceProjector._part
    monkeypatch.setattr(InPlaceProjector, "_part", staticmethod(lambda *a: parts.append((*a[5:7], a[0].shape[1])) or original(*a)))
    monkeypatch.setattr(projection, "update_tensor", lambda *a: pytest.fail("a Δk step reads a checkpoint"))
    projector.apply("useful", "same", "alignment", 0.5)
    assert parts == []
    projector.apply("useful", "same", "alignment", 0.6)
    assert parts and all(0 < high - low <= round(0.1 * rank) + 1 for low, high, rank in parts)
