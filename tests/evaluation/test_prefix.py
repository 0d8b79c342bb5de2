"""The evaluation speed-ups (shared chat prefix prefilled once; generation stopped once a verdict is decided)
leave every per-prompt outcome as it was, on a tiny Llama with SmolLM2's real tokenizer and chat template."""
import numpy as np
import pytest
import torch
from builders import TINY
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

from explorer.evaluation.evaluate import (
    SMOKE,
    answer_decided,
    answer_of,
    evaluate,
    generate,
    target_logprob,
)
from explorer.evaluation.prefix import common_prefix
from explorer.evaluation.prompts import advbench_split, word_problems


@pytest.fixture(scope="module")
def model_and_tokenizer(smollm_tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(smollm_tokenizer_dir)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(LlamaConfig(**{**TINY, "vocab_size": len(tokenizer)})).eval()
    return model, tokenizer


def test_prompts_share_the_system_turn(model_and_tokenizer):
    _, tokenizer = model_and_tokenizer
    ids = [tokenizer(tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                                   add_generation_prompt=True))["input_ids"] for p in ("Hi", "Bye")]
    assert common_prefix(ids) >= 20 and common_prefix([[1, 2], [1, 2]]) == 1 and common_prefix([]) == 0


def test_generation_with_a_shared_prefix_equals_plain_generation(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    prompts = [b.goal for b in list(advbench_split("evaluation"))[:6]]
    fast = generate(model, tokenizer, prompts, 8, batch_size=4)
    plain = generate(model, tokenizer, prompts, 8, batch_size=4, share_prefix=False)
    alone = [generate(model, tokenizer, [p], 8, share_prefix=False)[0] for p in prompts[:2]]
    assert fast == plain and fast[:2] == alone


def test_target_logprob_with_a_shared_prefix_is_unchanged(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    pairs = [(b.goal, b.target) for b in list(advbench_split("evaluation"))[:5]]
    fast = target_logprob(model, tokenizer, pairs, batch_size=2)
    plain = target_logprob(model, tokenizer, pairs, batch_size=2, share_prefix=False)
    assert np.allclose(fast, plain, atol=1e-4) and len(fast) == 5


def test_stopping_keeps_the_text_up_to_the_verdict(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
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


def test_evaluate_gives_the_same_outcomes_with_and_without_speedups(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    fast, plain = evaluate(model, tokenizer, SMOKE), evaluate(model, tokenizer, SMOKE, speedups=False)
    for name in ("refusal", "utility", "over_refusal"):
        assert fast["outcomes"][name] == plain["outcomes"][name]
    assert np.allclose(fast["outcomes"]["target_logprob"], plain["outcomes"]["target_logprob"], atol=1e-4)
