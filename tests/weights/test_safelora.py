"""Safe LoRA against an independent numpy computation of its rule, and on a LoRA adapter against the reference
procedure of its authors."""
import json
import re

import numpy as np
import pytest
import torch
from builders import TINY, adapter_family, low_rank, write_family
from safetensors.numpy import load_file as load_numpy
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, LlamaConfig

import explorer.weights.safelora as safelora_module
from explorer.checkpoints.family import load_family
from explorer.core.errors import ParameterError
from explorer.weights.safelora import apply_safelora, safelora_stats

BLOCK_MATRIX = re.compile(r"^model\.layers\.\d+\.")


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Layer 0's task updates lie in their alignment update's column space; layer 1's are independent of it."""
    config = LlamaConfig(**TINY)
    torch.manual_seed(0)
    base = dict(AutoModelForCausalLM.from_config(config).state_dict())
    gen = torch.Generator().manual_seed(7)
    aligned, useful = {}, {}
    for name, weight in base.items():
        left = torch.randn(weight.shape[0], 3, generator=gen) if weight.ndim == 2 else None
        aligned[name] = weight + low_rank(weight.shape, 3, 0.1, gen, left)
        useful[name] = aligned[name] + low_rank(weight.shape, 3, 0.1, gen, left if ".layers.0." in name else None)
    root = tmp_path_factory.mktemp("planted")
    return load_family(write_family(root, config, {"base": base, "aligned": aligned, "useful": useful}))


def _numpy_rule(family, variant):
    """Per tensor, from the checkpoint files: the task update, C dT with C = V V^T / ||V||_F built explicitly, and
    whether the tensor is a candidate."""
    read = {m: load_numpy(family.store(m).folder / "model.safetensors") for m in ("base", "aligned", variant)}
    tensors = {}
    for name in sorted(read["base"]):
        task = read[variant][name].astype(np.float64) - read["aligned"][name]
        candidate = task.ndim == 2 and bool(BLOCK_MATRIX.match(name))
        projected = None
        if candidate:
            align = read["aligned"][name].astype(np.float64) - read["base"][name]
            projected = (align @ align.T / np.linalg.norm(align)) @ task
        tensors[name] = (task, projected)
    return tensors


def _numpy_cosines(tensors):
    return {n: float((p * t).sum() / (np.linalg.norm(p) * np.linalg.norm(t)))
            for n, (t, p) in tensors.items() if p is not None}


def _numpy_metrics(tensors, chosen):
    kept = {n: p if n in chosen else t for n, (t, p) in tensors.items()}
    total = sum((t ** 2).sum() for t, _ in tensors.values())
    kept_sq = sum((k ** 2).sum() for k in kept.values())
    inner = sum((tensors[n][0] * k).sum() for n, k in kept.items())
    return {"energy_kept_ratio": kept_sq / total, "cosine_task_kept": inner / np.sqrt(total * kept_sq),
            "projected_tensors": len(chosen), "candidate_tensors": sum(p is not None for _, p in tensors.values())}


@pytest.fixture(params=["planted", "llama_family", "qwen_family"])
def family_and_rule(request):
    family = request.getfixturevalue(request.param)
    family = family if not hasattr(family, "suffix") else load_family(family)
    return family, _numpy_rule(family, "useful")


def test_metrics_agree_with_numpy_in_threshold_and_number_modes(family_and_rule):
    family, tensors = family_and_rule
    stats = safelora_stats(family, "useful")
    cosines = _numpy_cosines(tensors)
    got = stats.candidates.set_index("tensor")["cosine"]
    assert set(got.index) == set(cosines)
    np.testing.assert_allclose(got[list(cosines)].to_numpy(), list(cosines.values()), rtol=1e-5, atol=1e-7)
    ordered = sorted(cosines, key=cosines.get)
    middles = [(cosines[a] + cosines[b]) / 2 for a, b in zip(ordered[:-1], ordered[1:])]
    for tau in [middles[0], middles[len(middles) // 2], middles[-1], 1.0]:
        expected = _numpy_metrics(tensors, {n for n, c in cosines.items() if c <= tau})
        assert stats.point(threshold=tau) == pytest.approx(expected, rel=1e-5)
    for count in (1, len(ordered) // 2, len(ordered)):
        expected = _numpy_metrics(tensors, set(ordered[:count]))
        assert stats.point(layers=count) == pytest.approx(expected, rel=1e-5)
        assert set(stats.projected(layers=count)) == set(ordered[:count])


def test_planted_shared_subspace_has_the_highest_cosines(planted):
    stats = safelora_stats(planted, "useful")
    cosines = stats.candidates.set_index("tensor")["cosine"]
    shared = cosines[cosines.index.str.contains(r"\.layers\.0\.")]
    independent = cosines[cosines.index.str.contains(r"\.layers\.1\.")]
    assert shared.min() > independent.max() and shared.min() > 0.5
    assert set(stats.projected(layers=len(independent))) == set(independent.index)
    assert set(stats.projected(threshold=float(independent.max()))) == set(independent.index)


@pytest.mark.parametrize("selection", [{"threshold": 0.6}, {"layers": 5}])
def test_weights_written_in_place_match_numpy(planted, selection):
    tensors = _numpy_rule(planted, "useful")
    cosines = _numpy_cosines(tensors)
    chosen = ({n for n, c in cosines.items() if c <= selection["threshold"]} if "threshold" in selection
              else set(sorted(cosines, key=cosines.get)[:selection["layers"]]))
    assert 0 < len(chosen) < len(cosines)
    model = AutoModelForCausalLM.from_pretrained(planted.store("aligned").folder).eval()
    point = apply_safelora(model, planted, "useful", **selection)
    assert point["projected_tensors"] == len(chosen)
    aligned = load_numpy(planted.store("aligned").folder / "model.safetensors")
    for name, param in model.named_parameters():
        task, projected = tensors[name]
        expected = aligned[name] + (projected if name in chosen else task)
        np.testing.assert_allclose(param.detach().numpy(), expected, rtol=1e-4, atol=1e-6)


def test_any_threshold_or_count_costs_no_new_pass(llama_family, monkeypatch):
    family = load_family(llama_family)
    first = safelora_stats(family, "harmful")

    def no_reads(*args, **kwargs):
        raise AssertionError("a checkpoint tensor was read again")

    monkeypatch.setattr(safelora_module, "update_tensor", no_reads)
    again = safelora_stats(load_family(llama_family), "harmful")
    for tau in np.linspace(-0.1, 1.0, 12):
        assert again.point(threshold=float(tau)) == first.point(threshold=float(tau))
    for count in range(1, len(first.candidates) + 1):
        assert again.point(layers=count)["projected_tensors"] == count


def test_threshold_grid_spreads_over_the_observed_cosines(llama_family):
    stats = safelora_stats(load_family(llama_family), "useful")
    grid = stats.threshold_grid()
    cosines = np.sort(stats.candidates["cosine"].to_numpy())
    assert len(grid) >= 6 and grid == sorted(grid) and grid[-1] == cosines[-1] and grid[0] < np.median(cosines)
    assert [stats.point(threshold=t)["projected_tensors"] for t in grid] == \
        [int((cosines <= t).sum()) for t in grid]


@pytest.mark.parametrize("selection,message", [
    ({}, "exactly one of a threshold"),
    ({"threshold": 0.5, "layers": 2}, "not both"),
    ({"layers": 0}, "whole number >= 1"),
    ({"layers": 2.5}, "whole number >= 1"),
    ({"threshold": 1.5}, r"outside \[-1, 1\]"),
    ({"threshold": float("nan")}, r"outside \[-1, 1\]"),
    ({"layers": 999}, "has 14 candidates"),
])
def test_bad_selections_are_clear_errors(llama_family, selection, message):
    stats = safelora_stats(load_family(llama_family), "useful")
    with pytest.raises(ParameterError, match=message):
        stats.point(**selection)


def test_alignment_is_not_a_variant(llama_family):
    with pytest.raises(ParameterError, match="'alignment' is not a fine-tuned member"):
        safelora_stats(load_family(llama_family), "alignment")


def _reference_safelora(family, threshold):
    """The Safe LoRA authors' `apply_safelora` (threshold mode, CPU), restated on the files: the safety matrices
    V V^T / ||V||_F of base - aligned for the adapter's target modules; lora_B replaced by C @ lora_B wherever
    cos((C B) A, B A), rounded to 5 decimals, is at most the threshold. Returns the merged updates and cosines."""
    adapter_dir = family.store("adapter").folder
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    base = load_file(family.store("base").folder / "model.safetensors")
    aligned = load_file(family.store("aligned").folder / "model.safetensors")
    adapter = load_file(adapter_dir / "adapter_model.safetensors")
    updates, cosines = {}, {}
    for key in sorted(k for k in adapter if ".lora_A." in k):
        name = key.split(".lora_A.")[0].removeprefix("base_model.model.") + ".weight"
        lora_a, lora_b = adapter[key].float(), adapter[key.replace(".lora_A.", ".lora_B.")].float()
        vec = base[name].float() - aligned[name].float()
        safety = torch.mm(vec, vec.t()) / torch.norm(vec)
        projected_b = torch.mm(safety, lora_b)
        cosine = torch.nn.functional.cosine_similarity(torch.mm(projected_b, lora_a).reshape(1, -1),
                                                       torch.mm(lora_b, lora_a).reshape(1, -1))
        cosines[name] = round(float(cosine), 5)
        chosen_b = projected_b if cosines[name] <= threshold else lora_b
        updates[name] = config["lora_alpha"] / config["r"] * torch.mm(chosen_b, lora_a)
    return updates, cosines


LORA_TARGETS = ["q_proj", "v_proj", "down_proj", "gate_proj"]


def test_lora_adapter_matches_the_reference_procedure(llama_family, tmp_path):
    family, _ = adapter_family(llama_family, tmp_path, target_modules=LORA_TARGETS)
    _, cosines = _reference_safelora(family, -1.0)
    ordered = sorted(cosines.values())
    tau = (ordered[len(ordered) // 2 - 1] + ordered[len(ordered) // 2]) / 2
    updates, cosines = _reference_safelora(family, tau)
    stats = safelora_stats(family, "adapter")
    assert set(stats.candidates["tensor"]) == set(updates)
    got = stats.candidates.set_index("tensor")["cosine"]
    for name, cosine in cosines.items():
        assert got[name] == pytest.approx(cosine, abs=2e-5)
    model = AutoModelForCausalLM.from_pretrained(family.store("aligned").folder).eval()
    point = apply_safelora(model, family, "adapter", threshold=tau)
    assert point["projected_tensors"] == sum(c <= tau for c in cosines.values()) == len(cosines) // 2
    aligned = family.store("aligned")
    for name, param in model.named_parameters():
        expected = updates.get(name, torch.zeros_like(param))
        torch.testing.assert_close(param.detach() - aligned.tensor(name), expected, atol=1e-6, rtol=1e-4)


def test_lora_candidates_are_its_block_targets(llama_family, tmp_path):
    family, _ = adapter_family(llama_family, tmp_path, target_modules=["q_proj", "embed_tokens"])
    stats = safelora_stats(family, "adapter")
    assert set(stats.candidates["tensor"]) == {"model.layers.0.self_attn.q_proj.weight",
                                               "model.layers.1.self_attn.q_proj.weight"}
    embeddings = stats.tensors.set_index("tensor").loc["model.embed_tokens.weight"]
    assert not embeddings["candidate"] and embeddings["total"] > 0  # it keeps its update, whatever τ


def test_matches_peft_apply_safelora_where_peft_ships_it(llama_family, tmp_path):
    safelora = pytest.importorskip("peft.utils.safelora", reason="peft 0.21.2 does not ship Safe LoRA: "
                                   "apply_safelora exists only in the unmerged pull request huggingface/peft#2201")
    family, _ = adapter_family(llama_family, tmp_path, target_modules=LORA_TARGETS)
    _, cosines = _reference_safelora(family, -1.0)
    tau = float(np.median(list(cosines.values()))) + 1e-4
    config = safelora.SafeLoraConfig(
        base_model_path=str(family.store("base").folder), aligned_model_path=str(family.store("aligned").folder),
        peft_model_path=str(family.store("adapter").folder), select_layers_type="threshold", threshold=tau,
        devices="cpu", save_weights=False, local_files_only=True)
    weights = safelora.apply_safelora(config)
    model = AutoModelForCausalLM.from_pretrained(family.store("aligned").folder).eval()
    apply_safelora(model, family, "adapter", threshold=tau)
    params, aligned = dict(model.named_parameters()), family.store("aligned")
    for key in (k for k in weights if ".lora_A." in k):
        name = key.split(".lora_A.")[0].removeprefix("base_model.model.") + ".weight"
        expected = 2.0 * weights[key.replace(".lora_A.", ".lora_B.")] @ weights[key]  # lora_alpha / r = 8 / 4
        torch.testing.assert_close(params[name].detach() - aligned.tensor(name), expected, atol=1e-6, rtol=1e-4)
