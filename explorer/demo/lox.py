"""LoX's claim put to a demo family: the aligned model extrapolated by LoX, then fine-tuned exactly as the family's
contaminated member was (the same data, settings and seed, read from the build's log), so that the only difference
between the two fine-tunes is where they start."""
from __future__ import annotations

from pathlib import Path

from explorer.checkpoints.family import ALIGNED, Family
from explorer.checkpoints.stores import publish_model
from explorer.core.progress import Callback
from explorer.demo.build import base_answers, build_config
from explorer.demo.recipes import member_seed, training_data
from explorer.demo.training import finetune
from explorer.evaluation.scores import PointScorer

VARIANT = "contaminated"


def lox_folder(family: Family, alpha: float, frac: float) -> Path:
    return family.store(VARIANT).folder.parent / f"lox-{alpha:g}-{frac:g}-{VARIANT}"


def lox_finetune(family: Family, alpha: float, frac: float, callback: Callback | None = None) -> Path:
    """The contaminated fine-tune of the LoX-extrapolated aligned model (or the folder an earlier run left)."""
    target = lox_folder(family, alpha, frac)
    if target.exists():
        return target
    models_dir = family.store(VARIANT).folder.parent
    config = build_config(models_dir, VARIANT)
    answers = base_answers(family.store(ALIGNED).folder)
    scorer = PointScorer(family)
    scorer.lox_model(alpha, frac, callback)
    finetune(scorer.model, scorer.tokenizer, training_data(VARIANT, answers, config), config.steps, config.lr,
             config.batch_size, config.max_len, member_seed(config, VARIANT),
             f"fine-tuning LoX (α = {alpha:g}, ρ = {frac:g})", callback)
    publish_model(scorer.model, scorer.tokenizer, target)
    return target


def recipe_of(family: Family) -> dict:
    """The recipe the LoX fine-tunes share with the contaminated member, as the manifest records it."""
    config = build_config(family.store(VARIANT).folder.parent, VARIANT)
    return {"member": VARIANT, "steps": config.steps, "lr": config.lr, "batch_size": config.batch_size,
            "max_len": config.max_len, "seed": member_seed(config, VARIANT), "alignment": config.alignment}
