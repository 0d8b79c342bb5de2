"""Loading whole family members as transformers models (for evaluation and activations), and chat formatting."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from explorer.checkpoints.architectures import loaded_tensor
from explorer.checkpoints.family import ALIGNED, BASE, Family
from explorer.checkpoints.files import check_tokenizer_files
from explorer.checkpoints.stores import LoraStore
from explorer.core.config import settings
from explorer.core.errors import CheckpointError, one_line
from explorer.core.imports import auto_classes

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def load_tokenizer(family: Family, member: str, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """The member's tokenizer, else the aligned or base model's; padding on the left for generation."""
    _, AutoTokenizer = auto_classes()

    for name in (member, ALIGNED, BASE):
        folder = family.store(name).folder
        if any(folder.glob("tokenizer*")) or (folder / "vocab.json").exists():
            check_tokenizer_files(folder, name)
            try:
                tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
            except Exception as exc:  # transformers, tokenizers and sentencepiece raise many types for bad files
                raise CheckpointError(f"{name}: cannot load the tokenizer in {folder} ({one_line(exc, 200)})") \
                    from None
            break
    else:
        raise CheckpointError(f"no tokenizer files found for {member}, aligned or base in family {family.name!r}")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


@torch.no_grad()
def load_model(family: Family, member: str, device: str | None = None, dtype: torch.dtype = torch.float32,
               trust_remote_code: bool = False) -> PreTrainedModel:
    """A member as a model in eval mode; a LoRA member is its parent with the adapter's updates added in place."""
    AutoModelForCausalLM, _ = auto_classes()

    device = device or settings().device
    store = family.store(member)
    if isinstance(store, LoraStore):
        parent = next(name for name in family.members if family.store(name) is store.parent)
        model = load_model(family, parent, device, dtype, trust_remote_code)
        params = dict(model.named_parameters())
        for name in store.names():
            delta = store.delta(name)
            param = loaded_tensor(params, name, family.arch)
            if delta is not None and param is not None:
                param.add_(delta.to(param.dtype).to(param.device))
        return model
    try:
        model, info = AutoModelForCausalLM.from_pretrained(store.folder, dtype=dtype, output_loading_info=True,
                                                           trust_remote_code=trust_remote_code)
    except (OSError, ValueError, RuntimeError) as exc:  # RuntimeError: tensors of another shape than the config's
        raise CheckpointError(f"{member}: cannot load a causal language model from {store.folder} "
                              f"({one_line(exc, 300)})") from None
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        # transformers filled these with random values; results from such a model would be silently wrong.
        raise CheckpointError(f"{member}: the weights in {store.folder} lack {len(missing)} tensor(s) the model needs "
                              f"(first: {missing[0]}); give the complete checkpoint")
    return model.to(device).eval()


def chat_text(tokenizer: PreTrainedTokenizerBase, prompt: str, use_chat_template: bool = True) -> str:
    """The prompt as the model sees it before its answer."""
    if use_chat_template and tokenizer.chat_template:
        return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
    return prompt


def batches(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]
