"""Full fine-tuning on (prompt, response) pairs with the loss on the response only, seeded."""
from __future__ import annotations

import random
from typing import TYPE_CHECKING

import torch

from explorer.checkpoints.models import chat_text
from explorer.core.errors import ParameterError
from explorer.core.progress import Callback, track

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def encode_pair(tokenizer: PreTrainedTokenizerBase, prompt: str, response: str, max_len: int) -> tuple[list[int], int]:
    """Token ids of prompt + response (+ end of turn) and where the response starts."""
    prompt_ids = tokenizer(chat_text(tokenizer, prompt), add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return (prompt_ids + response_ids)[:max_len], len(prompt_ids)


def finetune(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, pairs: list[tuple[str, str]], steps: int,
             lr: float, batch_size: int = 8, max_len: int = 96, seed: int = 0, desc: str = "fine-tuning",
             callback: Callback | None = None) -> list[float]:
    """AdamW on all weights, constant learning rate after a short warm-up; returns the loss per step."""
    torch.manual_seed(seed)
    order = random.Random(seed)
    encoded = [(ids, start) for ids, start in (encode_pair(tokenizer, p, r, max_len) for p, r in pairs)
               if start < len(ids)]  # a response truncated away entirely would give no loss
    if not encoded:
        raise ParameterError(f"every training example's prompt is {max_len} tokens or longer; raise max_len")
    queue: list[int] = []
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    warmup = max(1, steps // 10)
    model.train()
    losses = []
    for step in track(range(steps), desc, callback=callback):
        while len(queue) < batch_size:  # a set smaller than a batch is repeated within it
            fresh = list(range(len(encoded)))
            order.shuffle(fresh)
            queue += fresh
        batch = [encoded[queue.pop(0)] for _ in range(batch_size)]
        length = max(len(ids) for ids, _ in batch)
        input_ids = torch.full((batch_size, length), tokenizer.pad_token_id)
        labels = torch.full((batch_size, length), -100)
        mask = torch.zeros((batch_size, length), dtype=torch.long)
        for row, (ids, start) in enumerate(batch):
            input_ids[row, :len(ids)] = torch.tensor(ids)
            labels[row, start:len(ids)] = torch.tensor(ids[start:])
            mask[row, :len(ids)] = 1
        for group in optimizer.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / warmup)
        device = model.device
        # On CUDA, bf16 autocast over float32 master weights; on the CPU, float32 throughout.
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = model(input_ids=input_ids.to(device), attention_mask=mask.to(device), labels=labels.to(device)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    model.eval()
    return losses
