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

from explorer.checkpoints.models import chat_text
from explorer.core.progress import Callback
from explorer.evaluation.context import check_fit, model_context
from explorer.evaluation.generation import Ask, answer, generate, target_logprob, token_ids
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
        return [len(ids) for ids in token_ids(tokenizer, [chat_text(tokenizer, t) for t in texts])]

    questions = [p.question for p in sets.problems]
    for what, prompts in (("the harmful prompts", sets.goals), ("the word problems", questions),
                          ("the benign prompts", sets.benign)):
        check_fit(counts(prompts), prompts, context, what, reserve=1)
    goals = [goal for goal, _ in sets.pairs]
    targets = [len(ids) for ids in token_ids(tokenizer, [target for _, target in sets.pairs])]
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
    prefills the shared chat prefix once, batches prompts of similar length together (those of every kind in one
    batch when they fit one: generation.answer) and stops each generation once its verdict is decided."""
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
