"""Streamed scores: estimates after each round, the same per-prompt outcomes as a one-shot evaluation in the end,
and an interrupted evaluation resumed from its kept outcomes, on a tiny Llama with SmolLM2's real tokenizer."""
import json
from dataclasses import replace

import numpy as np
import pytest

from explorer.evaluation.evaluate import SMOKE, evaluate
from explorer.evaluation.stream import evaluate_stream

PROFILE = replace(SMOKE, refusal_prompts=9, logprob_prompts=6, utility_prompts=10, benign_prompts=5)


def _same_outcomes(a: dict, b: dict) -> None:
    for name in ("refusal", "utility", "over_refusal"):
        assert a["outcomes"][name] == b["outcomes"][name], name
    assert np.allclose(a["outcomes"]["target_logprob"], b["outcomes"]["target_logprob"], atol=1e-4)


def test_streamed_rounds_end_with_the_one_shot_outcomes(chat_model_and_tokenizer):
    model, tokenizer = chat_model_and_tokenizer
    rounds = list(evaluate_stream(model, tokenizer, PROFILE))
    first, last = rounds[0], rounds[-1]
    assert len(rounds) >= 3 and last["progress"] == [24, 24]  # prompts: 9 harmful (6 also for log-probs), 10 problems, 5 benign
    assert [r["progress"][0] for r in rounds] == sorted({r["progress"][0] for r in rounds})  # always growing
    assert first["counts"] == {"refusal": 2, "utility": 1, "over_refusal": 1, "target_logprob": 1}
    assert all(first[s] is not None for s in ("refusal_rate", "utility_accuracy", "over_refusal", "target_logprob"))
    one_shot = evaluate(model, tokenizer, PROFILE)
    _same_outcomes(last, one_shot)
    assert last["counts"] == one_shot["counts"] and last["samples"] == one_shot["samples"]
    width = [r["refusal_rate_ci"][1] - r["refusal_rate_ci"][0] for r in rounds]
    assert width[-1] < width[0]  # intervals narrow as prompts complete


def test_an_interrupted_stream_resumes_from_its_kept_outcomes(chat_model_and_tokenizer, monkeypatch):
    model, tokenizer = chat_model_and_tokenizer
    kept = []
    stream = evaluate_stream(model, tokenizer, PROFILE, keep=lambda s: kept.append(json.dumps(s)))
    next(stream)
    stream.close()  # the control moved: the page stops asking for rounds
    state = json.loads(kept[-1])
    scored = sum(len(v) for v in state["done"].values())
    from explorer.evaluation import stream as module

    asked = []
    original = module.answer_kinds
    monkeypatch.setattr(module, "answer_kinds", lambda m, t, asks, chosen, *a, **k: asked.extend(
        (kind, i) for kind, rows in chosen.items() for i in rows) or original(m, t, asks, chosen, *a, **k))
    resumed = list(evaluate_stream(model, tokenizer, PROFILE, state))
    assert resumed[0]["progress"][0] > scored and resumed[-1]["progress"] == [24, 24]
    assert len(asked) == len(set(asked)) == 24 - scored > 0  # only the prompts not yet scored are answered
    assert not any(i in state["done"].get(kind, []) for kind, i in asked)
    _same_outcomes(resumed[-1], evaluate(model, tokenizer, PROFILE))


@pytest.mark.parametrize("kept", [None, {}, {"done": [], "outcomes": {}}, {"done": {}, "outcomes": {"refusal": 3}}])
def test_a_missing_or_malformed_kept_state_starts_afresh(chat_model_and_tokenizer, kept):
    model, tokenizer = chat_model_and_tokenizer
    small = replace(PROFILE, refusal_prompts=2, logprob_prompts=2, utility_prompts=1, benign_prompts=1)
    first = next(evaluate_stream(model, tokenizer, small, kept))
    assert first["progress"] == [3, 4]

