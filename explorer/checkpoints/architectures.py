"""Which state-dict names are which module, per architecture (one table each, like peft's constants)."""
from __future__ import annotations

import re
from dataclasses import dataclass

# Llama, Qwen2 and Mistral share Hugging Face's decoder naming; Qwen2 adds 1-D q/k/v biases.
_DECODER_BLOCK = {
    r"self_attn\.q_proj\.weight": "q_proj",
    r"self_attn\.k_proj\.weight": "k_proj",
    r"self_attn\.v_proj\.weight": "v_proj",
    r"self_attn\.o_proj\.weight": "o_proj",
    r"mlp\.gate_proj\.weight": "gate_proj",
    r"mlp\.up_proj\.weight": "up_proj",
    r"mlp\.down_proj\.weight": "down_proj",
    r"input_layernorm\.weight": "input_norm",
    r"post_attention_layernorm\.weight": "post_attn_norm",
}
_QWEN2_BIASES = {
    r"self_attn\.q_proj\.bias": "q_proj.bias",
    r"self_attn\.k_proj\.bias": "k_proj.bias",
    r"self_attn\.v_proj\.bias": "v_proj.bias",
}
_DECODER_GLOBAL = {
    r"model\.embed_tokens\.weight": "embed_tokens",
    r"model\.norm\.weight": "final_norm",
    r"lm_head\.weight": "lm_head",
}

BLOCK_MODULES: dict[str, dict[str, str]] = {
    "llama": _DECODER_BLOCK,
    "mistral": _DECODER_BLOCK,
    "qwen2": {**_DECODER_BLOCK, **_QWEN2_BIASES},
}
GLOBAL_MODULES: dict[str, dict[str, str]] = {arch: _DECODER_GLOBAL for arch in BLOCK_MODULES}

# Modules whose output is added to the residual stream.
RESIDUAL_WRITERS = ("o_proj", "down_proj")
OTHER = "other"


@dataclass(frozen=True)
class TensorRole:
    layer: int  # block index; -1 for tensors outside the decoder blocks
    module: str


def _compile(arch: str) -> list[tuple[re.Pattern[str], str, bool]]:
    rules = [(re.compile(rf"model\.layers\.(\d+)\.{pat}$"), name, True) for pat, name in BLOCK_MODULES[arch].items()]
    rules += [(re.compile(rf"{pat}$"), name, False) for pat, name in GLOBAL_MODULES[arch].items()]
    return rules


_RULES = {arch: _compile(arch) for arch in BLOCK_MODULES}


def tensor_role(name: str, arch: str | None) -> TensorRole:
    """Map a state-dict name to (layer, module); unknown architectures or names give module 'other'."""
    for pattern, module, in_block in _RULES.get(arch or "", _RULES["llama"]):
        match = pattern.search(name)
        if match:
            return TensorRole(int(match.group(1)) if in_block else -1, module)
    layer = re.search(r"layers\.(\d+)\.", name)
    return TensorRole(int(layer.group(1)) if layer else -1, OTHER)
