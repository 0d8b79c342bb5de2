"""Which state-dict names are which module, per architecture (one table each, like peft's constants)."""
from __future__ import annotations

import re
from dataclasses import dataclass

# Hugging Face's decoder naming, after `model.layers.N.` (Llama, Mistral and most decoders since).
_ATTENTION = {
    r"self_attn\.q_proj\.weight": "q_proj",
    r"self_attn\.k_proj\.weight": "k_proj",
    r"self_attn\.v_proj\.weight": "v_proj",
    r"self_attn\.o_proj\.weight": "o_proj",
}
_MLP = {
    r"mlp\.gate_proj\.weight": "gate_proj",
    r"mlp\.up_proj\.weight": "up_proj",
    r"mlp\.down_proj\.weight": "down_proj",
}
_NORMS = {
    r"input_layernorm\.weight": "input_norm",
    r"post_attention_layernorm\.weight": "post_attn_norm",
}
_DECODER_BLOCK = {**_ATTENTION, **_MLP, **_NORMS}
# Qwen2's 1-D q/k/v biases.
_QKV_BIASES = {
    r"self_attn\.q_proj\.bias": "q_proj.bias",
    r"self_attn\.k_proj\.bias": "k_proj.bias",
    r"self_attn\.v_proj\.bias": "v_proj.bias",
}
# Qwen3, Gemma 3 and OLMo 2 normalise queries and keys (per head in Qwen3 and Gemma 3, over all heads in OLMo 2).
_QK_NORMS = {
    r"self_attn\.q_norm\.weight": "q_norm",
    r"self_attn\.k_norm\.weight": "k_norm",
}
# Gemma 2 and 3 also normalise around the MLP; OLMo 2 only after it (and has no input_layernorm).
_FFN_NORMS = {
    r"pre_feedforward_layernorm\.weight": "pre_ffn_norm",
    r"post_feedforward_layernorm\.weight": "post_ffn_norm",
}
# Phi-3 fuses q, k and v into one matrix (rows: q, then k, then v), and gate and up into another.
_PHI3_BLOCK = {
    r"self_attn\.qkv_proj\.weight": "qkv_proj",
    r"self_attn\.o_proj\.weight": "o_proj",
    r"mlp\.gate_up_proj\.weight": "gate_up_proj",
    r"mlp\.down_proj\.weight": "down_proj",
    **_NORMS,
}
# Mixture-of-experts MLPs. Checkpoints on disk hold one matrix per expert (the `(\d+)` is the expert index), the
# router as `gate`; transformers >= 5 stacks each projection of all experts into one 3-D tensor when it loads them
# (`experts.gate_up_proj`: (experts, 2 * intermediate, hidden), gate rows first; `experts.down_proj`) and writes
# them back per expert on save_pretrained. Mixtral's MLP is `block_sparse_moe` on disk, `mlp` in memory.
_STACKED_EXPERTS = {
    r"mlp\.experts\.gate_up_proj": "experts.gate_up_proj",
    r"mlp\.experts\.down_proj": "experts.down_proj",
}
_MIXTRAL_MOE = {
    r"(?:block_sparse_moe|mlp)\.gate\.weight": "router",
    r"(?:block_sparse_moe|mlp)\.experts\.(\d+)\.w1\.weight": "experts.w1",  # gate
    r"(?:block_sparse_moe|mlp)\.experts\.(\d+)\.w3\.weight": "experts.w3",  # up
    r"(?:block_sparse_moe|mlp)\.experts\.(\d+)\.w2\.weight": "experts.w2",  # down
    **_STACKED_EXPERTS,
}
_QWEN3_MOE = {
    r"mlp\.gate\.weight": "router",
    r"mlp\.experts\.(\d+)\.gate_proj\.weight": "experts.gate_proj",
    r"mlp\.experts\.(\d+)\.up_proj\.weight": "experts.up_proj",
    r"mlp\.experts\.(\d+)\.down_proj\.weight": "experts.down_proj",
    **_STACKED_EXPERTS,
}
_DECODER_GLOBAL = {
    r"model\.embed_tokens\.weight": "embed_tokens",
    r"model\.norm\.weight": "final_norm",
    r"lm_head\.weight": "lm_head",
}
# Gemma 3's multimodal checkpoint (`gemma3`): the language model under `language_model.model.` on disk
# (`model.language_model.` in memory), beside a vision tower and its projector into the text embeddings.
_GEMMA3_BLOCK_PREFIX = r"(?:language_model\.model\.|model\.language_model\.)layers\.(\d+)\."
_GEMMA3_GLOBAL = {
    r"(?:language_model\.model|model\.language_model)\.embed_tokens\.weight": "embed_tokens",
    r"(?:language_model\.model|model\.language_model)\.norm\.weight": "final_norm",
    r"(?:language_model\.)?lm_head\.weight": "lm_head",
    r"(?:model\.)?vision_tower\..+": "vision_tower",
    r"(?:model\.)?multi_modal_projector\..+": "mm_projector",
}
_GEMMA3_TEXT_BLOCK = {**_DECODER_BLOCK, **_QK_NORMS, **_FFN_NORMS}
_OLMO2_BLOCK = {**_ATTENTION, **_MLP, **_QK_NORMS, r"post_attention_layernorm\.weight": "post_attn_norm",
                r"post_feedforward_layernorm\.weight": "post_ffn_norm"}

BLOCK_MODULES: dict[str, dict[str, str]] = {
    "llama": _DECODER_BLOCK,
    "mistral": _DECODER_BLOCK,
    "qwen2": {**_DECODER_BLOCK, **_QKV_BIASES},
    "qwen3": {**_DECODER_BLOCK, **_QK_NORMS},
    "gemma2": {**_DECODER_BLOCK, **_FFN_NORMS},
    "gemma3_text": _GEMMA3_TEXT_BLOCK,
    "gemma3": _GEMMA3_TEXT_BLOCK,
    "phi3": _PHI3_BLOCK,
    "olmo2": _OLMO2_BLOCK,
    "mixtral": {**_ATTENTION, **_NORMS, **_MIXTRAL_MOE},
    # Layers listed in `mlp_only_layers` (or off `decoder_sparse_step`) keep a dense MLP.
    "qwen3_moe": {**_DECODER_BLOCK, **_QK_NORMS, **_QWEN3_MOE},
}
GLOBAL_MODULES: dict[str, dict[str, str]] = {arch: _DECODER_GLOBAL for arch in BLOCK_MODULES}
GLOBAL_MODULES["gemma3"] = _GEMMA3_GLOBAL
BLOCK_PREFIXES: dict[str, str] = {"gemma3": _GEMMA3_BLOCK_PREFIX}
_BLOCK_PREFIX = r"model\.layers\.(\d+)\."

# Modules whose output is added to the residual stream: attention's output and the MLP's down-projection (each
# expert's, in a mixture of experts; in Gemma 2 and 3 both pass a norm first, which scales coordinates only).
_WRITERS = ("o_proj", "down_proj")
RESIDUAL_WRITERS: dict[str, tuple[str, ...]] = {arch: _WRITERS for arch in BLOCK_MODULES}
RESIDUAL_WRITERS["mixtral"] = ("o_proj", "experts.w2", "experts.down_proj")
RESIDUAL_WRITERS["qwen3_moe"] = ("o_proj", "down_proj", "experts.down_proj")
# What an architecture without a table uses (with Llama's module table).
DEFAULT_ARCH = "llama"
# Kept for results computed before every name got a module; tensor_role no longer returns it.
OTHER = "other"


@dataclass(frozen=True)
class TensorRole:
    layer: int  # block index; -1 for tensors outside the decoder blocks
    module: str
    expert: int | None = None  # a mixture of experts' expert index; None elsewhere (and for stacked experts)


def residual_writers(arch: str | None) -> tuple[str, ...]:
    """The modules of `arch` whose output is added to the residual stream."""
    return RESIDUAL_WRITERS.get(arch or "", RESIDUAL_WRITERS[DEFAULT_ARCH])


def _compile(arch: str) -> list[tuple[re.Pattern[str], str, bool]]:
    prefix = BLOCK_PREFIXES.get(arch, _BLOCK_PREFIX)
    rules = [(re.compile(rf"{prefix}{pat}$"), name, True) for pat, name in BLOCK_MODULES[arch].items()]
    rules += [(re.compile(rf"{pat}$"), name, False) for pat, name in GLOBAL_MODULES[arch].items()]
    return rules


_RULES = {arch: _compile(arch) for arch in BLOCK_MODULES}
# A name no table knows: its layer from `layers.N.` (or GPT-2's `h.N.`, `blocks.N.`), an expert from `experts.N.`.
_ANY_BLOCK = re.compile(r"(?:^|\.)(?:layers|h|blocks)\.(\d+)\.(.+)$")
_ANY_EXPERT = re.compile(r"(?:^|\.)experts\.(\d+)\.")


def readable_role(name: str) -> TensorRole:
    """The role of a name no table knows: the path inside its block without `.weight` (`mlp.foo.weight` ->
    `mlp.foo`), an expert's index taken out of the path; outside the blocks, the path without `model.`."""
    block = _ANY_BLOCK.search(name)
    layer, path = (int(block.group(1)), block.group(2)) if block else (-1, name.removeprefix("model."))
    expert = _ANY_EXPERT.search(path)
    if expert:
        path = path[:expert.start()] + (".experts." if expert.start() else "experts.") + path[expert.end():]
    return TensorRole(layer, path.removesuffix(".weight"), int(expert.group(1)) if expert else None)


def tensor_role(name: str, arch: str | None) -> TensorRole:
    """Map a state-dict name to (layer, module, expert) by the architecture's table (Llama's for an architecture
    without one); a name the table does not know keeps a readable module (readable_role)."""
    for pattern, module, in_block in _RULES.get(arch or "", _RULES[DEFAULT_ARCH]):
        match = pattern.search(name)
        if match:
            if not in_block:
                return TensorRole(-1, module)
            expert = match.group(2) if match.re.groups > 1 else None
            return TensorRole(int(match.group(1)), module, int(expert) if expert is not None else None)
    return readable_role(name)


# Where transformers >= 5 keeps a checkpoint's tensor once loaded, where the model's name differs: a renamed
# module, or one expert's matrix inside the 3-D stack of all experts (gate rows before up rows in gate_up_proj).
_LOADED_RENAMES: dict[str, tuple[tuple[str, str], ...]] = {"mixtral": ((".block_sparse_moe.", ".mlp."),)}
_STACKED_PARTS: dict[str, dict[str, tuple[str, int | None]]] = {
    "mixtral": {"experts.w1": ("gate_up_proj", 0), "experts.w3": ("gate_up_proj", 1),
                "experts.w2": ("down_proj", None)},
    "qwen3_moe": {"experts.gate_proj": ("gate_up_proj", 0), "experts.up_proj": ("gate_up_proj", 1),
                  "experts.down_proj": ("down_proj", None)},
}


def loaded_tensor(params: dict, name: str, arch: str | None):
    """The loaded model's tensor that holds checkpoint tensor `name` (params: dict(model.named_parameters())):
    the parameter of that name, else where transformers >= 5 keeps it (a renamed module, or a view of one expert's
    rows inside the stacked experts, which writing into in place changes); None where the model holds no such
    tensor (an lm_head tied to the embeddings)."""
    if name in params:
        return params[name]
    for old, new in _LOADED_RENAMES.get(arch or "", ()):
        if name.replace(old, new) in params:
            return params[name.replace(old, new)]
    role = tensor_role(name, arch)
    part = _STACKED_PARTS.get(arch or "", {}).get(role.module)
    stacked = params.get(f"model.layers.{role.layer}.mlp.experts.{part[0]}") if part else None
    if stacked is None or role.expert is None:
        return None
    matrix = stacked[role.expert]  # (rows, cols); gate_up_proj: (2 * rows, cols)
    if part[1] is None:
        return matrix
    rows = matrix.shape[0] // 2
    return matrix[part[1] * rows:(part[1] + 1) * rows]
