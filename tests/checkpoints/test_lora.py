import pytest
import torch
from builders import adapter_family

from explorer.checkpoints.family import load_family
from explorer.checkpoints.models import load_model
from explorer.checkpoints.stores import Source, open_store
from explorer.core.errors import CheckpointError
from explorer.weights.updates import update_tensor


@pytest.mark.parametrize("lora", [
    {"target_modules": ["q_proj", "v_proj", "down_proj", "gate_proj"]},
    {"target_modules": ["q_proj", "embed_tokens"], "use_rslora": True},
])
def test_lora_update_equals_merged_difference(llama_family, tmp_path, lora):
    family, merged = adapter_family(llama_family, tmp_path, **lora)
    assert family.sources["adapter"].kind == "lora"
    aligned = family.store("aligned")
    changed = 0
    for name in family.tensor_names:
        expected = merged[name] - aligned.tensor(name)
        torch.testing.assert_close(update_tensor(family, "adapter", name), expected, atol=1e-6, rtol=1e-5)
        changed += bool(expected.abs().max() > 0)
    assert changed >= 3


def test_lora_member_loads_as_merged_model(llama_family, tmp_path):
    family, merged = adapter_family(llama_family, tmp_path, target_modules=["k_proj", "up_proj"])
    model = load_model(family, "adapter", device="cpu")
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.detach(), merged[name], atol=1e-6, rtol=1e-5)


def test_adapter_without_its_base_is_a_clear_error(llama_family, tmp_path):
    family, _ = adapter_family(llama_family, tmp_path, target_modules=["q_proj"])
    with pytest.raises(CheckpointError, match="adapter needs a base model"):
        open_store(Source("lora", str(tmp_path / "adapter")), "adapter")


def test_adapter_for_another_architecture_is_a_clear_error(llama_family, qwen_family, tmp_path):
    adapter_family(llama_family, tmp_path, target_modules=["q_proj"])
    # Same module names but a Qwen2 family: rename a target so it is absent from the parent.
    config = (tmp_path / "adapter" / "adapter_config.json")
    from safetensors.torch import load_file, save_file

    weights = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    save_file({k.replace("q_proj", "query_key_value"): v for k, v in weights.items()},
              tmp_path / "adapter" / "adapter_model.safetensors")
    parent = load_family(qwen_family).store("aligned")
    with pytest.raises(CheckpointError, match="query_key_value.weight, which its base model"):
        open_store(Source("lora", str(config.parent)), "adapter", parent)


def test_hub_ids_resolve_through_the_hub_cache_offline(llama_family, tmp_path, monkeypatch):
    """`org/name@revision` sources go through huggingface_hub; offline, from its local cache."""
    import shutil

    from huggingface_hub import constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--acme--tiny-useful"
    shutil.copytree(llama_family.parent / "useful", repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "v1").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    toml = tmp_path / "family.toml"
    toml.write_text(f'name = "hub"\nbase = "{llama_family.parent / "base"}"\naligned = "{llama_family.parent / "aligned"}"\n'
                    '[finetuned]\nuseful = "acme/tiny-useful@v1"\nmissing = "acme/not-there"\n')
    family = load_family(toml)
    assert family.sources["useful"].kind == "hub" and family.sources["useful"].revision == "v1"
    name = "model.layers.0.mlp.up_proj.weight"
    local = load_family(llama_family)
    torch.testing.assert_close(update_tensor(family, "useful", name), update_tensor(local, "useful", name))
    with pytest.raises(CheckpointError, match="cannot fetch acme/not-there from the Hugging Face hub"):
        family.store("missing")
