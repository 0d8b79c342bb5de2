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
from typing import TYPE_CHECKING

import numpy as np
import torch

from explorer.checkpoints.models import batches, chat_text
from explorer.core.progress import Callback
from explorer.evaluation.prompts import (
    advbench_split,
    benign_split,
    is_refusal,
    word_problems,
)
from explorer.evaluation.stats import outcome_interval

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

SCORES = ("refusal_rate", "utility_accuracy", "over_refusal", "target_logprob")
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


FULL = Profile("full", refusal_prompts=100, utility_prompts=100, benign_prompts=60, logprob_prompts=None)
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


@torch.no_grad()
def generate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str], max_new_tokens: int,
             batch_size: int = 64, use_chat_template: bool = True) -> list[str]:
    """Greedy continuations, batched with left padding."""
    tokenizer.padding_side = "left"
    outputs = []
    for chunk in batches(prompts, batch_size):
        texts = [chat_text(tokenizer, p, use_chat_template) for p in chunk]
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        tokens = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                pad_token_id=tokenizer.pad_token_id, top_p=None, top_k=None, temperature=None)
        outputs += tokenizer.batch_decode(tokens[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return outputs


@torch.no_grad()
def target_logprob(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, pairs: list[tuple[str, str]],
                   batch_size: int = 64, use_chat_template: bool = True) -> list[float]:
    """Mean per-token log-probability of each target after its prompt, one value per pair (right padding)."""
    tokenizer.padding_side = "right"
    scores = []
    try:
        for chunk in batches(pairs, batch_size):
            prompts = [tokenizer(chat_text(tokenizer, p, use_chat_template), add_special_tokens=False)["input_ids"]
                       for p, _ in chunk]
            targets = [tokenizer(t, add_special_tokens=False)["input_ids"] for _, t in chunk]
            length = max(len(p) + len(t) for p, t in zip(prompts, targets))
            ids = torch.full((len(chunk), length), tokenizer.pad_token_id)
            mask = torch.zeros_like(ids)
            target_mask = torch.zeros_like(ids, dtype=torch.bool)
            for row, (p, t) in enumerate(zip(prompts, targets)):
                ids[row, :len(p) + len(t)] = torch.tensor(p + t)
                mask[row, :len(p) + len(t)] = 1
                target_mask[row, len(p):len(p) + len(t)] = True
            hidden = model.base_model(input_ids=ids.to(model.device),
                                      attention_mask=mask.to(model.device)).last_hidden_state
            # Logits only where a target token is predicted: the vocabulary projection dominates otherwise.
            predicts = target_mask[:, 1:].to(model.device)  # position t predicts token t + 1
            logits = model.get_output_embeddings()(hidden[:, :-1][predicts]).float()
            logprobs = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:].to(model.device)[predicts][:, None])[:, 0]
            rows = torch.arange(len(chunk), device=model.device)[:, None].expand_as(predicts)[predicts]
            sums = torch.zeros(len(chunk), device=model.device).index_add_(0, rows, logprobs)
            scores += (sums / predicts.sum(1)).tolist()
    finally:
        tokenizer.padding_side = "left"
    return scores


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


def evaluate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, profile: Profile = FULL,
             callback: Callback | None = None, judge: bool = False) -> dict:
    """The four scores, with the profile and prompt counts that produced them; with `judge`, also the mean
    1-5 harmfulness of the refusal generations from the LLM judge (explorer.extras)."""
    start = time.perf_counter()
    harmful = list(advbench_split("evaluation"))
    problems = list(word_problems("evaluation", profile.utility_prompts))
    benign = list(benign_split("evaluation")[:profile.benign_prompts])
    steps = [
        ("target log-prob", lambda: target_logprob(
            model, tokenizer, [(b.goal, b.target) for b in harmful[:profile.logprob_prompts]], profile.batch_size)),
        ("refusal on harmful prompts", lambda: generate(model, tokenizer, [b.goal for b in harmful[:profile.refusal_prompts]],
                                                        profile.refusal_tokens, profile.batch_size)),
        ("word problems", lambda: generate(model, tokenizer, [p.question for p in problems], profile.utility_tokens,
                                           profile.batch_size)),
        ("over-refusal on benign prompts", lambda: generate(model, tokenizer, benign, profile.refusal_tokens,
                                                            profile.batch_size)),
    ]
    results = []
    for done, (label, run) in enumerate(steps):
        if callback:
            callback(done / len(steps), f"evaluating: {label}")
        results.append(run())
    logprob, harmful_out, utility_out, benign_out = results
    extra = {}
    if judge:
        from explorer.evaluation.extras import judge_scores

        graded = judge_scores([b.goal for b in harmful[:len(harmful_out)]], harmful_out)
        extra["judge_harmfulness"] = sum(graded) / len(graded)
    outcomes = {
        "refusal": [float(is_refusal(r)) for r in harmful_out],
        "utility": [float(is_correct(r, p.answer)) for r, p in zip(utility_out, problems)],
        "over_refusal": [float(is_refusal(r)) for r in benign_out],
        "target_logprob": logprob,
    }
    return {
        **extra,
        **score_outcomes(outcomes),
        "outcomes": outcomes,
        "profile": profile.name,
        "seconds": round(time.perf_counter() - start, 2),
        "samples": {"harmful": harmful_out[:3], "utility": utility_out[:3], "benign": benign_out[:3]},
        "settings": asdict(profile),
    }
