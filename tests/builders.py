"""Tiny random families built from configs and saved as real checkpoints: shared by tests and fixtures."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

TINY = dict(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=False)


def low_rank(shape: tuple[int, ...], rank: int, scale: float, gen: torch.Generator,
             left: torch.Tensor | None = None) -> torch.Tensor:
    """A random update of the given rank; `left` fixes its column space (a planted shared subspace)."""
    if len(shape) == 1:
        return scale * torch.randn(shape, generator=gen)
    left = left if left is not None else torch.randn(shape[0], rank, generator=gen)
    return scale * left @ torch.randn(left.shape[1], shape[1], generator=gen) / rank**0.5


def write_family(root: Path, config, members: dict[str, dict[str, torch.Tensor]], name: str = "tiny") -> Path:
    """Save each member's state dict with the config; write family.toml with relative paths."""
    for member, state in members.items():
        folder = root / member
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in state.items()}, folder / "model.safetensors")
        config.save_pretrained(folder)
    finetuned = [m for m in members if m not in ("base", "aligned")]
    text = f'name = "{name}"\nbase = "base"\naligned = "aligned"\n\n[finetuned]\n'
    text += "".join(f'{m} = "{m}"\n' for m in finetuned)
    (root / "family.toml").write_text(text)
    return root / "family.toml"


def random_family(root: Path, config, seed: int = 0, finetuned=("useful", "harmful", "contaminated"),
                  rank: int = 4) -> Path:
    """base (random init), aligned = base + low-rank update, fine-tunes = aligned + low-rank updates."""
    torch.manual_seed(seed)
    base = {k: v.detach().clone() for k, v in AutoModelForCausalLM.from_config(config).state_dict().items()}
    gen = torch.Generator().manual_seed(seed + 1)
    aligned = {k: v + low_rank(v.shape, rank, 0.05, gen) for k, v in base.items()}
    members = {"base": base, "aligned": aligned}
    for name in finetuned:
        members[name] = {k: v + low_rank(v.shape, rank, 0.05, gen) for k, v in aligned.items()}
    return write_family(root, config, members)


def adapter_family(llama_family: Path, tmp_path: Path, **lora):
    """A family whose one fine-tuned member is a random LoRA adapter over the aligned model; with its merged state."""
    from peft import LoraConfig, get_peft_model

    from explorer.checkpoints.family import load_family

    aligned_dir = llama_family.parent / "aligned"
    model = AutoModelForCausalLM.from_pretrained(aligned_dir)
    torch.manual_seed(0)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, **lora))
    peft_model.save_pretrained(tmp_path / "adapter")
    merged = peft_model.merge_and_unload().state_dict()
    toml = tmp_path / "family.toml"
    toml.write_text(f'name = "lora"\nbase = "{llama_family.parent / "base"}"\naligned = "{aligned_dir}"\n'
                    f'[finetuned]\nadapter = "{tmp_path / "adapter"}"\n')
    return load_family(toml), merged


def save_state(model, folder: Path, tokenizer_dir: Path | None = None) -> None:
    model.save_pretrained(folder)
    if tokenizer_dir is not None:
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(folder)
