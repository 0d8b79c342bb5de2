"""Like-for-like comparisons of scored points: per-prompt outcomes from a bundle, and paired deltas.

A projected point is compared only with the unprojected fine-tune scored on the same prompts with the same
profile; a delta is in percentage points (log-prob: nats) with a seeded paired-bootstrap 95% interval.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from explorer.core.errors import ParameterError
from explorer.evaluation.evaluate import OUTCOME_OF
from explorer.evaluation.stats import paired_difference
from explorer.results.bundle import Bundle

POINT_KEYS = ["variant", "method", "subspace", "frac"]
UNPROJECTED = "unprojected"


def grid_outcomes(bundle: Bundle) -> dict[tuple, dict[str, np.ndarray]]:
    """(variant, method, subspace, frac) -> outcome name -> per-prompt values, for every scored grid point;
    the unprojected fine-tunes on the grid's prompts are keyed (variant, "unprojected", None, None)."""
    if "grid_outcomes" not in bundle.derived:
        bundle.derived["grid_outcomes"] = _grid_outcomes(bundle)
    return bundle.derived["grid_outcomes"]


def _grid_outcomes(bundle: Bundle) -> dict[tuple, dict[str, np.ndarray]]:
    if not bundle.has("projection_outcomes"):
        return {}
    table = bundle.table("projection_outcomes").sort_values("prompt")
    result: dict[tuple, dict[str, np.ndarray]] = {}
    for keys, group in table.groupby([*POINT_KEYS, "outcome"], dropna=False, sort=False):
        *point, outcome = keys
        point = tuple(None if isinstance(v, float) and np.isnan(v) else v for v in point)
        result.setdefault(point, {})[outcome] = group["value"].to_numpy()
    return result


def reference_outcomes(bundle: Bundle, variant: str, outcomes: dict | None = None) -> dict[str, np.ndarray] | None:
    """The unprojected fine-tune's per-prompt outcomes with the grid's profile, or None if not stored."""
    outcomes = grid_outcomes(bundle) if outcomes is None else outcomes
    stored = outcomes.get((variant, UNPROJECTED, None, None))
    if stored is not None:
        return stored
    member = bundle.scores.get(variant, {})
    if member.get("profile") == bundle.manifest.get("grid_profile") and "outcomes" in member:
        return {k: np.asarray(v, dtype=float) for k, v in member["outcomes"].items()}
    return None


def paired_deltas(point: dict, reference: dict, seed: int = 0) -> pd.DataFrame:
    """score, delta (point − reference), ci_lo, ci_hi over the same prompts. Both dicts hold a `profile` and
    per-prompt `outcomes`; different profiles are refused rather than compared."""
    if point.get("profile") != reference.get("profile"):
        raise ParameterError(f"cannot compare a {point.get('profile')}-profile point with a "
                             f"{reference.get('profile')}-profile reference: the prompts differ")
    rows = []
    for score, name in OUTCOME_OF.items():
        a, b = point["outcomes"].get(name, []), reference["outcomes"].get(name, [])
        if len(a) == 0 or len(a) != len(b):
            continue
        delta, ci = paired_difference(a, b, seed)
        rows.append({"score": score, "delta": delta, "ci_lo": ci[0] if ci else None, "ci_hi": ci[1] if ci else None,
                     "prompts": len(a)})
    return pd.DataFrame(rows)


def nearest_scored(grid: pd.DataFrame, variant: str, method: str, subspace: str, frac: float) -> list[dict]:
    """The grid's point of this setting scored at `frac`, alone; else the nearest scored points below and above
    it (one where `frac` lies outside the scored range, none where the setting has no scored point).

    Nothing is interpolated: each row is a measurement at its own ρ, which its `frac` says."""
    rows = grid[(grid["variant"] == variant) & (grid["method"] == method) & (grid["subspace"] == subspace)]
    rows = rows.sort_values("frac")
    exact = rows[np.isclose(rows["frac"], frac)]
    if len(exact):
        return [exact.iloc[0].to_dict()]
    below, above = rows[rows["frac"] < frac], rows[rows["frac"] > frac]
    return [part.iloc[index].to_dict() for part, index in ((below, -1), (above, 0)) if len(part)]
