"""The projection side: `left` (the paper's P_k dT for every matrix, the default) and `short` (tall matrices as
dT V_k V_k^T), each checked against an independent numpy computation on planted Llama and Qwen2 families."""
import json

import numpy as np
import pytest
from builders import TINY, random_family
from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

from explorer.checkpoints.family import load_family
from explorer.cli import main
from explorer.weights.projection import apply_projection, projection_stats
from explorer.weights.updates import update_tensor


def numpy_point(family, variant: str, method: str, frac: float, side: str) -> dict:
    """Pooled metrics of the top-k alignment subspace, written from the definitions with numpy."""
    total = kept = inner = align_sq = inner_align = 0.0
    for name in family.tensor_names:
        task = update_tensor(family, variant, name).double().numpy()
        align = update_tensor(family, "alignment", name).double().numpy()
        t2, a2 = (task.reshape(-1, 1), align.reshape(-1, 1)) if task.ndim == 1 else (task, align)
        if side == "short" and task.ndim == 2 and t2.shape[0] > t2.shape[1]:
            t2, a2 = t2.T, a2.T
        u, s, _ = np.linalg.svd(a2, full_matrices=False)
        k = max(1, round(frac * min(a2.shape)))
        if not (s > 0).any():
            u = np.zeros_like(u)
        projected = u[:, :k] @ (u[:, :k].T @ t2)
        part = {"same": projected, "orth": t2 - projected, "opp": -projected}[method]
        total += (t2 ** 2).sum()
        kept += (part ** 2).sum()
        inner += (t2 * part).sum()
        align_sq += (a2 ** 2).sum()
        inner_align += (t2 * a2).sum()
    return {"energy_kept_ratio": kept / total, "cosine_task_kept": inner / np.sqrt(total * kept),
            "cosine_task_alignment": inner_align / np.sqrt(total * align_sq)}


@pytest.fixture(scope="module", params=[LlamaConfig, Qwen2Config])
def family(request, tmp_path_factory):
    """Full-rank updates: with a low-rank dA, the singular vectors past its rank are arbitrary and any two SVD
    routines may pick different ones."""
    return load_family(random_family(tmp_path_factory.mktemp("sides"), request.param(**TINY), seed=7, rank=96))


@pytest.mark.parametrize("side", ["left", "short"])
@pytest.mark.parametrize("method", ["same", "orth", "opp"])
@pytest.mark.parametrize("frac", [0.1, 0.5])
def test_metrics_match_an_independent_computation(family, side, method, frac):
    got = projection_stats(family, "useful", side=side).point(method, "alignment", frac)
    expected = numpy_point(family, "useful", method, frac, side)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-6), key


def test_the_sides_differ_on_tall_matrices_and_left_is_the_default(family):
    assert any(family.store("base").tensor(n).shape[0] > family.store("base").tensor(n).shape[1]
               for n in family.tensor_names if family.store("base").tensor(n).ndim == 2)
    left = projection_stats(family, "useful").point("same", "alignment", 0.1)
    short = projection_stats(family, "useful", side="short").point("same", "alignment", 0.1)
    assert left == projection_stats(family, "useful", side="left").point("same", "alignment", 0.1)
    assert abs(left["energy_kept_ratio"] - short["energy_kept_ratio"]) > 1e-3


@pytest.mark.parametrize("side", ["left", "short"])
def test_projected_weights_match_the_definition(family, side):
    model = AutoModelForCausalLM.from_pretrained(family.store("aligned").folder).eval()
    apply_projection(model, family, "useful", "same", "alignment", 0.3, side=side)
    params = dict(model.named_parameters())
    tall = next(n for n in family.tensor_names if params[n].ndim == 2 and params[n].shape[0] > params[n].shape[1])
    task = update_tensor(family, "useful", tall).double().numpy()
    align = update_tensor(family, "alignment", tall).double().numpy()
    if side == "short":
        task, align = task.T, align.T
    u = np.linalg.svd(align, full_matrices=False)[0]
    k = max(1, round(0.3 * min(align.shape)))
    projected = u[:, :k] @ (u[:, :k].T @ task)
    projected = projected.T if side == "short" else projected
    expected = family.store("aligned").tensor(tall).double().numpy() + projected
    assert np.allclose(params[tall].detach().double().numpy(), expected, atol=1e-5)


def test_cli_records_the_side(llama_family, capsys):
    assert main(["project", str(llama_family), "--variant", "useful", "--method", "orth", "--subspace",
                 "alignment", "--frac", "0.1", "--json"]) == 0
    default = json.loads(capsys.readouterr().out)
    assert main(["project", str(llama_family), "--variant", "useful", "--method", "orth", "--subspace",
                 "alignment", "--frac", "0.1", "--side", "short", "--json"]) == 0
    short = json.loads(capsys.readouterr().out)
    assert default["side"] == "left" and short["side"] == "short"
    family = load_family(llama_family)
    assert default["energy_kept_ratio"] == pytest.approx(numpy_point(family, "useful", "orth", 0.1, "left")
                                                         ["energy_kept_ratio"], abs=1e-6)
    assert short["energy_kept_ratio"] == pytest.approx(numpy_point(family, "useful", "orth", 0.1, "short")
                                                       ["energy_kept_ratio"], abs=1e-6)
    with pytest.raises(SystemExit) as exit_:
        main(["project", str(llama_family), "--variant", "useful", "--method", "orth", "--subspace", "alignment",
              "--frac", "0.1", "--side", "right"])
    assert exit_.value.code == 2
