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
from explorer.core.errors import ParameterError
from explorer.core.progress import Callback
from explorer.evaluation.evaluate import SCORES
from explorer.evaluation.scores import (
    PointScorer,
    score_members,
    score_points,
)
from explorer.results.bundle import Bundle, update_bundle, write_bundle
from explorer.results.defences import safelora_tables
from explorer.results.findings import focus_first
from explorer.results.samples import sample_rows
from explorer.weights.mso import update_mso
from explorer.weights.projection import PAPER_SIDE, SIDES, SUBSPACES, projection_stats
from explorer.weights.spectra import spectra
from explorer.weights.subspaces import check_frac, check_seed

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
                  callback: Callback | None = None, grid_variants: list[str] | None = None
                  ) -> tuple[dict, dict[str, pd.DataFrame]]:
    tables = {}
    with _timed(timings, "member_scores"):
        scores = score_members(family, family.members, profile, callback)
    with _timed(timings, "spectra"):
        tables["spectra"] = pd.concat([spectra(family, u, callback).assign(update=u) for u in family.updates],
                                      ignore_index=True)
    with _timed(timings, "update_mso"):
        pairs = family_pairs(family)
        tables["update_mso"] = pd.concat([frame.assign(a=a, b=b) for (a, b), frame in
                                          update_mso(family, pairs, callback=callback).items()], ignore_index=True)
    curves = []
    with _timed(timings, "projection_bases"):
        # Energy curves on both sides; bases kept only for the paper's side, which the grid scores.
        stats = {(side, v): projection_stats(family, v, seed, keep_bases=side == PAPER_SIDE, callback=callback,
                                             side=side) for side in SIDES for v in family.finetuned}
    for (side, variant), st in stats.items():
        for method in ("same", "orth", "opp"):
            for subspace in SUBSPACES:
                for frac in CURVE_FRACS:
                    curves.append({"variant": variant, "method": method, "subspace": subspace, "frac": frac,
                                   "side": side, **st.point(method, subspace, frac)})
    # Safe LoRA's points for every fine-tuned member, before the grid: an interrupted run keeps them in the cache.
    with _timed(timings, "safelora"):
        tables.update(safelora_tables(family, PointScorer(family), grid_profile, callback))
    # The variant the findings read is scored first, so that an interrupted run has it.
    variants = focus_first(grid_variants or family.finetuned)
    points = [(v, m, s, f) for v in variants for m in GRID_METHODS for s in SUBSPACES for f in grid_fracs]
    stats = {variant: st for (side, variant), st in stats.items() if side == PAPER_SIDE}
    tables.update(grid_tables(family, stats, points, seed, profile, grid_profile, timings, callback))
    tables["energy_curves"] = pd.DataFrame(curves)
    return scores, tables


def grid_tables(family: Family, stats: dict, points: list[tuple[str, str, str, float]], seed: int, profile: str,
                grid_profile: str, timings: dict, callback: Callback | None = None) -> dict[str, pd.DataFrame]:
    """The scored projection points on the paper's side, with their per-prompt outcomes, samples and the energy
    removed per layer; `stats` holds each variant's left-side projection stats, with its bases kept."""
    grid, outcomes, samples, removed, tables = [], [], [], [], {}
    with _timed(timings, "projection_grid"):
        scored = score_points(family, points, seed, grid_profile, callback)
    for (variant, method, subspace, frac), point in zip(points, scored):
        keys = {"variant": variant, "method": method, "subspace": subspace, "frac": frac, "side": PAPER_SIDE}
        grid.append(grid_row(point))
        outcomes += outcome_rows(point["outcomes"], keys)
        samples += sample_rows(point.get("samples", {}), **keys)
        removed.append(stats[variant].removed_by_layer(method, subspace, frac).assign(**keys))
    if grid_profile != profile:  # the unprojected fine-tunes on the grid's prompts, for like-for-like deltas
        with _timed(timings, "grid_reference"):
            references = score_members(family, focus_first(p[0] for p in points), grid_profile, callback)
            tables["grid_reference"] = pd.DataFrame([{"member": m, **grid_row(s)} for m, s in references.items()])
            outcomes += [row for m, s in references.items()
                         for row in outcome_rows(s["outcomes"], {"variant": m, "method": "unprojected"})]
    tables["projection"] = pd.DataFrame(grid)
    tables["projection_outcomes"] = pd.DataFrame(outcomes)
    tables["removed_by_layer"] = pd.concat(removed, ignore_index=True)
    tables["projection_samples"] = pd.DataFrame(samples)
    return tables


def grid_row(point: dict) -> dict:
    """A scored point as a flat row: scores with `<score>_lo`/`_hi` interval columns and `n_<outcome>` counts."""
    row = {k: v for k, v in point.items()
           if k not in ("samples", "settings", "counts", "outcomes") and not k.endswith("_ci")}
    for score in SCORES:
        interval = point.get(f"{score}_ci") or (None, None)
        row[f"{score}_lo"], row[f"{score}_hi"] = interval
    row.update({f"n_{name}": count for name, count in point.get("counts", {}).items()})
    return row


def outcome_rows(outcomes: dict[str, list[float]], keys: dict) -> list[dict]:
    """Per-prompt outcomes of one point in long form, so every statistic can be recomputed from the bundle."""
    return [{**keys, "outcome": name, "prompt": i, "value": float(v)}
            for name, values in outcomes.items() for i, v in enumerate(values)]


def precompute(family_path: str | Path, profile: str = "full", seed: int = 0, grid_fracs=GRID_FRACS,
               activations: bool = True, grid_profile: str | None = None, callback: Callback | None = None,
               grid_variants: list[str] | None = None) -> Path:
    """Member scores use `profile`; the projection grid and the Safe LoRA points use `grid_profile` (default: the
    same). The grid scores the fine-tuned members in `grid_variants` (default: all; the findings read the
    contaminated one); Safe LoRA's points are scored for every fine-tuned member."""
    grid_profile = grid_profile or profile
    grid_fracs = grid_values(grid_fracs)
    check_seed(seed)
    start = time.perf_counter()
    family = load_family(family_path)
    family.tensor_names  # validate before any work
    _check_variants(family, grid_variants)
    timings: dict[str, float] = {}
    tables = {}
    if activations:
        from explorer.activations.tables import activation_tables

        with _timed(timings, "activations"):
            tables.update(activation_tables(family, callback=callback))
    scores, weight = weight_tables(family, seed, grid_fracs, profile, grid_profile, timings, callback, grid_variants)
    tables.update(weight)
    timings["total"] = round(time.perf_counter() - start, 1)
    manifest = {
        "family": family.name,
        "members": {m: {"kind": s.kind, "fingerprint": family.store(m).fingerprint()} for m, s in family.sources.items()},
        "updates": family.updates,
        "command": _command(family_path),
        "created": _now(),
        "profile": profile,
        "grid_profile": grid_profile,
        "seed": seed,
        "grid": {"fracs": list(grid_fracs), "methods": list(GRID_METHODS), "subspaces": list(SUBSPACES),
                 "variants": focus_first(grid_variants or family.finetuned),
                 "side": PAPER_SIDE, "points": len(tables["projection"])},
        "curve_sides": list(SIDES),
        "timings_s": timings,
        "versions": {"explorer": __version__, "cache": CACHE_VERSION, "torch": torch.__version__,
                     "transformers": transformers.__version__, "python": platform.python_version()},
        "machine": _machine(),
    }
    return write_bundle(family.name, manifest, scores, tables)


POINT_KEYS = ["variant", "method", "subspace", "frac"]


def extend_grid(family_path: str | Path, grid_fracs=GRID_FRACS, grid_variants: list[str] | None = None,
                seed: int | None = None, grid_profile: str | None = None,
                callback: Callback | None = None) -> tuple[Path, int]:
    """Scores the projection points (grid_variants × methods × subspaces × grid_fracs) that the family's bundle
    lacks and adds them to it, keeping every other result. Refused when the bundle was computed from other
    checkpoints, with another seed or with another grid profile: its points would not compare like with like.
    The points are added to the bundle as it is when they are done, under its lock, so that another run's
    additions in the meantime are kept too. Returns the bundle's folder and the number of points added."""
    grid_fracs = grid_values(grid_fracs)
    if seed is not None:
        check_seed(seed)
    start = time.perf_counter()
    family = load_family(family_path)
    bundle = Bundle.load(family.name)
    manifest = bundle.manifest
    _check_extension(bundle, family, seed, grid_profile)
    _check_variants(family, grid_variants)
    scored = _point_keys(bundle.table("projection"))
    variants = focus_first(grid_variants or family.finetuned)
    points = [(v, m, s, f) for v in variants for m in GRID_METHODS for s in SUBSPACES for f in grid_fracs
              if _point_key(v, m, s, f) not in scored]
    if not points:
        return bundle.folder, 0
    timings: dict[str, float] = {}
    with _timed(timings, "projection_bases"):
        stats = {v: projection_stats(family, v, manifest["seed"], keep_bases=True, callback=callback)
                 for v in focus_first(p[0] for p in points)}
    new = grid_tables(family, stats, points, manifest["seed"], manifest["profile"], manifest["grid_profile"],
                      timings, callback)
    command = _command(family_path, "--extend")
    added = 0

    def add_points(current: Bundle) -> tuple[dict, dict, dict[str, pd.DataFrame]]:
        nonlocal added
        _check_extension(current, family, manifest["seed"], manifest["grid_profile"], manifest["profile"])
        tables = current.tables()
        added = len(_point_keys(new["projection"]) - _point_keys(tables["projection"]))
        tables.update(_merged(tables, new))
        timings["total"] = round(time.perf_counter() - start, 1)
        grid = tables["projection"]
        result = dict(current.manifest)
        result["grid"] = {**result["grid"], "fracs": sorted(float(f) for f in set(grid["frac"])),
                          "variants": focus_first(grid["variant"]), "points": len(grid)}
        result["command"] = f"{result['command']} && {command}"
        result["extensions"] = [*result.get("extensions", []), {
            "command": command, "created": _now(), "points": len(points), "timings_s": timings,
            "machine": _machine()}]
        return result, current.scores, tables

    return update_bundle(family.name, add_points), added


def _check_extension(bundle: Bundle, family: Family, seed: int | None, grid_profile: str | None,
                     profile: str | None = None) -> None:
    """Refuse to add points to results they would not compare with like for like."""
    bundle.require_checkpoints_of(family, "--extend")
    manifest = bundle.manifest
    for option, asked, used in (("--seed", seed, manifest.get("seed")),
                                ("--grid-profile", grid_profile, manifest.get("grid_profile")),
                                ("the profile", profile, manifest.get("profile"))):
        if asked is not None and asked != used:
            raise ParameterError(f"--extend: {option} {asked} differs from the bundle's {used}; the added points "
                                 f"would not compare like with like")


def _point_key(variant: str, method: str, subspace: str, frac: float) -> tuple:
    return variant, method, subspace, round(float(frac), 6)


def _point_keys(frame: pd.DataFrame) -> set[tuple]:
    return {_point_key(*row) for row in frame[POINT_KEYS].itertuples(index=False)}


def _merged(current: dict[str, pd.DataFrame], new: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The grid's tables with the new points' rows in place of any rows of the same points (another run may have
    scored them meanwhile, from the same checkpoints and settings); unprojected references just scored replace
    theirs."""
    replaced = _point_keys(new["projection"])
    references = set(new["grid_reference"]["member"]) if "grid_reference" in new else set()
    merged = {}
    for name, frame in new.items():
        kept = current.get(name, frame.iloc[:0])
        if name == "grid_reference":
            kept = kept[~kept["member"].isin(references)]
        elif set(POINT_KEYS) <= set(kept.columns):
            same_point = [_point_key(*row) in replaced for row in kept[POINT_KEYS].itertuples(index=False)]
            unprojected = kept["method"].eq("unprojected") & kept["variant"].isin(references)
            kept = kept[~(pd.Series(same_point, index=kept.index, dtype=bool) | unprojected)]
        merged[name] = pd.concat([kept, frame], ignore_index=True)
    return merged


def grid_values(fracs) -> tuple[float, ...]:
    """The grid's rank fractions, each checked now (not after the hours of work before the grid), repeats
    dropped: a repeated value would score a point twice and weigh it twice in the findings."""
    for frac in fracs:
        check_frac(frac)
    return tuple(dict.fromkeys(round(float(f), 6) for f in fracs))


def _check_variants(family: Family, grid_variants: list[str] | None) -> None:
    unknown = sorted(set(grid_variants or []) - set(family.finetuned))
    if unknown:
        raise ParameterError(f"--grid-variants: {', '.join(unknown)} not among the fine-tuned members of "
                             f"{family.name} ({', '.join(family.finetuned)})")


def _command(family_path: str | Path, *options: str) -> str:
    """This run's command line, as the manifest records it for regenerating the bundle; `options` stand for
    the CLI's when the engine is called from Python."""
    args = sys.argv[2:] if sys.argv[1:2] == ["precompute"] else [str(family_path), *options]
    return "python -m explorer precompute " + " ".join(args)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.machine(), "cpus": _cpus(),
            "device": str(torch.device("cuda" if torch.cuda.is_available() else "cpu"))}


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 0)
