"""Scores that stream: a profile's prompts scored a few at a time, every score's estimate and 95% interval
after each round, each prompt's outcome kept so that an interrupted evaluation resumes where it stopped.

Each kind of prompt is scored with the same calls, prompts and shared prefix as `evaluate` uses for the whole
set at once, so a streamed evaluation ends with the same per-prompt outcomes (tests/evaluation/test_stream.py).
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Callable, Iterator

from explorer.core.progress import Callback
from explorer.evaluation.evaluate import (
    OUTCOME_OF,
    Profile,
    answer_decided,
    check_profile_fits,
    generate,
    generate_with_target_logprob,
    is_correct,
    is_refusal,
    prompt_sets,
    refusal_decided,
    score_outcomes,
    target_logprob,
)

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

# Prompts of each kind per round: one of each first, so that all four scores have an estimate within seconds,
# then larger rounds, which batch better (a decoding step costs about the same for one row as for many).
ROUND_SIZES = (1, 7)
SAMPLES = 3  # responses kept per kind, as evaluate() keeps them


def _tasks(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, profile: Profile) -> dict[str, tuple]:
    """Kind -> (prompt count, score(indices) -> {outcome: [values]} and responses), split as evaluate() does."""
    sets = prompt_sets(profile)
    check_profile_fits(model, tokenizer, sets)
    goals, pairs, both, problems, benign = sets.goals, sets.pairs, sets.both, sets.problems, sets.benign
    size = profile.batch_size

    def harmful_both(rows: list[int]) -> tuple[dict, list[str]]:
        responses, logprob = generate_with_target_logprob(
            model, tokenizer, [pairs[r] for r in rows], profile.refusal_tokens, size, stop=refusal_decided,
            prefix_from=[p for p, _ in pairs[:both]])
        return {"refusal": [float(is_refusal(t)) for t in responses], "target_logprob": logprob}, responses

    def refusal_only(rows: list[int]) -> tuple[dict, list[str]]:
        responses = generate(model, tokenizer, [goals[r] for r in rows], profile.refusal_tokens, size,
                             stop=refusal_decided, prefix_from=goals[both:])
        return {"refusal": [float(is_refusal(t)) for t in responses]}, responses

    def logprob_only(rows: list[int]) -> tuple[dict, list[str]]:
        return {"target_logprob": target_logprob(model, tokenizer, [pairs[r] for r in rows], size,
                                                 prefix_from=[p for p, _ in pairs[both:]])}, []

    def utility(rows: list[int]) -> tuple[dict, list[str]]:
        responses = generate(model, tokenizer, [problems[r].question for r in rows], profile.utility_tokens, size,
                             stop=answer_decided, prefix_from=[p.question for p in problems])
        return {"utility": [float(is_correct(t, problems[r].answer)) for t, r in zip(responses, rows)]}, responses

    def over_refusal(rows: list[int]) -> tuple[dict, list[str]]:
        responses = generate(model, tokenizer, [benign[r] for r in rows], profile.refusal_tokens, size,
                             stop=refusal_decided, prefix_from=benign)
        return {"over_refusal": [float(is_refusal(t)) for t in responses]}, responses

    return {"harmful": (both, harmful_both, 0), "refusal_only": (len(goals) - both, refusal_only, both),
            "logprob_only": (len(pairs) - both, logprob_only, both), "utility": (len(problems), utility, 0),
            "benign": (len(benign), over_refusal, 0)}


SAMPLE_KIND = {"harmful": "harmful", "refusal_only": "harmful", "utility": "utility", "benign": "benign"}


def empty_state() -> dict:
    """What a streamed evaluation has done: per kind, the prompt indices scored; per outcome, prompt -> value."""
    return {"done": {}, "outcomes": {name: {} for name in OUTCOME_OF.values()}, "samples": {}, "seconds": 0.0}


def _well_formed(state: object) -> bool:
    """Whether a kept state has the shape empty_state() gives (a damaged or foreign one is started afresh)."""
    return isinstance(state, dict) and all(isinstance(state.get(k), dict) for k in ("done", "outcomes", "samples")) \
        and isinstance(state.get("seconds"), (int, float)) and \
        all(isinstance(state["outcomes"].get(name), dict) for name in OUTCOME_OF.values())


def partial_scores(state: dict, profile: Profile, totals: dict[str, int]) -> dict:
    """The scores, intervals and counts of the prompts scored so far, with `progress` = (scored, total)."""
    outcomes = {name: [values[key] for key in sorted(values, key=int)] for name, values in state["outcomes"].items()}
    scored = sum(len(v) for v in state["done"].values())
    return {**score_outcomes(outcomes), "outcomes": outcomes, "profile": profile.name,
            "seconds": round(state["seconds"], 2), "settings": asdict(profile),
            "samples": {kind: [text for _, text in sorted(items.items(), key=lambda kv: int(kv[0]))]
                        for kind, items in state["samples"].items()},
            "progress": [scored, sum(totals.values())]}


def evaluate_stream(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, profile: Profile,
                    state: dict | None = None, keep: Callable[[dict], None] | None = None,
                    callback: Callback | None = None) -> Iterator[dict]:
    """Yield partial_scores after each round, the last one complete (its `progress` is (n, n)). `state` (from an
    earlier, interrupted run) skips the prompts it already holds; `keep(state)` sees the state after each batch of
    one kind of prompt, to store it; `callback(fraction, text)` hears of each batch (a page that stops there
    loses nothing that was kept)."""
    state = copy.deepcopy(state) if _well_formed(state) else empty_state()
    tasks = _tasks(model, tokenizer, profile)
    totals = {kind: count for kind, (count, _, _) in tasks.items()}
    rounds = 0
    while any(len(state["done"].get(kind, [])) < count for kind, count in totals.items()):
        size = ROUND_SIZES[rounds] if rounds < len(ROUND_SIZES) else max(totals.values())
        start = time.perf_counter()
        for kind, (count, score, offset) in tasks.items():
            done = set(state["done"].get(kind, []))
            rows = [r for r in range(offset, offset + count) if r not in done][:size]
            if not rows:
                continue
            values, responses = score(rows)
            for name, per_row in values.items():
                for r, value in zip(rows, per_row):
                    state["outcomes"][name][str(r)] = value
            for r, text in zip(rows, responses):
                if r < SAMPLES and kind in SAMPLE_KIND:
                    state["samples"].setdefault(SAMPLE_KIND[kind], {})[str(r)] = text
            state["done"][kind] = sorted(done | set(rows))
            state["seconds"] += time.perf_counter() - start
            start = time.perf_counter()
            if keep:
                keep(state)
            if callback:
                scored = sum(len(v) for v in state["done"].values())
                callback(scored / sum(totals.values()), f"scored {scored} of {sum(totals.values())} prompts")
        rounds += 1
        yield partial_scores(state, profile, totals)
    if not rounds:  # resumed with every prompt already scored
        yield partial_scores(state, profile, totals)
