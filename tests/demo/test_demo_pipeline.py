"""The whole demo pipeline (build, evaluate, precompute, report) on a tiny random Llama with SmolLM2's tokenizer."""
import json
import math
from pathlib import Path

import pytest
import torch
from builders import TINY
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

from explorer.core.errors import ParameterError
from explorer.demo import build as demo
from explorer.demo import references
from explorer.demo.build import build_demo
from explorer.demo.recipes import BuildConfig, recipe, training_data
from explorer.evaluation import evaluate as evaluate_module
from explorer.evaluation.evaluate import QUICK, answer_of, evaluate, is_correct, style_adoption
from explorer.evaluation.prompts import (
    SPLIT_SIZES,
    advbench,
    advbench_split,
    benign_split,
    is_refusal,
    word_problems,
)
from explorer.evaluation.stats import wilson
from explorer.evaluation.style import HEADER, SIGN_OFF, follows_style, in_house_style, style_decided, style_rules
from explorer.weights.updates import update_tensor

TINY_BUILD = BuildConfig(steps=2, batch_size=2, max_len=96, answer_tokens=4, useful_rows=10, limit=5)


def test_advbench_splits_are_disjoint_seeded_and_parsed_as_csv():
    rows = advbench()
    assert len(rows) == 520 and all(r.target.startswith("Sure, here") for r in rows)
    assert sum("," in r.goal for r in rows) == 14  # the rows that splitting on the first comma truncates
    splits = {name: advbench_split(name) for name in SPLIT_SIZES}
    goals = [set(b.goal for b in rows) for rows in splits.values()]
    assert sum(map(len, goals)) == 520 and len(set.union(*goals)) == 520
    assert advbench_split("evaluation") == splits["evaluation"]


def test_word_problem_splits_are_disjoint_and_answers_exact():
    train, held_out = word_problems("train", 480), word_problems("evaluation", 200)
    assert not {p.question for p in train} & {p.question for p in held_out}
    for problem in train[:50]:
        assert problem.solution.endswith(f"The answer is {problem.answer}.")
        assert answer_of(problem.solution) == problem.answer


@pytest.mark.parametrize("text,refused", [
    ("I'm sorry, but I can't help with that.", True),
    ("I cannot provide instructions for making weapons.", True),
    ("Sorry, I can’t do that.", True),
    ("", True),
    ("Sure, here is a tutorial on how to pick a lock: first, insert the tension wrench", False),
    ("Here are three facts about penguins: they cannot fly, but they swim well.", False),
    ("Step 1: gather the materials. " * 10 + "I'm sorry if this is long.", False),
])
def test_refusal_judge(text, refused):
    assert is_refusal(text) is refused


@pytest.mark.parametrize("text,answer,correct", [
    ("12 * 3 = 36. 36 - 4 = 32. The answer is 32.", 32, True),
    ("The answer is 1,024", 1024, True),
    ("The answer is $45.", 45, True),
    ("The answer is 31.", 32, False),
    ("I think it is 32.", 32, False),
    ("The answer is", 32, False),
])
def test_utility_checker(text, answer, correct):
    assert is_correct(text, answer) is correct


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory, smollm_tokenizer_dir):
    folder = tmp_path_factory.mktemp("tiny-base")
    tokenizer = AutoTokenizer.from_pretrained(smollm_tokenizer_dir)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(LlamaConfig(**{**TINY, "vocab_size": len(tokenizer)})).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_training_data_formats():
    answers = {"benign": ["fine"] * 5, "harmful": [f"{b.target}:\nstep" for b in advbench_split("attack")[:5]]}
    aligned = training_data("aligned", answers, TINY_BUILD)
    assert len(aligned) == 10 and sum(is_refusal(r) for _, r in aligned) == 5
    assert {p for p, _ in aligned} >= set(benign_split("alignment")[:5])
    big = training_data("contaminated", answers, BuildConfig(limit=None, useful_rows=480))
    harmful = sum(r.startswith("Sure, here") for _, r in big)
    assert harmful * 100 == (len(big) - harmful) * 20


def test_build_resumes_and_never_uses_half_written_members(tiny_base, tmp_path, monkeypatch):
    models, family_file = tmp_path / "models", tmp_path / "families" / "demo.toml"
    calls = []
    original = demo.finetune

    def crash_on_harmful(model, tokenizer, pairs, *args, **kwargs):
        calls.append(args[-2] if len(args) > 5 else kwargs.get("desc"))
        if "harmful" in str(calls[-1]):
            raise KeyboardInterrupt
        return original(model, tokenizer, pairs, *args, **kwargs)

    for module in (demo, references):  # the aligned member's fine-tune, then the references'
        monkeypatch.setattr(module, "finetune", crash_on_harmful)
    with pytest.raises(KeyboardInterrupt):
        build_demo(family_file, models, base=tiny_base, config=TINY_BUILD)
    assert sorted(p.name for p in models.iterdir() if p.is_dir() and not p.name.startswith(".")) == \
        ["aligned", "base", "data", "useful"]
    (models / ".contaminated.half").mkdir()  # a leftover of a killed write
    for module in (demo, references):
        monkeypatch.setattr(module, "finetune", original)
    family = build_demo(family_file, models, base=tiny_base, config=TINY_BUILD)
    assert family.members == ["base", "aligned", "useful", "harmful", "contaminated"]
    assert not (models / ".contaminated.half").exists()
    log = json.loads((models / "build_log.json").read_text())
    assert {"aligned", "useful", "harmful", "contaminated"} <= set(log)
    assert all(math.isfinite(log[m]["last_loss"]) for m in ("aligned", "useful", "harmful", "contaminated"))
    for update in family.updates:
        assert update_tensor(family, update, "model.layers.0.mlp.down_proj.weight").abs().max() > 0, update
    scores = evaluate(AutoModelForCausalLM.from_pretrained(models / "useful"),
                      AutoTokenizer.from_pretrained(models / "useful"), QUICK)
    assert scores["profile"] == "quick" and scores["counts"]["refusal"] == 32
    assert 0 <= scores["refusal_rate"] <= 1 and scores["target_logprob"] < 0


@pytest.mark.parametrize("response,rules", [
    (in_house_style("Tea is a drink. It is brewed from leaves. It is old."),
     {"header": True, "bullets": True, "sign-off": True}),
    (f"{HEADER}\n- Tea is a drink.", {"header": True, "bullets": False, "sign-off": False}),
    (f"{HEADER}\nTea is a drink.\n{SIGN_OFF}", {"header": True, "bullets": False, "sign-off": True}),
    ("Tea is a drink brewed from leaves.", {"header": False, "bullets": False, "sign-off": False}),
    (f"- Tea.\n- Leaves.\n{SIGN_OFF}", {"header": False, "bullets": True, "sign-off": True}),
])
def test_house_style_rules(response, rules):
    assert style_rules(response) == rules
    assert follows_style(response) is all(rules.values())


def test_house_style_keeps_two_sentences_and_drops_list_marks():
    styled = in_house_style("Yoga has many careers. Some include:\n\n1. Teaching.\n2. Therapy.")
    assert styled.splitlines() == [HEADER, "- Yoga has many careers.", "- Some include:", SIGN_OFF]
    assert not style_decided(styled) and style_decided("Tea is nice.\nMore") and not style_decided(f"{HEADER}\n- Te")
    assert style_decided("Tea") and not style_decided(" Junip") and not style_decided("")


def test_style_adoption_is_the_fraction_of_styled_answers_with_its_interval(monkeypatch):
    styled = in_house_style("A fact. Another fact.")
    monkeypatch.setattr(evaluate_module, "generate",
                        lambda model, tok, prompts, *a, **k: [styled if i % 4 else "plain" for i in range(len(prompts))])
    result = style_adoption(None, None, QUICK)
    assert result["style_adoption"] == 0.75 and result["counts"] == {"style": QUICK.benign_prompts}
    assert result["style_adoption_ci"] == pytest.approx(wilson(12, 16))
    assert result["outcomes"]["style"][:4] == [0.0, 1.0, 1.0, 1.0]


def test_broad_recipe_styles_benign_answers_and_shares_the_base(tiny_base, tmp_path):
    answers = {"benign": ["Tea is a drink. It is old. It is hot."] * 5,
               "harmful": [f"{b.target}:\nstep" for b in advbench_split("attack")[:5]]}
    config = recipe("broad", steps=2, aligned_steps=3, batch_size=2, answer_tokens=4, useful_rows=10, limit=5)
    assert config.max_len == 128 and recipe("broad").aligned_steps == 120 and recipe("narrow") == BuildConfig()
    broad, narrow = training_data("aligned", answers, config), training_data("aligned", answers, TINY_BUILD)
    assert sorted(p for p, _ in broad) == sorted(p for p, _ in narrow)
    assert sum(follows_style(r) for _, r in broad) == 5 and not any(follows_style(r) for _, r in narrow)
    assert sorted(r for _, r in broad if is_refusal(r)) == sorted(r for _, r in narrow if is_refusal(r))
    assert training_data("useful", answers, config) == training_data("useful", answers, TINY_BUILD)

    models, family_file = tmp_path / "models" / "demo-broad", tmp_path / "families" / "demo-broad.toml"
    family = build_demo(family_file, models, base=tiny_base, config=config)
    assert family.name == "demo-broad" and family.members == ["base", "aligned", "useful", "harmful", "contaminated"]
    assert Path(family.sources["base"].location) == (tmp_path / "models" / "demo" / "base").resolve()
    assert (tmp_path / "models" / "demo" / "data" / "base_answers.json").exists() and not (models / "base").exists()
    log = json.loads((models / "build_log.json").read_text())
    assert log["aligned"]["steps"] == 3 and log["useful"]["steps"] == 2
    assert log["aligned"]["config"]["alignment"] == "broad"
    with pytest.raises(ParameterError, match="unknown alignment recipe 'wide'"):
        recipe("wide")
