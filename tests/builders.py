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


def saved_state(model) -> dict[str, torch.Tensor]:
    """The tensors save_pretrained writes: a checkpoint's own names, which can differ from the loaded model's
    (transformers >= 5 stacks a mixture of experts' per-expert matrices into 3-D tensors when loading)."""
    import tempfile

    from safetensors.torch import load_file

    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        return {k: v for file in sorted(Path(folder).glob("*.safetensors")) for k, v in load_file(file).items()}


def random_family(root: Path, config, seed: int = 0, finetuned=("useful", "harmful", "contaminated"),
                  rank: int = 4, as_saved: bool = False, name: str = "tiny") -> Path:
    """base (random init), aligned = base + low-rank update, fine-tunes = aligned + low-rank updates. With
    `as_saved`, the tensors are named as save_pretrained writes them (`saved_state`)."""
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    base = saved_state(model) if as_saved else {k: v.detach().clone() for k, v in model.state_dict().items()}
    gen = torch.Generator().manual_seed(seed + 1)
    aligned = {k: v + low_rank(v.shape, rank, 0.05, gen) for k, v in base.items()}
    members = {"base": base, "aligned": aligned}
    for member in finetuned:
        members[member] = {k: v + low_rank(v.shape, rank, 0.05, gen) for k, v in aligned.items()}
    return write_family(root, config, members, name)


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
