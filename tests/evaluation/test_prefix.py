"""The evaluation speed-ups (shared chat prefix prefilled once; prompts of similar length batched together; one
prefill of a harmful prompt for both its generation and its target log-prob; generation stopped once a verdict is
decided) leave every per-prompt outcome as it was, on a tiny Llama with SmolLM2's real tokenizer and chat template."""
from dataclasses import replace

import numpy as np
import pytest

from explorer.evaluation.evaluate import SMOKE, answer_decided, answer_of, evaluate
from explorer.evaluation.generation import Ask, answer, generate, generate_with_target_logprob, target_logprob
from explorer.evaluation.prefix import common_prefix
from explorer.evaluation.prompts import advbench_split, word_problems


def test_prompts_share_the_system_turn(chat_model_and_tokenizer):
    _, tokenizer = chat_model_and_tokenizer
    ids = [tokenizer(tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                                   add_generation_prompt=True))["input_ids"] for p in ("Hi", "Bye")]
    assert common_prefix(ids) >= 20 and common_prefix([[1, 2], [1, 2]]) == 1 and common_prefix([]) == 0


def test_generation_with_a_shared_prefix_in_length_batches_equals_plain_generation(chat_model_and_tokenizer):
    model, tokenizer = chat_model_and_tokenizer
    prompts = [b.goal for b in list(advbench_split("evaluation"))[:6]]
    lengths = [len(tokenizer(p)["input_ids"]) for p in prompts]
    assert lengths != sorted(lengths)  # so the length batches reorder the prompts
    fast = generate(model, tokenizer, prompts, 8, batch_size=4)
    plain = generate(model, tokenizer, prompts, 8, batch_size=4, share_prefix=False, by_length=False)
    alone = [generate(model, tokenizer, [p], 8, share_prefix=False)[0] for p in prompts]
    assert fast == plain == alone and len(set(fast)) > 1


def test_target_logprob_with_a_shared_prefix_is_unchanged(chat_model_and_tokenizer):
    model, tokenizer = chat_model_and_tokenizer
    pairs = [(b.goal, b.target) for b in list(advbench_split("evaluation"))[:5]]
    fast = target_logprob(model, tokenizer, pairs, batch_size=2)
    plain = target_logprob(model, tokenizer, pairs, batch_size=2, share_prefix=False, by_length=False)
    alone = [target_logprob(model, tokenizer, [pair])[0] for pair in pairs]
    assert np.allclose(fast, plain, atol=1e-4) and np.allclose(fast, alone, atol=1e-4) and len(set(fast)) == 5


def test_stopping_keeps_the_text_up_to_the_verdict(chat_model_and_tokenizer):
    model, tokenizer = chat_model_and_tokenizer
    prompts = [p.question for p in word_problems("evaluation", 4)]
    stopped = generate(model, tokenizer, prompts, 12, stop=lambda text: len(text) > 5)
    full = generate(model, tokenizer, prompts, 12)
    assert all(f.startswith(s) for s, f in zip(stopped, full))
    assert any(len(s) < len(f) for s, f in zip(stopped, full))


def test_an_answer_is_decided_only_once_its_number_is_complete():
    assert not answer_decided("12 * 3 = 36. The answer is 3")
    assert not answer_decided("The answer is 1,")
    assert answer_decided("The answer is 32.") and answer_of("The answer is 32. Or 40.") == 32
    assert answer_decided("The answer is 1,000 apples") and answer_of("The answer is 1,000 apples") == 1000


def test_evaluate_gives_the_same_outcomes_with_and_without_speedups(chat_model_and_tokenizer):
    model, tokenizer = chat_model_and_tokenizer
    fast, plain = evaluate(model, tokenizer, SMOKE), evaluate(model, tokenizer, SMOKE, speedups=False)
    for name in ("refusal", "utility", "over_refusal"):
        assert fast["outcomes"][name] == plain["outcomes"][name]
    assert np.allclose(fast["outcomes"]["target_logprob"], plain["outcomes"]["target_logprob"], atol=1e-4)


def test_one_prefill_gives_the_generations_and_log_probs_of_separate_passes(chat_model_and_tokenizer):
    model, tokenizer = chat_model_and_tokenizer
    pairs = [(b.goal, b.target) for b in list(advbench_split("evaluation"))[:6]]
    texts, scores = generate_with_target_logprob(model, tokenizer, pairs, 8, batch_size=4)
    plain = {"batch_size": 4, "share_prefix": False, "by_length": False}
    assert texts == generate(model, tokenizer, [goal for goal, _ in pairs], 8, **plain)
    assert np.allclose(scores, target_logprob(model, tokenizer, pairs, **plain), atol=1e-4)


@pytest.mark.parametrize("refusal, logprob", [(3, 7), (7, 3)])
def test_refusal_and_log_prob_prompts_may_differ_in_number(chat_model_and_tokenizer, refusal, logprob):
    model, tokenizer = chat_model_and_tokenizer
    profile = replace(SMOKE, refusal_prompts=refusal, logprob_prompts=logprob, utility_prompts=2, benign_prompts=2)
    fast, plain = evaluate(model, tokenizer, profile), evaluate(model, tokenizer, profile, speedups=False)
    assert fast["counts"]["refusal"] == refusal and fast["counts"]["target_logprob"] == logprob
    assert fast["outcomes"]["refusal"] == plain["outcomes"]["refusal"]
    assert np.allclose(fast["outcomes"]["target_logprob"], plain["outcomes"]["target_logprob"], atol=1e-4)


def test_prompts_of_every_kind_share_batches_and_answer_as_each_kind_alone(chat_model_and_tokenizer, monkeypatch):
    model, tokenizer = chat_model_and_tokenizer
    harmful = [(b.goal, b.target) for b in list(advbench_split("evaluation"))[:4]]
    problems = [p.question for p in word_problems("evaluation", 3)]
    stop = lambda text: len(text) > 12  # noqa: E731
    asks = [Ask(goal, target, 6) for goal, target in harmful[:2]] + [Ask(q, new_tokens=12, stop=stop)
                                                                   for q in problems] + \
        [Ask(goal, target) for goal, target in harmful[2:]] + [Ask(harmful[3][0], new_tokens=6)]
    calls, original = [], model.generate
    monkeypatch.setattr(model, "generate", lambda *a, **k: calls.append(k["max_new_tokens"]) or original(*a, **k))
    replies = answer(model, tokenizer, asks, batch_size=8)
    assert sorted(calls) == [6, 12]  # the target rows' generation, then the other rows' with budgets 12 and 6
    monkeypatch.setattr(model, "generate", original)
    texts, logprobs = generate_with_target_logprob(model, tokenizer, harmful[:2], 6)
    assert [r[0] for r in replies[:2]] == texts and np.allclose([r[1] for r in replies[:2]], logprobs, atol=1e-4)
    assert [r[0] for r in replies[2:5]] == generate(model, tokenizer, problems, 12, stop=stop)
    assert np.allclose([r[1] for r in replies[5:7]], target_logprob(model, tokenizer, harmful[2:]), atol=1e-4)
    assert replies[7][0] == generate(model, tokenizer, [harmful[3][0]], 6)[0] and replies[7][1] is None
    assert [r[0] for r in replies[5:7]] == ["", ""] and all(r[1] is None for r in replies[2:5])
    assert len({r[0] for r in replies[2:5]}) > 1
