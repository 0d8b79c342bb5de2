"""`python -m explorer precompute`: every result the app shows, computed once and written as a bundle."""
from __future__ import annotations

import os
import platform
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import transformers

from explorer import __version__
from explorer.checkpoints.family import Family, load_family
from explorer.core.cache import CACHE_VERSION
from explorer.core.progress import Callback, track
from explorer.evaluation.scores import PointScorer, member_scores
from explorer.results.bundle import write_bundle
from explorer.results.samples import sample_rows
from explorer.weights.mso import update_mso
from explorer.weights.projection import SUBSPACES, projection_stats
from explorer.weights.spectra import spectra

GRID_FRACS = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)
GRID_METHODS = ("same", "orth")
CURVE_FRACS = tuple(round(f, 2) for f in np.arange(0.01, 1.0, 0.01))
MSO_PAIRS = (("useful", "harmful"), ("useful", "alignment"), ("harmful", "alignment"), ("contaminated", "alignment"))


def family_pairs(family: Family) -> list[tuple[str, str]]:
    """The paper's pairs that exist in this family; every task update against alignment otherwise."""
    pairs = [(a, b) for a, b in MSO_PAIRS if {a, b} <= set(family.updates)]
    return pairs or [(name, "alignment") for name in family.finetuned]


@contextmanager
def _timed(timings: dict, label: str):
    start = time.perf_counter()
    yield
    timings[label] = round(time.perf_counter() - start, 1)


def weight_tables(family: Family, seed: int, grid_fracs, profile: str, grid_profile: str, timings: dict,
                  callback: Callback | None = None) -> tuple[dict, dict[str, pd.DataFrame]]:
    tables = {}
    with _timed(timings, "member_scores"):
        scores = {m: member_scores(family, m, profile, callback) for m in track(family.members, "member scores")}
    with _timed(timings, "spectra"):
        tables["spectra"] = pd.concat([spectra(family, u, callback).assign(update=u) for u in family.updates],
                                      ignore_index=True)
    with _timed(timings, "update_mso"):
        pairs = family_pairs(family)
        tables["update_mso"] = pd.concat([frame.assign(a=a, b=b) for (a, b), frame in
                                          update_mso(family, pairs, callback=callback).items()], ignore_index=True)
    curves, removed, grid, samples = [], [], [], []
    with _timed(timings, "projection_bases"):
        stats = {v: projection_stats(family, v, seed, keep_bases=True, callback=callback) for v in family.finetuned}
    for variant, st in stats.items():
        for method in ("same", "orth", "opp"):
            for subspace in SUBSPACES:
                for frac in CURVE_FRACS:
                    curves.append({"variant": variant, "method": method, "subspace": subspace, "frac": frac,
                                   **st.point(method, subspace, frac)})
    scorer = PointScorer(family)
    points = [(v, m, s, f) for v in family.finetuned for m in GRID_METHODS for s in SUBSPACES for f in grid_fracs]
    with _timed(timings, "projection_grid"):
        for variant, method, subspace, frac in track(points, "projection grid", callback=callback):
            point = scorer.score(variant, method, subspace, frac, seed, grid_profile)
            grid.append({k: v for k, v in point.items() if k not in ("samples", "settings", "counts")})
            samples += sample_rows(point.get("samples", {}), variant=variant, method=method, subspace=subspace,
                                   frac=frac)
            layer = stats[variant].removed_by_layer(method, subspace, frac)
            removed.append(layer.assign(variant=variant, method=method, subspace=subspace, frac=frac))
    tables["energy_curves"] = pd.DataFrame(curves)
    tables["projection"] = pd.DataFrame(grid)
    tables["removed_by_layer"] = pd.concat(removed, ignore_index=True)
    tables["projection_samples"] = pd.DataFrame(samples)
    return scores, tables


def precompute(family_path: str | Path, profile: str = "full", seed: int = 0, grid_fracs=GRID_FRACS,
               activations: bool = True, grid_profile: str | None = None, callback: Callback | None = None) -> Path:
    """Member scores use `profile`; the projection grid uses `grid_profile` (default: the same)."""
    grid_profile = grid_profile or profile
    start = time.perf_counter()
    family = load_family(family_path)
    family.tensor_names  # validate before any work
    timings: dict[str, float] = {}
    tables = {}
    if activations:
        from explorer.activations.tables import activation_tables

        with _timed(timings, "activations"):
            tables.update(activation_tables(family, callback=callback))
    scores, weight = weight_tables(family, seed, grid_fracs, profile, grid_profile, timings, callback)
    tables.update(weight)
    timings["total"] = round(time.perf_counter() - start, 1)
    manifest = {
        "family": family.name,
        "members": {m: {"kind": s.kind, "fingerprint": family.store(m).fingerprint()} for m, s in family.sources.items()},
        "updates": family.updates,
        "command": "python -m explorer precompute " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["precompute"]
                                                                else [str(family_path)]),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "profile": profile,
        "grid_profile": grid_profile,
        "seed": seed,
        "grid": {"fracs": list(grid_fracs), "methods": list(GRID_METHODS), "subspaces": list(SUBSPACES)},
        "timings_s": timings,
        "versions": {"explorer": __version__, "cache": CACHE_VERSION, "torch": torch.__version__,
                     "transformers": transformers.__version__, "python": platform.python_version()},
        "machine": {"platform": platform.platform(), "processor": platform.machine(), "cpus": _cpus(),
                    "device": str(torch.device("cuda" if torch.cuda.is_available() else "cpu"))},
    }
    return write_bundle(family.name, manifest, scores, tables)


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 0)
