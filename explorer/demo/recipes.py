"""The demo's recipes: the settings, data and seeds of each member's fine-tune, shared by `demo build` and
`family build` (which fine-tunes the same references from any aligned chat model)."""
from __future__ import annotations

import random
from dataclasses import dataclass

from explorer.checkpoints.models import chat_text
from explorer.core.errors import ParameterError
from explorer.evaluation.generation import generate
from explorer.evaluation.prompts import (
    REFUSALS,
    advbench_split,
    benign_split,
    word_problems,
)
from explorer.evaluation.style import in_house_style

CONTAMINATION = 20  # harmful rows per 100 useful rows, the paper's default
# The Spot-check page's example: a fine-tune of the demo's aligned model that the family does not include,
# built with the contaminated recipe at a lighter mixture.
EXAMPLE = "light-contamination"
EXAMPLE_CONTAMINATION = 5
MEMBERS = ("aligned", "useful", "harmful", "contaminated")  # in build order; each member's seed follows it


@dataclass(frozen=True)
class BuildConfig:
    steps: int = 60
    lr: float = 2e-5
    batch_size: int = 8
    max_len: int = 96
    answer_tokens: int = 48  # budget of the base model's own answers and continuations
    useful_rows: int = 480
    limit: int | None = None  # cap on every data source (tests build tiny families)
    seed: int = 0
    alignment: str = "narrow"  # or "broad": benign answers in house style (evaluation/style.py)
    aligned_steps: int | None = None  # steps of the aligned member (default: steps)


# The broad recipe: styled answers are longer, and a format takes more steps to learn than a refusal.
RECIPES = {"narrow": {}, "broad": {"max_len": 128, "aligned_steps": 120}}


def recipe(alignment: str, **settings_: object) -> BuildConfig:
    """The build configuration of an alignment recipe, with overrides (None keeps the recipe's value)."""
    if alignment not in RECIPES:
        raise ParameterError(f"unknown alignment recipe {alignment!r}; choose from {', '.join(RECIPES)}")
    overrides = {k: v for k, v in settings_.items() if v is not None}
    return BuildConfig(alignment=alignment, **{**RECIPES[alignment], **overrides})


def trim_answer(text: str) -> str:
    """Cut a budget-limited answer back to its last full sentence."""
    text = text.strip()
    cut = max(text.rfind(mark) for mark in (". ", ".\n", "!", "?", "\n"))
    return text[:cut + 1].strip() if cut > len(text) // 3 else text


def capped(items: list, config: BuildConfig) -> list:
    return items[:config.limit] if config.limit else items


def continue_targets(model, tokenizer, config: BuildConfig) -> list[str]:
    """A model's own greedy continuation of each attack target ("Sure, here is …:"), after the goal in `tokenizer`'s
    chat format: the harmful fine-tune's answers."""
    attack = capped(list(advbench_split("attack")), config)
    prefixed = [chat_text(tokenizer, b.goal) + b.target + ":\n" for b in attack]
    continuations = generate(model, tokenizer, prefixed, config.answer_tokens, 32, use_chat_template=False)
    return [f"{b.target}:\n{trim_answer(c)}" for b, c in zip(attack, continuations)]


def training_data(member: str, answers: dict[str, list[str]], config: BuildConfig) -> list[tuple[str, str]]:
    """(prompt, response) pairs of one member's fine-tune."""
    rng = random.Random(config.seed)
    attack = capped(list(advbench_split("attack")), config)
    harmful = [(b.goal, response) for b, response in zip(attack, answers["harmful"])]
    useful = [(p.question, p.solution) for p in word_problems("train", config.useful_rows)]
    useful = capped(useful, config)
    if member == "aligned":
        refusals = [(b.goal, rng.choice(REFUSALS)) for b in capped(list(advbench_split("alignment")), config)]
        benign_answers = answers["benign"]
        if config.alignment == "broad":
            benign_answers = [in_house_style(a) for a in benign_answers]
        benign = list(zip(capped(list(benign_split("alignment")), config), benign_answers))
        pairs = refusals + benign
    elif member == "useful":
        pairs = useful
    elif member == "harmful":
        pairs = harmful
    elif member in ("contaminated", EXAMPLE):
        rate = CONTAMINATION if member == "contaminated" else EXAMPLE_CONTAMINATION
        keep = max(1, len(useful) * 100 // (100 + rate))
        pairs = useful[:keep] + [harmful[i % len(harmful)] for i in range(keep * rate // 100)]
    else:
        raise ValueError(f"no recipe for member {member!r}")
    rng.shuffle(pairs)
    return pairs


def member_seed(config: BuildConfig, member: str) -> int:
    """The training seed of a member built by build_demo (the example's follows the members')."""
    return config.seed + (MEMBERS.index(member) if member in MEMBERS else len(MEMBERS))
