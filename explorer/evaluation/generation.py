"""Batched greedy generation and target log-probabilities of chat-formatted prompts, with the speed-ups of
evaluation/prefix.py (a shared prefix prefilled once, rows of similar length batched together, each row stopped
once its verdict is decided), and answer(), which batches prompts of several kinds together."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch

from explorer.checkpoints.models import batches, chat_text
from explorer.core.progress import Callback
from explorer.evaluation.context import check_fit, model_context, new_token_budgets
from explorer.evaluation.prefix import PrefixCache, StopWhenDecided, common_prefix, left_padded

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def token_ids(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> list[list[int]]:
    return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]


def _length_batches(lengths: list[int], size: int, by_length: bool) -> list[list[int]]:
    """Row indices in batches; `by_length` batches rows of similar length together, so little is padding."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__) if by_length else list(range(len(lengths)))
    return batches(order, size)


def _generate_batch(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, input_ids: torch.Tensor,
                    mask: torch.Tensor, past, budgets: list[int], stops: list[Callable[[str], bool] | None]
                    ) -> list[str]:
    """Greedy continuations of the rows: each up to its own budget of new tokens, stopped once its own stop holds
    (a row that stops waits, padded, for the others; its text ends where it stopped)."""
    from transformers import StoppingCriteriaList

    criteria = StoppingCriteriaList([StopWhenDecided(tokenizer, input_ids.shape[1], stops, budgets)])
    tokens = model.generate(input_ids=input_ids.to(model.device), attention_mask=mask.to(model.device),
                            past_key_values=past, max_new_tokens=max(budgets), do_sample=False,
                            stopping_criteria=criteria, pad_token_id=tokenizer.pad_token_id, top_p=None, top_k=None,
                            temperature=None)
    new = tokens[:, input_ids.shape[1]:]
    return [tokenizer.decode(row[:budget], skip_special_tokens=True) for row, budget in zip(new, budgets)]


def _answer_batch(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, shared: list[int], prefix: PrefixCache,
                  own: list[list[int]], targets: list[list[int]], budgets: list[int],
                  stops: list[Callable[[str], bool] | None]) -> tuple[list[str], list[float | None]]:
    """One batch of prompts (their token ids after the `shared` prefix, whose cache `prefix` holds): each target's
    mean per-token log-probability after its prompt (None for a row without one), and each prompt's greedy
    continuation of up to its budget, which reuses the prompt's key/value cache from the log-probability pass."""
    generating = max(budgets) > 0
    logprobs: list[float | None] = [None] * len(own)
    past = prefix.for_batch(len(own))
    if any(targets):
        ids, mask, positions, target_mask = _prompt_target_rows(shared, own, targets, tokenizer.pad_token_id)
        out = model.base_model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device),
                               position_ids=positions.to(model.device), past_key_values=past, use_cache=generating)
        # Logits only where a target token is predicted: the vocabulary projection dominates otherwise.
        predicts = target_mask[:, 1:].to(model.device)  # position t predicts token t + 1
        logits = model.get_output_embeddings()(out.last_hidden_state[:, :-1][predicts]).float()
        values = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:].to(model.device)[predicts][:, None])[:, 0]
        index = torch.arange(len(own), device=model.device)[:, None].expand_as(predicts)[predicts]
        sums = torch.zeros(len(own), device=model.device).index_add_(0, index, values)
        means = (sums / predicts.sum(1).clamp(min=1)).tolist()
        logprobs = [mean if target else None for mean, target in zip(means, targets)]
        if generating:
            # Keep the cache up to the prompts' last token, which generation feeds again to predict the first.
            past = out.past_key_values
            past.crop(-(ids.shape[1] - max(len(p) for p in own) + 1))
    if not generating:
        return [""] * len(own), logprobs
    input_ids, prompt_mask = left_padded(shared, own, tokenizer.pad_token_id)
    return _generate_batch(model, tokenizer, input_ids, prompt_mask, past, budgets, stops), logprobs


@torch.no_grad()
def generate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str], max_new_tokens: int,
             batch_size: int = 64, use_chat_template: bool = True, stop: Callable[[str], bool] | None = None,
             share_prefix: bool = True, by_length: bool = True, prefix_from: list[str] | None = None,
             what: str = "the set") -> list[str]:
    """Greedy continuations, batched (rows of similar length together with `by_length`), in the prompts' order.
    The prompts' shared token prefix (or that of `prefix_from`, a set they belong to) is prefilled once
    (`share_prefix`), and a row stops early once `stop(text so far)` holds (its text is then a prefix of the full
    continuation). A prompt longer than the model's context is refused before any work (`what` names the set);
    one that leaves less than `max_new_tokens` of room is answered alone, up to the context's end, with a warning."""
    ids = token_ids(tokenizer, [chat_text(tokenizer, p, use_chat_template) for p in prompts])
    context = model_context(model, tokenizer)
    check_fit([len(i) for i in ids], prompts, context, what, reserve=1)
    budgets = new_token_budgets([len(i) for i in ids], max_new_tokens, context, what)
    shared = _shared_prefix(tokenizer, ids, prefix_from, use_chat_template) if share_prefix and ids else []
    prefix = PrefixCache(model, shared)
    outputs: list[str] = [""] * len(ids)
    roomy = [r for r, budget in enumerate(budgets) if budget == max_new_tokens]
    # A row alone generates exactly what it does in any batch, so a short budget never depends on the batching.
    work = [[roomy[i] for i in rows]
            for rows in _length_batches([len(ids[r]) for r in roomy], batch_size, by_length)]
    work += [[r] for r, budget in enumerate(budgets) if budget < max_new_tokens]
    for rows in work:
        texts, _ = _answer_batch(model, tokenizer, shared, prefix, [ids[r][len(shared):] for r in rows],
                                 [[] for _ in rows], [budgets[rows[0]]] * len(rows), [stop] * len(rows))
        for r, text in zip(rows, texts):
            outputs[r] = text
    return outputs


def _shared_prefix(tokenizer: PreTrainedTokenizerBase, ids: list[list[int]], prefix_from: list[str] | None,
                   use_chat_template: bool) -> list[int]:
    """The token prefix shared by `ids`, or by the prompts of `prefix_from`: scoring a few prompts of a set at a
    time then prefills exactly what scoring the whole set at once does."""
    if prefix_from:
        ids = token_ids(tokenizer, [chat_text(tokenizer, p, use_chat_template) for p in prefix_from])
    return ids[0][:common_prefix(ids)]


def _prompt_target_rows(shared: list[int], prompts: list[list[int]], targets: list[list[int]], pad_id: int):
    """(ids, attention mask, position ids, target mask) of rows `prompt + target` after a shared prefix: prompts
    left-padded so that they all end in the same column (where generation would start), targets right-padded."""
    width = max(len(p) for p in prompts)
    length = width + max(len(t) for t in targets)
    ids = torch.full((len(prompts), length), pad_id)
    mask = torch.zeros((len(prompts), len(shared) + length), dtype=torch.long)
    mask[:, :len(shared)] = 1
    positions = torch.zeros_like(ids)
    target_mask = torch.zeros_like(ids, dtype=torch.bool)
    for row, (p, t) in enumerate(zip(prompts, targets)):
        start = width - len(p)
        ids[row, start:width + len(t)] = torch.tensor(p + t)
        mask[row, len(shared) + start:len(shared) + width + len(t)] = 1
        positions[row, start:] = torch.arange(len(shared), len(shared) + length - start)
        target_mask[row, width:width + len(t)] = True
    return ids, mask, positions, target_mask


@torch.no_grad()
def _targets_pass(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, pairs: list[tuple[str, str]],
                  batch_size: int, use_chat_template: bool, share_prefix: bool, by_length: bool,
                  max_new_tokens: int = 0, stop: Callable[[str], bool] | None = None,
                  prefix_from: list[str] | None = None) -> tuple[list[str], list[float]]:
    """Each target's mean per-token log-probability after its prompt and, with `max_new_tokens`, the prompt's
    greedy continuation, which reuses the prompt's key/value cache from the log-probability pass."""
    prompts = token_ids(tokenizer, [chat_text(tokenizer, p, use_chat_template) for p, _ in pairs])
    targets = token_ids(tokenizer, [t for _, t in pairs])
    context = model_context(model, tokenizer)
    check_fit([len(p) + len(t) for p, t in zip(prompts, targets)], [p for p, _ in pairs], context,
              "the (prompt, target) pairs", counted=" with its target")
    if max_new_tokens and context and any(len(p) + max_new_tokens > context.tokens for p in prompts):
        # generate() answers such prompts alone, up to the context's end; one prefill cannot serve both then.
        texts = generate(model, tokenizer, [p for p, _ in pairs], max_new_tokens, batch_size, use_chat_template, stop,
                         share_prefix, by_length, prefix_from, "the (prompt, target) pairs")
        return texts, _targets_pass(model, tokenizer, pairs, batch_size, use_chat_template, share_prefix, by_length,
                                    prefix_from=prefix_from)[1]
    shared = _shared_prefix(tokenizer, prompts, prefix_from, use_chat_template) if share_prefix and prompts else []
    prefix = PrefixCache(model, shared)
    scores, texts = [0.0] * len(pairs), [""] * len(pairs)
    for rows in _length_batches([len(p) for p in prompts], batch_size, by_length):
        batch_texts, batch_scores = _answer_batch(
            model, tokenizer, shared, prefix, [prompts[r][len(shared):] for r in rows], [targets[r] for r in rows],
            [max_new_tokens] * len(rows), [stop] * len(rows))
        for r, text, score in zip(rows, batch_texts, batch_scores):
            texts[r], scores[r] = text, score
    return texts, scores


def target_logprob(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, pairs: list[tuple[str, str]],
                   batch_size: int = 64, use_chat_template: bool = True, share_prefix: bool = True,
                   by_length: bool = True, prefix_from: list[str] | None = None) -> list[float]:
    """Mean per-token log-probability of each target after its prompt, one value per pair in their order (the
    prompts' shared prefix, or that of `prefix_from`, prefilled once with `share_prefix`; prompts of similar
    length batched together with `by_length`)."""
    return _targets_pass(model, tokenizer, pairs, batch_size, use_chat_template, share_prefix, by_length,
                         prefix_from=prefix_from)[1]


def generate_with_target_logprob(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                                 pairs: list[tuple[str, str]], max_new_tokens: int, batch_size: int = 64,
                                 use_chat_template: bool = True, stop: Callable[[str], bool] | None = None,
                                 share_prefix: bool = True, by_length: bool = True,
                                 prefix_from: list[str] | None = None) -> tuple[list[str], list[float]]:
    """generate() on the pairs' prompts and target_logprob() of the pairs, in one prefill of each prompt."""
    return _targets_pass(model, tokenizer, pairs, batch_size, use_chat_template, share_prefix, by_length,
                         max_new_tokens, stop, prefix_from)


@dataclass(frozen=True)
class Ask:
    """A prompt to answer: the mean log-probability of `target` after it (when one is given) and its greedy
    continuation of up to `new_tokens`, stopped once `stop(text so far)` holds."""

    prompt: str
    target: str = ""
    new_tokens: int = 0
    stop: Callable[[str], bool] | None = None


@torch.no_grad()
def answer(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, asks: list[Ask], batch_size: int = 64,
           prefix_from: list[str] | None = None, callback: Callback | None = None
           ) -> list[tuple[str, float | None]]:
    """(continuation, target log-prob or None) of each ask, in their order, each row computed as generate() and
    generate_with_target_logprob() compute it. Asks with and without a target, and asks that generate or not,
    are batched apart (a target pads every row of its batch); within each group, asks of different budgets share
    a batch when the group fits one, so a few prompts of every kind cost one generation, not one per kind.
    A prompt that leaves less room than its budget in the model's context is answered alone, as generate() answers
    it. `prefix_from` (default: the asks' prompts) gives the shared prefix prefilled once."""
    prompts = token_ids(tokenizer, [chat_text(tokenizer, a.prompt) for a in asks])
    targets = token_ids(tokenizer, [a.target for a in asks])
    context = model_context(model, tokenizer)
    generating = [r for r, a in enumerate(asks) if a.new_tokens]
    check_fit([len(prompts[r]) for r in generating], [asks[r].prompt for r in generating], context, "the prompts",
              reserve=1)
    paired = [r for r, t in enumerate(targets) if t]
    check_fit([len(prompts[r]) + len(targets[r]) for r in paired], [asks[r].prompt for r in paired], context,
              "the (prompt, target) pairs", counted=" with its target")
    prefix_from = prefix_from or [a.prompt for a in asks]
    replies: list[tuple[str, float | None]] = [("", None)] * len(asks)
    tight = {r for r, a in enumerate(asks) if a.new_tokens and context and
             len(prompts[r]) + a.new_tokens > context.tokens}
    for r in sorted(tight):
        a = asks[r]
        if a.target:
            texts, logprobs = generate_with_target_logprob(model, tokenizer, [(a.prompt, a.target)], a.new_tokens,
                                                           stop=a.stop, prefix_from=prefix_from)
            replies[r] = (texts[0], logprobs[0])
        else:
            replies[r] = (generate(model, tokenizer, [a.prompt], a.new_tokens, stop=a.stop, prefix_from=prefix_from)[0],
                          None)
    groups: dict[tuple[bool, bool], list[int]] = {}
    for r, a in enumerate(asks):
        if r not in tight and (a.new_tokens or targets[r]):
            groups.setdefault((a.new_tokens > 0, bool(targets[r])), []).append(r)
    work = []
    for rows in groups.values():
        rows.sort(key=lambda r: (asks[r].new_tokens, len(prompts[r])))
        if len(rows) > batch_size:  # several batches: one budget each, so no row waits for longer answers
            budgets = sorted({asks[r].new_tokens for r in rows})
            work += [b for n in budgets for b in batches([r for r in rows if asks[r].new_tokens == n], batch_size)]
        else:
            work.append(rows)
    shared = _shared_prefix(tokenizer, prompts, prefix_from, True) if work else []
    prefix = PrefixCache(model, shared)
    for done, rows in enumerate(work):
        if callback:
            callback(done / len(work), f"evaluating: batch {done + 1} of {len(work)}")
        texts, logprobs = _answer_batch(model, tokenizer, shared, prefix, [prompts[r][len(shared):] for r in rows],
                                        [targets[r] for r in rows], [asks[r].new_tokens for r in rows],
                                        [asks[r].stop for r in rows])
        for r, text, logprob in zip(rows, texts, logprobs):
            replies[r] = (text, logprob)
    return replies
