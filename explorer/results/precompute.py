"""`python -m explorer precompute`: every result the app shows, computed stage by stage into the family's bundle.

A stage the bundle already holds (from an earlier run, or from the app) is not computed again; a bundle computed from
other checkpoints, or with other settings, is started afresh."""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from explorer.checkpoints.family import Family, load_family
from explorer.core.errors import CorruptBundleError, ParameterError
from explorer.core.progress import Callback, track
from explorer.results.bundle import Bundle, update_bundle
from explorer.results.stages import (
    GRID_FRACS,
    Settings,
    Stage,
    current_bundle,
    grid_stages,
    machine,
    now,
    planned,
    point_key,
    point_keys,
    run_stage,
    settings_conflict,
)
from explorer.weights.subspaces import check_frac, check_seed

log = logging.getLogger("explorer")


def precompute(family_path: str | Path, profile: str | None = None, seed: int | None = None, grid_fracs=GRID_FRACS,
               activations: bool = True, grid_profile: str | None = None, callback: Callback | None = None,
               grid_variants: list[str] | None = None, restart: bool = False) -> Path:
    """Member scores use `profile`; the projection grid and the Safe LoRA points use `grid_profile` (default: the
    same). The grid scores the fine-tuned members in `grid_variants` (default: all; the findings read the
    contaminated one); Safe LoRA's points are scored for every fine-tuned member. Only the stages the family's
    bundle lacks are computed, unless `restart` or the bundle was computed from other checkpoints or settings.
    Settings not given are the bundle's (computed by the app, say), else the full profile and seed 0."""
    grid_fracs = grid_values(grid_fracs)
    if seed is not None:
        check_seed(seed)
    family = load_family(family_path)
    family.tensor_names  # validate before any work
    _check_variants(family, grid_variants)
    settings = _settings(None if restart else _readable_bundle(family), profile, grid_profile, seed)
    fresh = restart or _outdated(family, settings)
    stages = planned(family.members, grid_fracs, grid_variants, activations)
    for number, stage in enumerate(track(stages, "stages", callback=callback)):
        run_stage(family, stage, settings, _command(family_path), keep_bases=True, fresh=fresh and number == 0,
                  callback=callback)
    return Bundle.load(family.name).folder


def _readable_bundle(family: Family) -> Bundle | None:
    try:
        return current_bundle(family.name)
    except CorruptBundleError as exc:
        log.warning("computing every stage of %s afresh: %s", family.name, exc)
        return None


def _settings(bundle: Bundle | None, profile: str | None, grid_profile: str | None, seed: int | None) -> Settings:
    """The settings asked for, the rest taken from the bundle where it has them."""
    manifest = bundle.manifest if bundle is not None else {}
    profile = profile or manifest.get("profile") or "full"
    grid_profile = grid_profile or (manifest.get("grid_profile") if manifest.get("profile") == profile else None)
    return Settings(profile, grid_profile or profile, seed if seed is not None else int(manifest.get("seed", 0)))


def _outdated(family: Family, settings: Settings) -> bool:
    """Whether the family's bundle cannot be filled in: it is damaged, or comes from other checkpoints or settings."""
    try:
        bundle = current_bundle(family.name)
    except CorruptBundleError:
        return True
    if bundle is None:
        return False
    why = (f"it was computed from another {bundle.changed_members(family)[0]!r} checkpoint"
           if bundle.changed_members(family) else settings_conflict(bundle, settings))
    if why:
        log.warning("computing every stage of %s afresh: %s", family.name, why)
    return why is not None


def extend_grid(family_path: str | Path, grid_fracs=GRID_FRACS, grid_variants: list[str] | None = None,
                seed: int | None = None, grid_profile: str | None = None,
                callback: Callback | None = None) -> tuple[Path, int]:
    """Scores the projection points (grid_variants × methods × subspaces × grid_fracs) that the family's bundle
    lacks and adds them to it, keeping every other result. Refused when the bundle was computed from other
    checkpoints, with another seed or with another grid profile: its points would not compare like with like.
    Each block of points is added to the bundle as it is when it is done, under its lock, so that another run's
    additions in the meantime are kept too. Returns the bundle's folder and the number of points added."""
    grid_fracs = grid_values(grid_fracs)
    if seed is not None:
        check_seed(seed)
    family = load_family(family_path)
    bundle = Bundle.load(family.name)
    manifest = bundle.manifest
    _check_extension(bundle, family, seed, grid_profile)
    _check_variants(family, grid_variants)
    settings = Settings(manifest["profile"], manifest.get("grid_profile"), manifest.get("seed", 0))
    scored = point_keys(bundle.table("projection")) if bundle.has("projection") else set()
    stages = [Stage("grid", points=tuple(p for p in s.points if point_key(*p) not in scored))
              for s in grid_stages(grid_variants or family.finetuned, grid_fracs)]
    stages = [s for s in stages if s.points]
    if not stages:
        return bundle.folder, 0
    start = time.perf_counter()
    command = _command(family_path, "--extend")
    for stage in track(stages, "grid", callback=callback):
        run_stage(family, stage, settings, command, keep_bases=True, callback=callback)
    added = 0

    def record(current: Bundle) -> tuple[dict, dict, dict]:
        nonlocal added
        mine = {point_key(*p) for stage in stages for p in stage.points}
        added = len(mine & point_keys(current.table("projection")) - scored)
        result = dict(current.manifest)
        result["command"] = f"{result['command']} && {command}"
        result["extensions"] = [*result.get("extensions", []), {
            "command": command, "created": now(), "points": sum(len(s.points) for s in stages),
            "timings_s": {"grid": round(time.perf_counter() - start, 1)}, "machine": machine()}]
        return result, current.scores, current.tables()

    return update_bundle(family.name, record), added


def _check_extension(bundle: Bundle, family: Family, seed: int | None, grid_profile: str | None) -> None:
    """Refuse to add points to results they would not compare with like for like."""
    bundle.require_checkpoints_of(family, "--extend")
    manifest = bundle.manifest
    for option, asked, used in (("--seed", seed, manifest.get("seed")),
                                ("--grid-profile", grid_profile, manifest.get("grid_profile"))):
        if asked is not None and asked != used:
            raise ParameterError(f"--extend: {option} {asked} differs from the bundle's {used}; the added points "
                                 f"would not compare like with like")


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
