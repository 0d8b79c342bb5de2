"""A model's context window, and prompts checked against it before any work.

A prompt longer than the context is refused, never cut. A cut prompt is another prompt: its last-token state
(what activation MSO reads) and its answer belong to text the researcher never wrote, and which end may go (a
document before its question, instructions before their data) only the researcher knows; one line naming the
prompt costs less than a result computed on the wrong text. Generation never runs past the context either: a
prompt that leaves less room than asked is answered in the room there is, with a warning (the scores read their
verdicts from an answer's first tokens, and a model fed positions it was never trained on answers garbage, or,
with learned position embeddings, fails).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from explorer.checkpoints.models import chat_text
from explorer.core.errors import PromptSetError, one_line

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger("explorer")
# Config fields that hold the longest sequence a model was built for, by architecture family.
CONFIG_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")
UNSET = 10**8  # tokenizers without a limit of their own report a huge model_max_length (int(1e30))


@dataclass(frozen=True)
class Context:
    tokens: int
    source: str  # where the limit was read, for messages


def context_of(config: object, tokenizer: PreTrainedTokenizerBase | None) -> Context | None:
    """The model's context: the smaller of its config's limit and its tokenizer's model_max_length, where
    either states one; None when neither does."""
    values = config.to_dict() if hasattr(config, "to_dict") else config if isinstance(config, dict) else {}
    limits = []
    for section in (values, values.get("text_config")):  # multimodal configs keep the language model's apart
        if isinstance(section, dict):
            limits += [Context(v, f"{key} in its config") for key in CONFIG_KEYS
                       if isinstance(v := section.get(key), int) and not isinstance(v, bool) and v > 0][:1]
    stated = getattr(tokenizer, "model_max_length", None)
    if isinstance(stated, int) and 0 < stated < UNSET:
        limits.append(Context(stated, "the tokenizer's model_max_length"))
    return min(limits, key=lambda c: c.tokens, default=None)


def model_context(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> Context | None:
    return context_of(getattr(model, "config", None), tokenizer)


def token_counts(tokenizer: PreTrainedTokenizerBase, prompts: list[str], use_chat_template: bool = True
                 ) -> list[int]:
    """Tokens of each prompt as last_token_states feeds it (chat-formatted, or raw with special tokens)."""
    texts = [chat_text(tokenizer, p, use_chat_template) for p in prompts]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=not use_chat_template)["input_ids"]]


def check_fit(counts: list[int], prompts: list[str], context: Context | None, what: str, reserve: int = 0,
              counted: str = "") -> None:
    """Refuse prompts of more than the context's tokens less `reserve` (room for new tokens), naming how many,
    the first of them and the limit. `counted` says what a count includes besides the prompt."""
    if context is None:
        return
    over = [i for i, n in enumerate(counts) if n > context.tokens - reserve]
    if not over:
        return
    first = over[0]
    room = f", with room for {reserve} new token{'s' * (reserve > 1)}" if reserve else ""
    raise PromptSetError(
        f"{len(over)} of the {len(counts)} prompts of {what} do not fit the model's context of {context.tokens} "
        f"tokens ({context.source}{room}): prompt {first + 1} (\"{one_line(prompts[first], 40)}\") is "
        f"{counts[first]} tokens{counted}; shorten or remove the prompts that long (none is cut: a cut prompt is "
        "another prompt)")


def new_token_budgets(counts: list[int], max_new_tokens: int, context: Context | None, what: str) -> list[int]:
    """The new tokens each prompt may generate: `max_new_tokens`, or the room the context leaves after it; warns
    how many answers stop early, and where."""
    if context is None:
        return [max_new_tokens] * len(counts)
    budgets = [max(0, min(max_new_tokens, context.tokens - n)) for n in counts]
    short = [b for b in budgets if b < max_new_tokens]
    if short:
        stop = f"{min(short)}" if min(short) == max(short) else f"{min(short)} to {max(short)}"
        log.warning("%d of the %d prompts of %s leave room for less than %d new tokens in the model's context of %d "
                    "tokens (%s): their answers stop at the context's end, after %s tokens", len(short), len(counts),
                    what, max_new_tokens, context.tokens, context.source, stop)
    return budgets
