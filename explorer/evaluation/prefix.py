"""Faster evaluation of many chat-formatted prompts that begin with the same tokens (the system turn).

The shared prefix is run through the model once per call and its key/value cache copied into every batch, so
only each prompt's own tokens are prefilled. Generation stops for a row as soon as its verdict cannot change
(a refusal phrase seen; a complete "The answer is N"). Both leave the generated text, up to where a verdict
is read, as it would be without them; the test suite and benchmarks/bench_evaluation.py check it.
"""
from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Callable

import torch

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def common_prefix(sequences: list[list[int]]) -> int:
    """Length of the token prefix every sequence shares, leaving each at least one token of its own."""
    if not sequences:
        return 0
    length = min(len(s) for s in sequences) - 1
    first = sequences[0]
    for seq in sequences[1:]:
        length = next((i for i in range(length) if seq[i] != first[i]), length)
    return max(length, 0)


class PrefixCache:
    """The key/value cache of a shared token prefix, computed once and handed out as per-batch copies."""

    def __init__(self, model: PreTrainedModel, prefix: list[int]):
        self.prefix = prefix
        self._cache = None
        if prefix:
            ids = torch.tensor([prefix], device=model.device)
            self._cache = model(input_ids=ids, use_cache=True).past_key_values

    def __len__(self) -> int:
        return len(self.prefix)

    def for_batch(self, size: int):
        if self._cache is None:
            return None
        cache = copy.deepcopy(self._cache)
        cache.batch_repeat_interleave(size)
        return cache


class StopWhenDecided:
    """A stopping criterion per row: stop once its `decided(text generated so far)` holds (a row without one never
    decides) or it has generated its `budget` of new tokens, so that rows of several kinds share one batch."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, prompt_length: int,
                 decided: list[Callable[[str], bool] | None], budgets: list[int]):
        self.tokenizer, self.prompt_length, self.decided, self.budgets = tokenizer, prompt_length, decided, budgets

    def __call__(self, input_ids: torch.LongTensor, scores=None, **kwargs) -> torch.BoolTensor:
        new = input_ids[:, self.prompt_length:]
        spent = [new.shape[1] >= budget for budget in self.budgets]
        if any(self.decided):
            texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
            spent = [done or (decided is not None and decided(text))
                     for done, decided, text in zip(spent, self.decided, texts)]
        return torch.tensor(spent, device=input_ids.device)


def left_padded(prefix: list[int], suffixes: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask) of `prefix + suffix` rows, each suffix left-padded after the shared prefix."""
    width = max(len(s) for s in suffixes)
    ids = torch.full((len(suffixes), len(prefix) + width), pad_id)
    mask = torch.zeros_like(ids)
    ids[:, :len(prefix)] = torch.tensor(prefix, dtype=ids.dtype) if prefix else ids[:, :0]
    mask[:, :len(prefix)] = 1
    for row, suffix in enumerate(suffixes):
        ids[row, ids.shape[1] - len(suffix):] = torch.tensor(suffix)
        mask[row, ids.shape[1] - len(suffix):] = 1
    return ids, mask
