"""Every architecture's module table on tiny random models: each tensor's module, layer and expert; the engine
(spectra, update MSO, a projection point, the refusal writers) on a family of each; LoRA members; and a mixture of
experts through precompute and every page."""
import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import torch
import transformers
from builders import TINY, adapter_family, random_family, saved_state
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

from explorer.activations.refusal import alignment_cosines, writer_bases
from explorer.checkpoints.architectures import (
    BLOCK_MODULES,
    GLOBAL_MODULES,
    TensorRole,
    readable_role,
    residual_writers,
    tensor_role,
)
from explorer.checkpoints.family import load_family
from explorer.weights.mso import by_layer, update_mso
from explorer.weights.projection import projection_stats
from explorer.weights.spectra import spectra
from explorer.weights.updates import update_tensor

EXPERTS = 4
SMALL = {**TINY, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}  # ids inside the tiny vocabulary
CONFIGS = {
    "qwen3": lambda: transformers.Qwen3Config(**SMALL, head_dim=8),
    "gemma2": lambda: transformers.Gemma2Config(**SMALL, head_dim=8),
    "gemma3_text": lambda: transformers.Gemma3TextConfig(**SMALL, head_dim=8),
    "phi3": lambda: transformers.Phi3Config(**SMALL),
    "olmo2": lambda: transformers.Olmo2Config(**SMALL),
    "mixtral": lambda: transformers.MixtralConfig(**SMALL, num_local_experts=EXPERTS, num_experts_per_tok=2),
    "qwen3_moe": lambda: transformers.Qwen3MoeConfig(**SMALL, head_dim=8, num_experts=EXPERTS, num_experts_per_tok=2,
                                                     moe_intermediate_size=24),
    "llama": lambda: transformers.LlamaConfig(**SMALL),
    "mistral": lambda: transformers.MistralConfig(**SMALL),
    "qwen2": lambda: transformers.Qwen2Config(**SMALL),
}


def _gemma3_multimodal():
    text = {k: v for k, v in SMALL.items() if k not in ("tie_word_embeddings", "pad_token_id", "bos_token_id",
                                                         "eos_token_id")}
    vision = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
              "image_size": 28, "patch_size": 14}
    return transformers.Gemma3Config(text_config={**text, "head_dim": 8}, vision_config=vision, mm_tokens_per_image=4,
                                     image_token_index=95, boi_token_index=93, eoi_token_index=94)


CONFIGS["gemma3"] = _gemma3_multimodal
# What a 2-layer model's checkpoint holds, per module (the per-expert names save_pretrained writes).
MODULE_COUNTS = {
    "qwen3": {"q_proj": 2, "k_proj": 2, "v_proj": 2, "o_proj": 2, "q_norm": 2, "k_norm": 2, "gate_proj": 2,
              "up_proj": 2, "down_proj": 2, "input_norm": 2, "post_attn_norm": 2},
    "gemma2": {"q_proj": 2, "k_proj": 2, "v_proj": 2, "o_proj": 2, "gate_proj": 2, "up_proj": 2, "down_proj": 2,
               "input_norm": 2, "post_attn_norm": 2, "pre_ffn_norm": 2, "post_ffn_norm": 2},
    "phi3": {"qkv_proj": 2, "o_proj": 2, "gate_up_proj": 2, "down_proj": 2, "input_norm": 2, "post_attn_norm": 2},
    "olmo2": {"q_proj": 2, "k_proj": 2, "v_proj": 2, "o_proj": 2, "q_norm": 2, "k_norm": 2, "gate_proj": 2,
              "up_proj": 2, "down_proj": 2, "post_attn_norm": 2, "post_ffn_norm": 2},
    "mixtral": {"q_proj": 2, "k_proj": 2, "v_proj": 2, "o_proj": 2, "router": 2, "experts.w1": 2 * EXPERTS,
                "experts.w2": 2 * EXPERTS, "experts.w3": 2 * EXPERTS, "input_norm": 2, "post_attn_norm": 2},
    "qwen3_moe": {"q_proj": 2, "k_proj": 2, "v_proj": 2, "o_proj": 2, "q_norm": 2, "k_norm": 2, "router": 2,
                  "experts.gate_proj": 2 * EXPERTS, "experts.up_proj": 2 * EXPERTS,
                  "experts.down_proj": 2 * EXPERTS, "input_norm": 2, "post_attn_norm": 2},
}
MODULE_COUNTS["gemma3_text"] = {**MODULE_COUNTS["gemma2"], "q_norm": 2, "k_norm": 2}
OUTSIDE = {"embed_tokens": 1, "final_norm": 1, "lm_head": 1}
NEW = ["qwen3", "gemma2", "gemma3_text", "phi3", "olmo2", "mixtral", "qwen3_moe"]


def _table_modules(arch: str) -> set[str]:
    return set(BLOCK_MODULES[arch].values()) | set(GLOBAL_MODULES[arch].values())


def _check_roles(names, arch: str) -> dict[str, TensorRole]:
    """Every name matched by the architecture's own table, at the layer its name gives, experts indexed."""
    roles = {name: tensor_role(name, arch) for name in names}
    for name, role in roles.items():
        assert role.module in _table_modules(arch), (name, role)
        in_block = ".layers." in name and "vision_tower" not in name
        assert role.layer == (int(name.split(".layers.")[1].split(".")[0]) if in_block else -1), (name, role)
        expert = name.split(".experts.")[1].split(".")[0] if ".experts." in name else None
        assert role.expert == (int(expert) if expert and expert.isdigit() else None), (name, role)
    return roles


@pytest.mark.parametrize("arch", list(CONFIGS))
def test_every_tensor_gets_its_module_layer_and_expert(arch):
    """Checkpoint names (as save_pretrained writes them) and the loaded model's (transformers >= 5 stacks a mixture's
    experts into 3-D tensors): none falls outside the table."""
    torch.manual_seed(0)
    config = CONFIGS[arch]()
    assert config.model_type == arch
    model = AutoModelForCausalLM.from_config(config)
    on_disk = saved_state(model)
    roles = _check_roles(on_disk, arch)
    _check_roles(model.state_dict(), arch)
    if arch in MODULE_COUNTS:
        assert Counter(r.module for r in roles.values()) == {**MODULE_COUNTS[arch], **OUTSIDE}
    if arch in ("mixtral", "qwen3_moe"):
        experts = {(r.layer, r.module): set() for r in roles.values() if r.expert is not None}
        for role in roles.values():
            if role.expert is not None:
                experts[(role.layer, role.module)].add(role.expert)
        assert len(experts) == 6 and all(found == set(range(EXPERTS)) for found in experts.values())
        stacked = [n for n, v in model.state_dict().items() if v.ndim == 3]
        assert len(stacked) == 4 and all(tensor_role(n, arch).module.startswith("experts.") for n in stacked)
    if arch == "gemma3":
        vision = [r for n, r in roles.items() if n.startswith("vision_tower.")]
        assert vision and {r.module for r in vision} == {"vision_tower"} and {r.layer for r in vision} == {-1}


def test_names_no_table_knows_keep_a_readable_module():
    assert tensor_role("model.layers.3.mlp.foo.weight", "llama") == TensorRole(3, "mlp.foo")
    assert tensor_role("model.layers.0.self_attn.sinks", "gpt_oss") == TensorRole(0, "self_attn.sinks")
    assert tensor_role("transformer.h.1.attn.c_attn.weight", "gpt2") == TensorRole(1, "attn.c_attn")
    assert tensor_role("model.layers.2.moe.experts.5.fc.weight", None) == TensorRole(2, "moe.experts.fc", 5)
    assert tensor_role("model.rotary_emb.inv_freq", "llama") == TensorRole(-1, "rotary_emb.inv_freq")
    assert readable_role("model.layers.0.block_sparse_moe.experts.3.w2.weight").expert == 3
    assert tensor_role("model.layers.1.self_attn.q_proj.weight", "unknown_arch") == TensorRole(1, "q_proj")


@pytest.fixture(scope="module")
def families(tmp_path_factory):
    """One tiny family per new architecture, named as checkpoints on disk name their tensors."""
    return {arch: random_family(tmp_path_factory.mktemp(arch), CONFIGS[arch](), seed=i, as_saved=True,
                                finetuned=("useful", "harmful"))
            for i, arch in enumerate(NEW)}


@pytest.mark.parametrize("arch", NEW)
def test_engine_runs_on_every_architecture(families, arch):
    family = load_family(families[arch])
    assert family.arch == arch
    values = spectra(family, "alignment")
    assert set(values["module"]) <= _table_modules(arch)
    shapes = {name: family.store("base").shape(name) for name in family.tensor_names}
    counts = values.groupby("tensor").size()
    assert all(counts[n] == (min(s) if len(s) == 2 else 1) for n, s in shapes.items())
    table = update_mso(family, [("useful", "harmful")], [0.5, 0.99])[("useful", "harmful")]
    assert table["mso"].between(0, 1 + 1e-9).all() and set(table["module"]) <= _table_modules(arch)
    assert {"layers.0", "layers.1", "embed_tokens"} <= set(by_layer(table)["group"])
    stats = projection_stats(family, "useful")
    same, orth = (stats.point(m, "alignment", 0.25)["energy_kept_ratio"] for m in ("same", "orth"))
    assert same + orth == pytest.approx(1.0)
    bases = writer_bases(family)
    writers = {module for _, module, _ in bases}
    assert writers == set(residual_writers(arch)) & set(values["module"])
    if arch in ("mixtral", "qwen3_moe"):
        down = "experts.w2" if arch == "mixtral" else "experts.down_proj"
        assert {key[2] for key in bases if key[1] == down} == set(range(EXPERTS))
        assert all(basis.shape[0] == TINY["hidden_size"] for basis in bases.values())


def test_moe_layer_mso_weighs_a_module_once_however_many_experts(families):
    family = load_family(families["qwen3_moe"])
    table = update_mso(family, [("useful", "harmful")], [0.5])[("useful", "harmful")]
    layer0 = table[(table["layer"] == 0) & (table["cols"] > 1)]
    per_module = layer0.groupby("module")["mso"].mean()
    assert len(layer0) > len(per_module)  # experts: several tensors per module
    grouped = by_layer(table)
    assert grouped.loc[grouped["group"] == "layers.0", "mso"].item() == pytest.approx(per_module.mean())


def test_refusal_cosines_average_a_modules_experts(families):
    family = load_family(families["mixtral"])
    bases = writer_bases(family)
    direction = torch.randn(TINY["hidden_size"], generator=torch.Generator().manual_seed(0)).numpy()
    directions = [{"layer": layer, "direction": direction / (direction ** 2).sum() ** 0.5} for layer in (1, 2)]
    cosines = alignment_cosines(pd.DataFrame(directions), bases)
    assert set(zip(cosines["layer"], cosines["module"])) == {(l, m) for l in (1, 2) for m in ("o_proj", "experts.w2")}
    experts = cosines[cosines["module"] == "experts.w2"]
    assert (experts["experts"] == EXPERTS).all() and (experts["share_topk_best"] >= experts["share_topk"]).all()
    assert (cosines.loc[cosines["module"] == "o_proj", "experts"] == 1).all()


def test_lora_on_qwen3_attention_is_a_member_like_any_other(families, tmp_path):
    family, merged = adapter_family(families["qwen3"], tmp_path, target_modules=["q_proj", "v_proj"])
    aligned = family.store("aligned")
    changed = set()
    for name in family.tensor_names:
        expected = merged[name] - aligned.tensor(name)
        torch.testing.assert_close(update_tensor(family, "adapter", name), expected, atol=1e-6, rtol=1e-5)
        if expected.abs().max() > 0:
            changed.add(tensor_role(name, "qwen3").module)
    assert changed == {"q_proj", "v_proj"}
    values = spectra(family, "adapter")
    assert values.loc[values["module"] == "q_proj"].groupby("tensor")["singular_value"].apply(
        lambda s: (s > 1e-5 * s.max()).sum()).max() <= 4  # rank 4


def _legacy_expert_adapter(folder, family, targets=("w1", "w3", "w2"), rank=2):
    """A LoRA adapter on Mixtral's experts in the per-expert layout (`experts.E.w1`), which peft still reads (it
    converts it to transformers' stacked experts on load); peft in this version writes stacked 3-D factors instead."""
    store, gen, weights = family.store("aligned"), torch.Generator().manual_seed(0), {}
    for name in family.tensor_names:
        role = tensor_role(name, "mixtral")
        if role.expert is not None and role.module.removeprefix("experts.") in targets:
            out, inp = store.shape(name)
            module = name.removesuffix(".weight")
            weights[f"base_model.model.{module}.lora_A.weight"] = torch.randn(rank, inp, generator=gen) * 0.1
            weights[f"base_model.model.{module}.lora_B.weight"] = torch.randn(out, rank, generator=gen) * 0.1
    folder.mkdir()
    save_file(weights, folder / "adapter_model.safetensors")
    (folder / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "r": rank, "lora_alpha": 2 * rank, "target_modules": list(targets),
         "base_model_name_or_path": str(store.folder)}))


def test_lora_on_mixtral_experts_matches_peft(families, tmp_path):
    from peft import PeftModel

    root = families["mixtral"].parent
    _legacy_expert_adapter(tmp_path / "adapter", load_family(families["mixtral"]))
    toml = tmp_path / "family.toml"
    toml.write_text(f'name = "moe-lora"\nbase = "{root / "base"}"\naligned = "{root / "aligned"}"\n'
                    f'[finetuned]\nadapter = "{tmp_path / "adapter"}"\n')
    family = load_family(toml)
    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(root / "aligned"),
                                           tmp_path / "adapter")
    merged = peft_model.merge_and_unload().state_dict()  # stacked: experts.gate_up_proj (E, 2I, H), down_proj
    changed = Counter()
    for name in family.tensor_names:
        role = tensor_role(name, "mixtral")
        update = update_tensor(family, "adapter", name)
        if role.expert is None:
            assert update.abs().max() == 0, name
            continue
        block = f"model.layers.{role.layer}.mlp.experts."
        rows = update.shape[0]
        if role.module == "experts.w2":
            stacked = merged[block + "down_proj"][role.expert]
        else:
            half = slice(0, rows) if role.module == "experts.w1" else slice(rows, 2 * rows)
            stacked = merged[block + "gate_up_proj"][role.expert, half]
        torch.testing.assert_close(family.store("adapter").tensor(name), stacked, atol=1e-5, rtol=1e-5)
        changed[role.module] += bool(update.abs().max() > 0)
    assert changed == {"experts.w1": 2 * EXPERTS, "experts.w2": 2 * EXPERTS, "experts.w3": 2 * EXPERTS}
    values = spectra(family, "adapter")
    assert set(values.loc[values["module"] == "experts.w2", "tensor"]) == {
        f"model.layers.{layer}.block_sparse_moe.experts.{e}.w2.weight" for layer in (0, 1) for e in range(EXPERTS)}


def _precomputed(root: Path, config, tokenizer_dir: Path) -> Path:
    """A tiny family of this config with a real tokenizer, precomputed through the CLI with the smoke profile (its
    members evaluated, one grid point); its activation tables are then added from 8 prompts per set (precompute's
    256 would take minutes here)."""
    from transformers import AutoTokenizer

    from explorer.activations.tables import activation_tables
    from explorer.cli import main
    from explorer.results.bundle import update_bundle

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config.vocab_size = len(tokenizer)
    # A name of its own: the session's cache holds other families' results (tiny_demo's is "tiny").
    path = random_family(root, config, as_saved=True, finetuned=("useful", "contaminated"),
                         name=f"arch-{config.model_type}")
    tokenizer.save_pretrained(path.parent / "base")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model gains nothing from threads, which spin for minutes on busy cores
    try:
        assert main(["precompute", str(path), "--profile", "smoke", "--grid-fracs", "0.5", "--grid-variants",
                     "contaminated", "--no-activations"]) == 0
        family = load_family(path)
        activations = activation_tables(family, count=8, umap_layers=[])
    finally:
        torch.set_num_threads(threads)
    update_bundle(family.name, lambda bundle: (bundle.manifest, bundle.scores, {**bundle.tables(), **activations}))
    return path


@pytest.fixture(scope="module")
def moe_results(tmp_path_factory, smollm_tokenizer_dir):
    return _precomputed(tmp_path_factory.mktemp("moe-demo"), CONFIGS["mixtral"](), smollm_tokenizer_dir)


@pytest.mark.parametrize("arch", [a for a in NEW if a != "mixtral"])
def test_each_architecture_precomputes_evaluates_and_extracts(arch, tmp_path, smollm_tokenizer_dir):
    from explorer.results.bundle import Bundle

    from streamlit.testing.v1 import AppTest

    path = _precomputed(tmp_path, CONFIGS[arch](), smollm_tokenizer_dir)
    family = load_family(path)
    bundle = Bundle.load(family.name)
    assert set(bundle.table("spectra")["module"]) <= _table_modules(arch)
    assert set(bundle.scores) >= {"aligned", "contaminated"}
    assert 0.0 <= bundle.scores["aligned"]["refusal_rate"] <= 1.0
    assert len(bundle.table("projection")) >= 1 and len(bundle.table("activation_mso")) >= 1
    assert bundle.table("refusal_alignment")["module"].isin(residual_writers(arch)).all()
    root = Path(__file__).resolve().parents[2]
    for page in ("app.py", "pages/1_Weight_spectra.py", "pages/2_Projection_lab.py", "pages/3_Update_overlap.py"):
        at = AppTest.from_file(str(root / page), default_timeout=120)
        at.session_state["family"] = str(path)
        at.run()
        assert not at.exception and not at.error, (page, at.exception, [e.value for e in at.error])


def test_moe_family_precomputes_and_every_page_renders(moe_results):
    from streamlit.testing.v1 import AppTest

    from explorer.results.bundle import Bundle

    bundle = Bundle.load(load_family(moe_results).name)
    spectra_table = bundle.table("spectra")
    assert "other" not in set(spectra_table["module"]) and "experts.w2" in set(spectra_table["module"])
    alignment = bundle.table("refusal_alignment")
    assert set(alignment["module"]) == {"o_proj", "experts.w2"}
    assert (alignment.loc[alignment["module"] == "experts.w2", "experts"] == EXPERTS).all()
    root = Path(__file__).resolve().parents[2]
    expert_tensor = "model.layers.1.block_sparse_moe.experts.2.w2.weight"
    for page, state in [("app.py", {}), ("pages/1_Weight_spectra.py", {"spectra_tensor": expert_tensor}),
                        ("pages/2_Projection_lab.py", {}), ("pages/3_Update_overlap.py", {}),
                        ("pages/4_Activation_space.py", {}), ("pages/5_Spot-check.py", {})]:
        at = AppTest.from_file(str(root / page), default_timeout=120)
        at.session_state["family"] = str(moe_results)
        for key, value in state.items():
            at.session_state[key] = value
        at.run()
        assert not at.exception, (page, at.exception)
        assert not at.error, (page, [e.value for e in at.error])
        if page == "pages/1_Weight_spectra.py":
            heat = at.get("vega_lite_chart")[0].proto.spec
            assert '"experts"' in heat  # the map's expert cells say how many experts they average
            assert any("every expert's `experts.w2` at layer 1" in m.value for m in at.markdown)
        if page == "pages/3_Update_overlap.py":
            assert at.selectbox(key="mso_expert_cell").options


@pytest.mark.parametrize("arch", ["mixtral", "qwen3_moe", "phi3"])
def test_loaded_tensor_finds_each_checkpoint_tensor_in_the_loaded_model(families, arch):
    """transformers >= 5 stacks a mixture's experts when it loads them: each checkpoint matrix is a view inside
    them, and writing into the view changes the model (what projecting into a loaded model needs)."""
    from explorer.checkpoints.architectures import loaded_tensor

    family = load_family(families[arch])
    model = AutoModelForCausalLM.from_pretrained(families[arch].parent / "aligned")
    params = dict(model.named_parameters())
    for name in family.tensor_names:
        torch.testing.assert_close(loaded_tensor(params, name, arch).detach(), family.store("aligned").tensor(name))
    if arch != "phi3":
        name = next(n for n in family.tensor_names if tensor_role(n, arch).expert == 2)
        with torch.no_grad():
            loaded_tensor(params, name, arch).add_(1.0)
        torch.testing.assert_close(loaded_tensor(params, name, arch).detach(),
                                   family.store("aligned").tensor(name) + 1)  # read again from the stacked tensor


@pytest.mark.parametrize("arch", ["mixtral", "qwen3_moe"])
def test_a_projection_point_reaches_every_expert_of_the_loaded_model(families, arch):
    """W = W_A + (task update kept) written in place: every checkpoint tensor of the model, experts and router
    included, moves from the aligned weights by most of its task update (orth of one random direction)."""
    from explorer.checkpoints.architectures import loaded_tensor
    from explorer.checkpoints.models import load_model
    from explorer.weights.projection import InPlaceProjector

    family = load_family(families[arch])
    model = load_model(family, "aligned", device="cpu")
    InPlaceProjector(model, family).apply("useful", "orth", "random", 0.01)
    params = dict(model.named_parameters())
    aligned = family.store("aligned")
    changed = 0
    for name in family.tensor_names:
        update = update_tensor(family, "useful", name)
        got = loaded_tensor(params, name, arch).detach() - aligned.tensor(name)
        assert float((got - update).norm()) < float(update.norm()), name
        changed += bool(got.abs().max() > 0)
    assert changed == len(family.tensor_names)
