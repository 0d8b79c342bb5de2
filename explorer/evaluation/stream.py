"""Scores that stream: a profile's prompts scored a few at a time, every score's estimate and 95% interval
after each round, each prompt's outcome kept so that an interrupted evaluation resumes where it stopped.

A round answers its prompts of every kind with `evaluate.answer_kinds`, as `evaluate` answers the whole profile at
once (the same prompts, shared prefix and per-row computation), so a streamed evaluation ends with the same
per-prompt outcomes (tests/evaluation/test_stream.py).
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
    answer_kinds,
    check_profile_fits,
    profile_asks,
    prompt_sets,
    reply_outcomes,
    score_outcomes,
)

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

# Prompts of each kind per round: one of each first, so that all four scores have an estimate within seconds,
# then larger rounds, which batch better (a decoding step costs little more for many rows than for one). The
# kinds of a round share their batches (generation.answer), so a round costs one generation of the longest budget.
ROUND_SIZES = (1, 7)
SAMPLES = 3  # responses kept per kind, as evaluate() keeps them
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
    earlier, interrupted run) skips the prompts it already holds; `keep(state)` sees the state after each round,
    to store it; `callback(fraction, text)` hears of each round (a page that stops there loses nothing that was
    kept)."""
    state = copy.deepcopy(state) if _well_formed(state) else empty_state()
    sets = prompt_sets(profile)
    check_profile_fits(model, tokenizer, sets)
    asks = profile_asks(sets, profile)
    totals = {kind: len(rows) for kind, rows in asks.items()}
    rounds = 0
    while any(len(state["done"].get(kind, [])) < count for kind, count in totals.items()):
        size = ROUND_SIZES[rounds] if rounds < len(ROUND_SIZES) else max(totals.values())
        start = time.perf_counter()
        chosen = {}
        for kind, rows in asks.items():
            done = set(state["done"].get(kind, []))
            chosen[kind] = [i for i in rows if i not in done][:size]
        replies = answer_kinds(model, tokenizer, asks, {k: rows for k, rows in chosen.items() if rows},
                               profile.batch_size)
        for kind, answered in replies.items():
            for i, reply in answered.items():
                for name, value in reply_outcomes(kind, i, reply, sets).items():
                    state["outcomes"][name][str(i)] = value
                if i < SAMPLES and kind in SAMPLE_KIND:
                    state["samples"].setdefault(SAMPLE_KIND[kind], {})[str(i)] = reply[0]
            state["done"][kind] = sorted(set(state["done"].get(kind, [])) | set(answered))
        state["seconds"] += time.perf_counter() - start
        if keep:
            keep(state)
        scored = sum(len(v) for v in state["done"].values())
        if callback:
            callback(scored / sum(totals.values()), f"scored {scored} of {sum(totals.values())} prompts")
        rounds += 1
        yield partial_scores(state, profile, totals)
    if not rounds:  # resumed with every prompt already scored
        yield partial_scores(state, profile, totals)
