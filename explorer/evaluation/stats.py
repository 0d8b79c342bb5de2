"""Uncertainty of scores measured on a finite set of prompts: Wilson intervals for rates, normal intervals for
means, and seeded paired bootstraps for differences measured on the same prompts."""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

Z95 = 1.959963984540054
BOOTSTRAP_SAMPLES = 2000


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The 95% Wilson score interval of a rate; None without any observation."""
    if n <= 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_interval(values: Sequence[float], z: float = Z95) -> tuple[float, float] | None:
    """A 95% normal interval of a mean over prompts; None with fewer than two values."""
    array = np.asarray(values, dtype=np.float64)
    if array.size < 2:
        return None
    half = z * array.std(ddof=1) / math.sqrt(array.size)
    return float(array.mean() - half), float(array.mean() + half)


def outcome_interval(outcomes: Sequence[float], binary: bool) -> tuple[float, float] | None:
    """The interval of a score from its per-prompt outcomes: Wilson for 0/1 outcomes, normal for means."""
    if binary:
        return wilson(int(round(sum(outcomes))), len(outcomes))
    return mean_interval(outcomes)


def bootstrap_interval(statistic: Callable[..., float], groups: Sequence[Sequence[Sequence[float]]], seed: int = 0,
                       resamples: int = BOOTSTRAP_SAMPLES) -> tuple[float, float] | None:
    """A seeded 95% percentile interval of `statistic(*means)`, where `means` are the means of the arrays in
    `groups`, resampling prompts with replacement. Each group holds per-prompt outcomes on the same prompts (one
    array per condition) and is resampled with shared indices, so differences within a group are paired;
    different groups are resampled independently. Every statistic of the study is a function of mean scores, so
    each resample's means are taken at once for all resamples (vectorised), from the same draws as one loop."""
    arrays = [[np.asarray(a, dtype=np.float64) for a in group] for group in groups]
    for group in arrays:
        if not group or group[0].size == 0 or any(a.shape != group[0].shape for a in group):
            raise ValueError("each bootstrap group needs non-empty outcomes on the same prompts")
    rng = np.random.default_rng(seed)
    picks = [np.empty((resamples, group[0].size), dtype=np.int64) for group in arrays]
    for i in range(resamples):  # the draws in the order of a loop over resamples, then groups
        for g, group in enumerate(arrays):
            picks[g][i] = rng.integers(0, group[0].size, group[0].size)
    means = [np.take(a, p).mean(axis=1) for group, p in zip(arrays, picks) for a in group]  # (resamples,) each
    values = np.array([statistic(*column) for column in zip(*means)], dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size < resamples // 2:
        return None
    return float(np.quantile(values, 0.025)), float(np.quantile(values, 0.975))


def paired_difference(treated: Sequence[float], control: Sequence[float], seed: int = 0
                      ) -> tuple[float, tuple[float, float] | None]:
    """Mean of treated − control over the same prompts, and its paired-bootstrap 95% interval."""
    a, b = np.asarray(treated, dtype=np.float64), np.asarray(control, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired outcomes need the same prompts: {a.size} against {b.size}")
    diff = a - b
    return float(diff.mean()), bootstrap_interval(lambda mean: mean, [[diff]], seed)
