"""LoX's extrapolation W = W_aligned + α · U_k U_kᵀ dA, against an independent numpy computation from the files."""
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from transformers import AutoModelForCausalLM

from explorer.checkpoints.architectures import tensor_role
from explorer.checkpoints.family import ALIGNED, load_family
from explorer.checkpoints.models import load_model
from explorer.core.errors import OutputError, ParameterError
from explorer.evaluation.scores import PointScorer
from explorer.results.lox import save_lox_model
from explorer.weights.lox import apply_lox, check_alpha, lox_point


def numpy_lox(family_file, alpha: float, frac: float) -> tuple[dict[str, np.ndarray], float, float]:
    """Every tensor of the extrapolated model, the top-k energy share and the relative change, from the
    safetensors files with numpy's SVD in float64."""
    base = load_file(family_file.parent / "base" / "model.safetensors")
    aligned = load_file(family_file.parent / "aligned" / "model.safetensors")
    out, kept, total, weight_sq = {}, 0.0, 0.0, 0.0
    for name, weight in aligned.items():
        weight = weight.astype(np.float64)
        if weight.ndim == 2 and tensor_role(name, "llama").layer >= 0:
            update = weight - base[name].astype(np.float64)
            u, s, _ = np.linalg.svd(update, full_matrices=False)
            k = max(1, round(frac * min(update.shape)))
            kept, total = kept + float((s[:k] ** 2).sum()), total + float((s ** 2).sum())
            weight_sq += float((weight ** 2).sum())
            weight = weight + alpha * u[:, :k] @ (u[:, :k].T @ update)
        out[name] = weight
    return out, kept / total, alpha * np.sqrt(kept / weight_sq)


@pytest.mark.parametrize("alpha,frac", [(1.25, 0.1), (0.5, 0.25), (3.0, 0.03)])
def test_extrapolation_matches_numpy(llama_family, alpha, frac):
    family = load_family(llama_family)
    expected, share, change = numpy_lox(llama_family, alpha, frac)
    model = load_model(family, ALIGNED)
    metrics = apply_lox(model, family, alpha, frac)
    params = dict(model.named_parameters())
    for name, weight in expected.items():
        got = params[name].detach().double().numpy()
        assert np.abs(got - weight).max() <= 1e-6 * max(1.0, np.abs(weight).max()), name
    assert metrics["alignment_energy_extrapolated"] == pytest.approx(share, rel=1e-6)
    assert metrics["relative_change"] == pytest.approx(change, rel=1e-6)
    assert metrics["tensors"] == 14  # 7 matrices in each of the 2 blocks; embeddings and lm_head keep aligned's
    assert lox_point(family, alpha, frac) == pytest.approx(metrics)


def test_a_subspace_holding_the_whole_update_extrapolates_it_all(llama_family):
    """The planted alignment updates have rank 4: with k >= 4, U_k U_kᵀ dA is dA, so α = 1 gives base + 2 dA in
    every block matrix (and share 1)."""
    family = load_family(llama_family)
    base = load_file(llama_family.parent / "base" / "model.safetensors")
    aligned = load_file(llama_family.parent / "aligned" / "model.safetensors")
    model = load_model(family, ALIGNED)
    assert apply_lox(model, family, 1.0, 0.5)["alignment_energy_extrapolated"] == pytest.approx(1.0)
    name = "model.layers.1.mlp.down_proj.weight"
    doubled = base[name] + 2 * (aligned[name] - base[name])
    assert np.allclose(dict(model.named_parameters())[name].detach().numpy(), doubled, atol=1e-6)


def test_alpha_zero_is_the_aligned_model_and_a_lox_point_replaces_a_projection(fresh_family, cache):
    family = load_family(fresh_family)
    aligned = load_file(fresh_family.parent / "aligned" / "model.safetensors")
    scorer = PointScorer(family)
    scorer.project("useful", "orth", "alignment", 0.5)  # the loaded model now holds a projected fine-tune
    scorer.lox_model(0.0, 0.1)
    for name, param in scorer.model.named_parameters():
        assert np.array_equal(param.detach().numpy(), aligned[name]), name


@pytest.mark.parametrize("alpha", [-0.5, float("nan"), float("inf"), 101.0])
def test_bad_alpha_is_refused(alpha):
    with pytest.raises(ParameterError, match="LoX's α must be a number from 0 to 100"):
        check_alpha(alpha)


def test_saved_model_loads_as_the_extrapolation_and_never_overwrites(fresh_family, cache, tmp_path):
    family = load_family(fresh_family)
    expected, _, _ = numpy_lox(fresh_family, 1.25, 0.1)
    folder = save_lox_model(family, 1.25, 0.1, tmp_path / "lox")
    saved = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    for name, param in saved.named_parameters():
        assert np.allclose(param.detach().double().numpy(), expected[name], atol=1e-6), name
    assert (folder / "tokenizer.json").exists()
    with pytest.raises(OutputError, match="it exists; give a new folder"):
        save_lox_model(family, 1.25, 0.1, folder)
    assert {p.name for p in tmp_path.iterdir()} - {"cache"} == {"lox"}  # no temporary folder left behind
