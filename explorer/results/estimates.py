"""How long a stage will take, from the family's tensor shapes and the speed of this device, measured once.

A rough model, stated so that it can be checked (benchmarks/bench_stages.py compares it with measured stages):
- a weight pass costs, per matrix of r = min(rows, columns) and c = max, a Gram product 2·r²·c and its
  eigendecomposition ~10·r³ floating-point operations, in float64 (half float32's speed);
- a forward pass costs 2 operations per parameter per token; generation runs at GENERATION_EFFICIENCY of the
  device's matrix-product speed (small batches, one token a step), with at least STEP_S per step and layer;
- each hidden state's analyses (PCA, MSO, a cross-validated probe) cost LAYER_S and each UMAP embedding UMAP_S, on
  the CPU whatever the device.
The constants were fitted on the demo family's stages on 2 CPU cores (benchmarks/bench_stages.py, 2026-12-07).
"""
from __future__ import annotations

import math
import time
from functools import lru_cache

import torch

from explorer.checkpoints.family import Family
from explorer.results.stages import GRID_METHODS, Settings, Stage
from explorer.weights.mso import family_pairs
from explorer.weights.projection import SUBSPACES

GENERATION_EFFICIENCY = 0.5
FORWARD_EFFICIENCY = 0.8
WEIGHT_EFFICIENCY = 1.1
STEP_S = 4e-5
UMAP_S = 5.0
LAYER_S = 3.0
LOAD_BYTES_PER_S = 5e8
ACTIVATION_PROMPTS, ACTIVATION_TOKENS, RESPONSE_TOKENS = 3 * 256, 40, 16
PROMPT_TOKENS = 40


@lru_cache(maxsize=4)
def device_speed(device: str) -> float:
    """Float32 matrix-product speed of `device` in operations per second, timed for about 0.2 s."""
    dev = torch.device(device)
    a = torch.randn(1024, 1024, device=dev)
    a @ a
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    start, count = time.perf_counter(), 0
    while time.perf_counter() - start < 0.2:
        a @ a
        count += 1
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return 2 * 1024 ** 3 * count / (time.perf_counter() - start)


def _shapes(family: Family) -> tuple[tuple[int, int], ...]:
    store = family.store(family.finetuned[0] if family.finetuned else "aligned")
    shapes = []
    for name in family.tensor_names:
        shape = store.shape(name)
        rows = shape[0] if shape else 1
        shapes.append((rows, max(1, math.prod(shape) // max(rows, 1))))
    return tuple(shapes)


def _decomposition_ops(family: Family) -> float:
    """Float64 operations of one pass of decompositions over every matrix of an update, counted as float32's."""
    return 2 * sum(2 * min(r, c) ** 2 * max(r, c) + 10 * min(r, c) ** 3 for r, c in _shapes(family) if min(r, c) > 1)


def _parameters(family: Family) -> int:
    return sum(r * c for r, c in _shapes(family))


def _layers(family: Family) -> int:
    config = family.store(family.finetuned[0] if family.finetuned else "aligned").config
    return int(config.get("num_hidden_layers") or config.get("n_layer") or 1)


def _scoring_seconds(family: Family, profile: str, speed: float) -> float:
    from explorer.evaluation.evaluate import PROFILES

    p = PROFILES[profile]
    generated = (p.refusal_prompts + p.benign_prompts) * p.refusal_tokens + p.utility_prompts * p.utility_tokens
    prompts = p.refusal_prompts + p.benign_prompts + p.utility_prompts + (p.logprob_prompts or 100)
    params = _parameters(family)
    steps = (p.refusal_tokens * 2 + p.utility_tokens) * max(1, prompts // p.batch_size)
    return (max(2 * params * generated / (speed * GENERATION_EFFICIENCY), steps * _layers(family) * STEP_S)
            + 2 * params * prompts * PROMPT_TOKENS / (speed * FORWARD_EFFICIENCY) + 2 * params / LOAD_BYTES_PER_S)


def stage_seconds(family: Family, stage: Stage, settings: Settings, device: str) -> float:
    """An estimate of the stage's time on `device`, in seconds."""
    speed = device_speed(device)
    weights = _decomposition_ops(family) / (speed * WEIGHT_EFFICIENCY)
    load = 2 * _parameters(family) / LOAD_BYTES_PER_S  # bfloat16 checkpoints, read once per member
    if stage.kind == "spectra":
        return len(family.updates) * (weights + 2 * load)
    if stage.kind == "energy":
        return len(family.finetuned) * 2 * (3 * weights + 2 * load)
    if stage.kind == "update_mso":
        return len(family_pairs(family)) * (1.5 * weights + 4 * load)  # tall pairs need no bases (weights/mso)
    if stage.kind == "activations":
        params = _parameters(family)
        forward = 2 * params * ACTIVATION_PROMPTS * ACTIVATION_TOKENS / (speed * FORWARD_EFFICIENCY)
        generated = 2 * params * ACTIVATION_PROMPTS * RESPONSE_TOKENS / (speed * GENERATION_EFFICIENCY)
        layers = _layers(family) + 1
        return forward + generated + layers * LAYER_S + (layers // 2 + 1) * UMAP_S + load
    if stage.kind == "scores":
        return _scoring_seconds(family, settings.profile, speed)
    if stage.kind == "safelora":  # one decomposition pass per variant, then about nine scored thresholds each
        return len(family.finetuned) * (weights + 9 * _scoring_seconds(family, settings.grid, speed))
    projection = 3 * weights + 2 * load  # the bases, kept on disk: a grid's blocks of one variant share them
    share = 1 if len(stage.points) == 1 else len(GRID_METHODS) * len(SUBSPACES)
    return projection / share + len(stage.points) * _scoring_seconds(family, settings.grid, speed)


def duration_text(seconds: float) -> str:
    """A rounded, readable duration: "about 40 s", "about 3 min", "about 2.5 h"."""
    if seconds < 60:
        return f"about {max(5, round(seconds / 5) * 5):.0f} s"
    if seconds < 3600:
        return f"about {round(seconds / 60):.0f} min"
    return f"about {seconds / 3600:.1f} h"
