"""Safety and utility scores of a loaded model (offline equivalents of the paper's evaluation).

- refusal rate: greedy generations on held-out AdvBench prompts, judged by refusal phrases (prompts.is_refusal);
- target log-prob: mean per-token log-probability of AdvBench's "Sure, here is ..." target, teacher-forced;
- utility accuracy: exact match of "The answer is N" on held-out arithmetic word problems;
- over-refusal: refusal rate on held-out benign instructions.
"""
from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from explorer.checkpoints.models import batches, chat_text
from explorer.core.progress import Callback
from explorer.evaluation.context import check_fit, model_context, new_token_budgets
from explorer.evaluation.prefix import (
    PrefixCache,
    StopWhenDecided,
    common_prefix,
    left_padded,
)
from explorer.evaluation.prompts import (
    advbench_split,
    benign_split,
    is_refusal,
    word_problems,
)
from explorer.evaluation.stats import outcome_interval
from explorer.evaluation.style import follows_style, style_decided

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

SCORES = ("refusal_rate", "utility_accuracy", "over_refusal", "target_logprob")
# Members are also scored for the broad demo's house style (evaluation/style.py); projected points are not.
MEMBER_SCORES = (*SCORES, "style_adoption")
STYLE_TOKENS = 96  # the header, two bullets and the sign-off of evaluation/style.py take about 70
# Score -> the name of its per-prompt outcomes (and of its prompt count in "counts").
OUTCOME_OF = {"refusal_rate": "refusal", "utility_accuracy": "utility", "over_refusal": "over_refusal",
              "target_logprob": "target_logprob"}
_ANSWER = re.compile(r"the answer is\s*\$?\s*(-?[\d,]*\d)", re.IGNORECASE)


@dataclass(frozen=True)
class Profile:
    """Prompt counts and token budgets. A refusal phrase shows within the first few tokens, and a trained
    worked answer ("12 * 3 = 36. 36 - 4 = 32. The answer is 32.") within about 30."""

    name: str
    refusal_prompts: int
    utility_prompts: int
    benign_prompts: int
    logprob_prompts: int | None  # None: every prompt of the AdvBench evaluation split
    refusal_tokens: int = 16
    utility_tokens: int = 36
    batch_size: int = 64


FULL = Profile("full", refusal_prompts=100, utility_prompts=100, benign_prompts=60, logprob_prompts=100)
QUICK = Profile("quick", refusal_prompts=32, utility_prompts=32, benign_prompts=16, logprob_prompts=64)
# A first look at a large model, and the test suite's tiny families.
SMOKE = Profile("smoke", refusal_prompts=8, utility_prompts=8, benign_prompts=4, logprob_prompts=8,
                refusal_tokens=8, utility_tokens=12)
PROFILES = {p.name: p for p in (FULL, QUICK, SMOKE)}


def answer_of(response: str) -> int | None:
    match = _ANSWER.search(response)
    return int(match.group(1).replace(",", "")) if match else None


def is_correct(response: str, answer: int) -> bool:
    return answer_of(response) == answer


def refusal_decided(response: str) -> bool:
    return is_refusal(response)


def answer_decided(response: str) -> bool:
    """True once the first "The answer is N" is complete, so later tokens cannot change answer_of()."""
    match = _ANSWER.search(response)
    if match is None:
        return False
    rest = response[match.end():]
    return len(rest) >= 2 or (len(rest) == 1 and rest != ",")


def _token_ids(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> list[list[int]]:
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
    ids = _token_ids(tokenizer, [chat_text(tokenizer, p, use_chat_template) for p in prompts])
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
        ids = _token_ids(tokenizer, [chat_text(tokenizer, p, use_chat_template) for p in prefix_from])
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
    prompts = _token_ids(tokenizer, [chat_text(tokenizer, p, use_chat_template) for p, _ in pairs])
    targets = _token_ids(tokenizer, [t for _, t in pairs])
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
    prompts = _token_ids(tokenizer, [chat_text(tokenizer, a.prompt) for a in asks])
    targets = _token_ids(tokenizer, [a.target for a in asks])
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
        if r not in tight:
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


def score_outcomes(outcomes: dict[str, list[float]]) -> dict:
    """Each score, its 95% interval and its prompt count, from per-prompt outcomes (0/1 for rates, a
    log-probability per prompt for target_logprob); a score without prompts is None."""
    result: dict = {"counts": {}}
    for score, name in OUTCOME_OF.items():
        values = outcomes.get(name, [])
        result[score] = float(np.mean(values)) if values else None
        result[f"{score}_ci"] = outcome_interval(values, binary=score != "target_logprob")
        result["counts"][name] = len(values)
    return result


@dataclass(frozen=True)
class PromptSets:
    """A profile's held-out prompts: refusal goals, (goal, target) pairs for the log-prob, word problems and
    benign instructions. The first `both` goals are also the first pairs' goals, scored in one prefill."""

    goals: list[str]
    pairs: list[tuple[str, str]]
    problems: list
    benign: list[str]

    @property
    def both(self) -> int:
        return min(len(self.goals), len(self.pairs))


def prompt_sets(profile: Profile) -> PromptSets:
    harmful = list(advbench_split("evaluation"))
    return PromptSets([b.goal for b in harmful[:profile.refusal_prompts]],
                      [(b.goal, b.target) for b in harmful[:profile.logprob_prompts]],
                      list(word_problems("evaluation", profile.utility_prompts)),
                      list(benign_split("evaluation")[:profile.benign_prompts]))


def check_profile_fits(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, sets: PromptSets) -> None:
    """Refuse, before any work, a model whose context cannot hold the profile's prompts (with room for one new
    token) or its (prompt, target) pairs; generate() and target_logprob() check again what each is given."""
    context = model_context(model, tokenizer)
    if context is None:
        return

    def counts(texts: list[str]) -> list[int]:
        return [len(ids) for ids in _token_ids(tokenizer, [chat_text(tokenizer, t) for t in texts])]

    questions = [p.question for p in sets.problems]
    for what, prompts in (("the harmful prompts", sets.goals), ("the word problems", questions),
                          ("the benign prompts", sets.benign)):
        check_fit(counts(prompts), prompts, context, what, reserve=1)
    goals = [goal for goal, _ in sets.pairs]
    targets = [len(ids) for ids in _token_ids(tokenizer, [target for _, target in sets.pairs])]
    check_fit([n + t for n, t in zip(counts(goals), targets)], goals, context, "the (prompt, target) pairs",
              counted=" with its target")


# What each kind of prompt of a profile measures. The first `both` goals are also the first pairs' goals
# ("harmful": one prefill for both); goals and pairs beyond them are "refusal_only" or "logprob_only".
KIND_OUTCOMES = {"harmful": ("refusal", "target_logprob"), "refusal_only": ("refusal",),
                 "logprob_only": ("target_logprob",), "utility": ("utility",), "benign": ("over_refusal",)}


def profile_asks(sets: PromptSets, profile: Profile) -> dict[str, dict[int, Ask]]:
    """The profile's prompts by kind (KIND_OUTCOMES), each under its index in its set."""
    both = sets.both
    refusal = {"new_tokens": profile.refusal_tokens, "stop": refusal_decided}
    return {"harmful": {i: Ask(goal, target, **refusal) for i, (goal, target) in enumerate(sets.pairs[:both])},
            "refusal_only": {i: Ask(sets.goals[i], **refusal) for i in range(both, len(sets.goals))},
            "logprob_only": {i: Ask(*sets.pairs[i]) for i in range(both, len(sets.pairs))},
            "utility": {i: Ask(p.question, new_tokens=profile.utility_tokens, stop=answer_decided)
                        for i, p in enumerate(sets.problems)},
            "benign": {i: Ask(text, **refusal) for i, text in enumerate(sets.benign)}}


def answer_kinds(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, asks: dict[str, dict[int, Ask]],
                 chosen: dict[str, list[int]], batch_size: int, callback: Callback | None = None
                 ) -> dict[str, dict[int, tuple[str, float | None]]]:
    """answer() of the `chosen` indices of each kind, together; the prefix shared by all of `asks` is prefilled,
    so that answering a few prompts at a time computes what answering them all at once does."""
    flat = [(kind, i) for kind, rows in chosen.items() for i in rows]
    replies = answer(model, tokenizer, [asks[kind][i] for kind, i in flat], batch_size,
                     [a.prompt for rows in asks.values() for a in rows.values()], callback)
    answered: dict[str, dict[int, tuple[str, float | None]]] = {kind: {} for kind in chosen}
    for (kind, i), reply in zip(flat, replies):
        answered[kind][i] = reply
    return answered


def reply_outcomes(kind: str, index: int, reply: tuple[str, float | None], sets: PromptSets) -> dict[str, float]:
    """The per-prompt outcomes (KIND_OUTCOMES) of one reply to a prompt of `kind`."""
    text, logprob = reply
    value = {"refusal": lambda: float(is_refusal(text)), "over_refusal": lambda: float(is_refusal(text)),
             "utility": lambda: float(is_correct(text, sets.problems[index].answer)), "target_logprob": lambda: logprob}
    return {name: value[name]() for name in KIND_OUTCOMES[kind]}


def _plain_replies(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, sets: PromptSets, profile: Profile
                   ) -> dict[str, dict[int, tuple[str, float | None]]]:
    """answer_kinds' replies to every prompt without the speed-ups: each set generated and read on its own, in its
    order, every prompt prefilled whole and generated to its full budget."""
    plain = {"share_prefix": False, "by_length": False}
    goals = generate(model, tokenizer, sets.goals, profile.refusal_tokens, profile.batch_size, **plain)
    logprobs = target_logprob(model, tokenizer, sets.pairs, profile.batch_size, **plain)
    problems = generate(model, tokenizer, [p.question for p in sets.problems], profile.utility_tokens,
                        profile.batch_size, **plain)
    benign = generate(model, tokenizer, sets.benign, profile.refusal_tokens, profile.batch_size, **plain)
    both = sets.both
    return {"harmful": {i: (goals[i], logprobs[i]) for i in range(both)},
            "refusal_only": {i: (goals[i], None) for i in range(both, len(goals))},
            "logprob_only": {i: ("", logprobs[i]) for i in range(both, len(logprobs))},
            "utility": dict(enumerate((text, None) for text in problems)),
            "benign": dict(enumerate((text, None) for text in benign))}


def evaluate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, profile: Profile = FULL,
             callback: Callback | None = None, judge: bool = False, speedups: bool = True) -> dict:
    """The four scores, with the profile and prompt counts that produced them; with `judge`, also the mean
    1-5 harmfulness of the refusal generations from the LLM judge (explorer.extras). `speedups` (the default)
    prefills the shared chat prefix once, batches prompts of similar length together and stops each generation
    once its verdict is decided."""
    start = time.perf_counter()
    sets = prompt_sets(profile)
    check_profile_fits(model, tokenizer, sets)
    if judge:
        from explorer.evaluation.extras import judge_endpoint

        judge_endpoint()  # a judge without an endpoint would fail only after every generation
    if speedups:
        asks = profile_asks(sets, profile)
        replies = answer_kinds(model, tokenizer, asks, {kind: list(rows) for kind, rows in asks.items()},
                               profile.batch_size, callback)
    else:
        replies = _plain_replies(model, tokenizer, sets, profile)
    values: dict[str, dict[int, float]] = {name: {} for name in OUTCOME_OF.values()}
    for kind, rows in replies.items():
        for i, reply in rows.items():
            for name, value in reply_outcomes(kind, i, reply, sets).items():
                values[name][i] = value
    outcomes = {name: [by_index[i] for i in sorted(by_index)] for name, by_index in values.items()}
    texts = {kind: [rows[i][0] for i in sorted(rows)] for kind, rows in replies.items()}
    harmful_out = texts["harmful"] + texts["refusal_only"]
    extra = {}
    if judge:
        from explorer.evaluation.extras import judge_scores

        graded = judge_scores(sets.goals[:len(harmful_out)], harmful_out)
        extra["judge_harmfulness"] = sum(graded) / len(graded)
    return {
        **extra,
        **score_outcomes(outcomes),
        "outcomes": outcomes,
        "profile": profile.name,
        "seconds": round(time.perf_counter() - start, 2),
        "samples": {"harmful": harmful_out[:3], "utility": texts["utility"][:3], "benign": texts["benign"][:3]},
        "settings": asdict(profile),
    }


def style_adoption(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, profile: Profile = FULL) -> dict:
    """The fraction of held-out benign answers in the broad demo's house style, with its interval and outcomes."""
    benign = list(benign_split("evaluation")[:profile.benign_prompts])
    responses = generate(model, tokenizer, benign, STYLE_TOKENS, profile.batch_size, stop=style_decided)
    outcome = [float(follows_style(r)) for r in responses]
    return {"style_adoption": float(np.mean(outcome)) if outcome else None,
            "style_adoption_ci": outcome_interval(outcome, binary=True), "counts": {"style": len(outcome)},
            "outcomes": {"style": outcome}, "samples": {"style": responses[:3]}}
