"""The stages of a family's results, cheapest first. Each computes one part of the bundle and writes it in,
atomically and under the bundle's lock, so that `precompute`, the app's background jobs and `report` share one
bundle; a stage already in the bundle is never computed again.

Order: spectra, projection energies, update MSO, then per member its activations and embeddings and its scores,
Safe LoRA's points, and the projection grid in blocks of one variant, method and subspace.
"""
from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from importlib import metadata
from typing import Callable

import numpy as np
import pandas as pd
import torch

from explorer import __version__
from explorer.checkpoints.family import ALIGNED, BASE, Family
from explorer.core.cache import CACHE_VERSION
from explorer.core.errors import ParameterError
from explorer.core.progress import Callback
from explorer.results.bundle import Bundle, find_bundle, update_bundle
from explorer.results.findings import focus_first
from explorer.weights.projection import PAPER_SIDE, SIDES, SUBSPACES

GRID_FRACS = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)
GRID_METHODS = ("same", "orth")
CURVE_FRACS = tuple(round(f, 2) for f in np.arange(0.01, 1.0, 0.01))
KINDS = ("spectra", "energy", "update_mso", "activations", "scores", "safelora", "grid")
POINT_KEYS = ["variant", "method", "subspace", "frac"]
Point = tuple[str, str, str, float]


@dataclass(frozen=True)
class Stage:
    """One unit of work: `member` for activations and scores, `points` for a block of the grid."""

    kind: str
    member: str | None = None
    points: tuple[Point, ...] = ()

    @property
    def key(self) -> str:
        if self.points:
            v, m, s, _ = self.points[0]
            return f"grid:{v}/{m}/{s}@{','.join(f'{p[3]:g}' for p in self.points)}"
        return f"{self.kind}:{self.member}" if self.member else self.kind

    @property
    def title(self) -> str:
        """What the stage computes, for a button ("Compute " + title) and the progress line."""
        if self.kind == "grid":
            v, m, s, _ = self.points[0]
            fracs = ", ".join(f"{p[3]:g}" for p in self.points)
            return f"the {v} · {m} · {s} point{'s' if len(self.points) > 1 else ''} at ρ = {fracs}"
        return {"spectra": "the spectra", "energy": "the projection energies", "update_mso": "the update overlaps",
                "activations": f"the activations of {self.member}", "scores": f"the scores of {self.member}",
                "safelora": "Safe LoRA's points"}[self.kind]

    def to_json(self) -> dict:
        return {**asdict(self), "points": [list(p) for p in self.points]}

    @classmethod
    def from_json(cls, data: dict) -> "Stage":
        if data.get("kind") not in KINDS:
            raise ParameterError(f"unknown stage {data.get('kind')!r}; stages are {', '.join(KINDS)}")
        return cls(data["kind"], data.get("member"), tuple((str(v), str(m), str(s), float(f))
                                                           for v, m, s, f in data.get("points", [])))


@dataclass(frozen=True)
class Settings:
    """What the scores and the random controls depend on: every stage of one bundle uses the same."""

    profile: str = "full"
    grid_profile: str | None = None
    seed: int = 0

    @property
    def grid(self) -> str:
        return self.grid_profile or self.profile


def grid_stages(variants: list[str], fracs, methods=GRID_METHODS) -> list[Stage]:
    """The grid in blocks of one variant, method and subspace, the variant the findings read first."""
    return [Stage("grid", points=tuple((v, m, s, float(f)) for f in fracs))
            for v in focus_first(variants) for m in methods for s in SUBSPACES]


def planned(members: list[str], grid_fracs, grid_variants: list[str] | None = None,
            activations: bool = True) -> list[Stage]:
    """Every stage of a whole precompute of a family of `members` (base, aligned, then the fine-tunes), cheapest
    first."""
    stages = [Stage("spectra"), Stage("energy"), Stage("update_mso")]
    if activations:
        stages += [Stage("activations", m) for m in members]
    stages += [Stage("scores", m) for m in members]
    stages.append(Stage("safelora"))
    return stages + grid_stages(grid_variants or [m for m in members if m not in (BASE, ALIGNED)], grid_fracs)


# --- what a bundle holds -------------------------------------------------------------------------------------------

def point_key(variant: str, method: str, subspace: str, frac: float) -> tuple:
    return variant, method, subspace, round(float(frac), 6)


def point_keys(frame: pd.DataFrame) -> set[tuple]:
    return {point_key(*row) for row in frame[POINT_KEYS].itertuples(index=False)}


def is_done(stage: Stage, bundle: Bundle | None) -> bool:
    if bundle is None:
        return False
    table = {"spectra": "spectra", "energy": "energy_curves", "update_mso": "update_mso"}.get(stage.kind)
    if table:
        return bundle.has(table)
    if stage.kind == "scores":
        return stage.member in bundle.scores
    # What the checks read is kept with the bundle object: a page checks every stage at each run.
    if stage.kind == "activations":
        if "members_with_activations" not in bundle.derived:
            bundle.derived["members_with_activations"] = bundle.column_values("embeddings", "member")
        return stage.member in bundle.derived["members_with_activations"]
    if stage.kind == "safelora":
        return bundle.has("safelora")
    if "scored_points" not in bundle.derived:
        bundle.derived["scored_points"] = point_keys(bundle.table("projection")) if bundle.has("projection") else set()
    return {point_key(*p) for p in stage.points} <= bundle.derived["scored_points"]


def settings_conflict(bundle: Bundle, settings: Settings) -> str | None:
    """Why stages with `settings` would not compare like with like with what the bundle holds, or None. Each
    setting is bound only once a stage that depends on it is in the bundle."""
    manifest = bundle.manifest
    bound = (("profile", "profile", settings.profile, bool(bundle.scores)),
             ("grid profile", "grid_profile", settings.grid, bundle.has("projection") or bundle.has("safelora")),
             ("seed", "seed", settings.seed, bundle.has("energy_curves") or bundle.has("projection")))
    for name, key, asked, is_bound in bound:
        used = manifest.get(key)
        if is_bound and used is not None and asked != used:
            return (f"the results of {manifest['family']} were computed with the {name} {used}, not {asked}: "
                    "the new results would not compare like with like")
    return None


def check_compatible(bundle: Bundle | None, family: Family, settings: Settings) -> None:
    if bundle is None:
        return
    changed = bundle.changed_members(family)
    if changed:
        raise ParameterError(f"the results of {family.name} were computed from another {changed[0]!r} checkpoint "
                             "(its fingerprint differs), so new stages would not compare like with like; run "
                             "`python -m explorer precompute FAMILY --restart` to compute them all afresh")
    conflict = settings_conflict(bundle, settings)
    if conflict:
        raise ParameterError(conflict)


def current_bundle(name: str) -> Bundle | None:
    return Bundle.load(name) if find_bundle(name) else None


# --- computing a stage ---------------------------------------------------------------------------------------------

Change = Callable[[dict, dict, dict[str, pd.DataFrame]], None]  # applied to copies of manifest, scores, tables


def _compute(family: Family, stage: Stage, settings: Settings, keep_bases: bool, callback: Callback | None
             ) -> Change:
    """Compute a stage; return how it changes the bundle."""
    kind = stage.kind
    if kind == "spectra":
        from explorer.weights.spectra import spectra

        frame = pd.concat([spectra(family, u, callback).assign(update=u) for u in family.updates], ignore_index=True)
        return _replace({"spectra": frame})
    if kind == "update_mso":
        from explorer.weights.mso import family_pairs, update_mso

        overlaps = update_mso(family, family_pairs(family), callback=callback)
        return _replace({"update_mso": pd.concat([f.assign(a=a, b=b) for (a, b), f in overlaps.items()],
                                                 ignore_index=True)})
    if kind == "energy":
        return _replace({"energy_curves": energy_curves(family, settings.seed, keep_bases, callback)},
                        seed=settings.seed, curve_sides=list(SIDES))
    if kind == "activations":
        from explorer.activations.tables import activation_tables

        return _member_rows(stage.member, activation_tables(family, members=[stage.member], callback=callback))
    if kind == "scores":
        from explorer.evaluation.scores import score_members

        scored = score_members(family, [stage.member], settings.profile, callback)[stage.member]

        def add_scores(manifest: dict, scores: dict, tables: dict) -> None:
            scores[stage.member] = scored
            manifest["profile"] = settings.profile
        return add_scores
    if kind == "safelora":
        from explorer.evaluation.scores import PointScorer
        from explorer.results.defences import safelora_tables

        return _replace(safelora_tables(family, PointScorer(family), settings.grid, callback),
                        grid_profile=settings.grid)
    return _grid_points(family, list(stage.points), settings, callback)


def _replace(new: dict[str, pd.DataFrame], **manifest_values) -> Change:
    def change(manifest: dict, scores: dict, tables: dict) -> None:
        tables.update(new)
        manifest.update(manifest_values)
    return change


def _member_rows(member: str, new: dict[str, pd.DataFrame]) -> Change:
    """A member's rows of the activation tables in place of any it had; the prompts table is every member's."""
    def change(manifest: dict, scores: dict, tables: dict) -> None:
        for name, frame in new.items():
            kept = tables.get(name)
            if kept is None or "member" not in frame.columns:
                tables[name] = frame
                continue
            tables[name] = pd.concat([kept[kept["member"] != member], frame], ignore_index=True)
    return change


def energy_curves(family: Family, seed: int, keep_bases: bool, callback: Callback | None = None) -> pd.DataFrame:
    """Energy kept at every ρ of CURVE_FRACS, for every method, subspace, fine-tuned variant and projection side;
    with keep_bases, the paper's side keeps its bases on disk for the grid that follows."""
    from explorer.weights.projection import projection_stats

    rows = []
    for side in SIDES:
        for variant in family.finetuned:
            stats = projection_stats(family, variant, seed, keep_bases=keep_bases and side == PAPER_SIDE,
                                     callback=callback, side=side)
            rows += [{"variant": variant, "method": method, "subspace": subspace, "frac": frac, "side": side,
                      **stats.point(method, subspace, frac)}
                     for method in ("same", "orth", "opp") for subspace in SUBSPACES for frac in CURVE_FRACS]
    return pd.DataFrame(rows)


def _grid_points(family: Family, points: list[Point], settings: Settings, callback: Callback | None) -> Change:
    from explorer.weights.projection import projection_stats

    stats = {v: projection_stats(family, v, settings.seed, keep_bases=True, callback=callback)
             for v in focus_first(p[0] for p in points)}
    new = grid_tables(family, stats, points, settings.seed, settings.profile, settings.grid, callback)

    def change(manifest: dict, scores: dict, tables: dict) -> None:
        tables.update(merged_grid(tables, new))
        grid = tables["projection"]
        manifest["grid"] = {**manifest.get("grid", {}), "fracs": sorted(float(f) for f in set(grid["frac"])),
                            "variants": focus_first(grid["variant"]), "points": len(grid)}
        manifest.update(grid_profile=settings.grid, seed=settings.seed)
    return change


def grid_tables(family: Family, stats: dict, points: list[Point], seed: int, profile: str, grid_profile: str,
                callback: Callback | None = None) -> dict[str, pd.DataFrame]:
    """The scored projection points on the paper's side, with their per-prompt outcomes, samples and the energy
    removed per layer; `stats` holds each variant's left-side projection stats, with its bases kept."""
    from explorer.evaluation.scores import score_members, score_points
    from explorer.results.samples import sample_rows

    grid, outcomes, samples, removed, tables = [], [], [], [], {}
    scored = score_points(family, points, seed, grid_profile, callback)
    for (variant, method, subspace, frac), point in zip(points, scored):
        keys = {"variant": variant, "method": method, "subspace": subspace, "frac": frac, "side": PAPER_SIDE}
        grid.append(grid_row(point))
        outcomes += outcome_rows(point["outcomes"], keys)
        samples += sample_rows(point.get("samples", {}), **keys)
        removed.append(stats[variant].removed_by_layer(method, subspace, frac).assign(**keys))
    if grid_profile != profile:  # the unprojected fine-tunes on the grid's prompts, for like-for-like deltas
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
    from explorer.evaluation.evaluate import SCORES

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


def merged_grid(current: dict[str, pd.DataFrame], new: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The grid's tables with the new points' rows in place of any rows of the same points (another run may have
    scored them meanwhile, from the same checkpoints and settings); unprojected references just scored replace
    theirs."""
    replaced = point_keys(new["projection"])
    references = set(new["grid_reference"]["member"]) if "grid_reference" in new else set()
    merged = {}
    for name, frame in new.items():
        kept = current.get(name, frame.iloc[:0])
        if name == "grid_reference":
            kept = kept[~kept["member"].isin(references)]
        elif set(POINT_KEYS) <= set(kept.columns):
            same_point = [point_key(*row) in replaced for row in kept[POINT_KEYS].itertuples(index=False)]
            unprojected = kept["method"].eq("unprojected") & kept["variant"].isin(references)
            kept = kept[~(pd.Series(same_point, index=kept.index, dtype=bool) | unprojected)]
        merged[name] = pd.concat([kept, frame], ignore_index=True)
    return merged


# --- writing it in -------------------------------------------------------------------------------------------------

def new_manifest(family: Family, settings: Settings, command: str) -> dict:
    """The manifest of a bundle that holds no stage yet."""
    return {
        "family": family.name,
        "members": {m: {"kind": s.kind, "fingerprint": family.store(m).fingerprint()}
                    for m, s in family.sources.items()},
        "updates": family.updates, "command": command, "created": now(), "profile": settings.profile,
        "grid_profile": settings.grid, "seed": settings.seed,
        "grid": {"fracs": [], "methods": list(GRID_METHODS), "subspaces": list(SUBSPACES), "variants": [],
                 "side": PAPER_SIDE, "points": 0},
        "curve_sides": list(SIDES), "timings_s": {}, "stages": [],
        "versions": {"explorer": __version__, "cache": CACHE_VERSION, "torch": torch.__version__,
                     "transformers": metadata.version("transformers"), "python": platform.python_version()},
        "machine": machine(),
    }


def run_stage(family: Family, stage: Stage, settings: Settings, command: str, keep_bases: bool = False,
              fresh: bool = False, callback: Callback | None = None) -> bool:
    """Compute `stage` unless the bundle has it, and write it in. With `fresh`, the bundle is started anew with
    this stage (its earlier results came from other checkpoints or settings). Returns whether it computed."""
    if not fresh:
        bundle = current_bundle(family.name)
        check_compatible(bundle, family, settings)
        if is_done(stage, bundle):
            return False
        if stage.kind == "grid" and bundle is not None and bundle.has("projection"):  # only its missing points
            scored = point_keys(bundle.table("projection"))
            stage = Stage("grid", points=tuple(p for p in stage.points if point_key(*p) not in scored))
    start = time.perf_counter()
    change = _compute(family, stage, settings, keep_bases, callback)
    seconds = round(time.perf_counter() - start, 1)

    def write(current: Bundle | None) -> tuple[dict, dict, dict[str, pd.DataFrame]]:
        if current is None or fresh:
            manifest, scores, tables = new_manifest(family, settings, command), {}, {}
        else:  # what another writer (the app, another precompute) added meanwhile is kept, if it still compares
            check_compatible(current, family, settings)
            manifest, scores, tables = dict(current.manifest), dict(current.scores), current.tables()
        change(manifest, scores, tables)
        timings = dict(manifest.get("timings_s", {}))
        timings[stage.kind] = round(timings.get(stage.kind, 0.0) + seconds, 1)
        timings["total"] = round(sum(v for k, v in timings.items() if k != "total"), 1)
        manifest["timings_s"] = timings
        manifest["stages"] = [*manifest.get("stages", []), {"stage": stage.key, "seconds": seconds,
                                                            "created": now(), "device": machine()["device"]}]
        return manifest, scores, tables

    update_bundle(family.name, write, replace=fresh)
    return True


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def machine() -> dict:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 0)
    return {"platform": platform.platform(), "processor": platform.machine(), "cpus": cpus,
            "device": str(torch.device("cuda" if torch.cuda.is_available() else "cpu"))}

