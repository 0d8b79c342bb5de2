"""The precomputed headline of a family, read from its bundle without touching a checkpoint."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from explorer.checkpoints.family import read_family_spec
from explorer.evaluation.evaluate import MEMBER_SCORES, SCORES
from explorer.results.bundle import Bundle
from explorer.results import lox
from explorer.results.defences import report_rows
from explorer.results.family_comparison import alignment_overlaps, on_shared_grid, overlap_contrast
from explorer.results.findings import findings

PROJECTION_COLUMNS = ["variant", "method", "subspace", "frac", "side", "energy_kept_ratio", "cosine_task_kept",
                      "cosine_task_alignment", "k_total", *SCORES, "profile"]
ACTIVATION_COLUMNS = {
    "activation_mso": ["member", "a", "b", "centered", "layer", "energy_frac", "k_a", "k_b", "mso", "mso_random"],
    "refusal_direction": ["member", "layer", "gap", "cosine_with_alignment_update"],
    "probe": ["member", "layer", "accuracy"],
}


def bundle_for(family_path: str | Path) -> Bundle:
    return Bundle.load(str(read_family_spec(family_path)["name"]))


def _records(frame: pd.DataFrame, columns: list[str]) -> list[dict]:
    return frame[[c for c in columns if c in frame]].to_dict("records")


def model_entry(scores: dict) -> dict:
    """A member's scores with `<score>_ci` and `counts`, without the per-prompt outcomes."""
    entry = {k: scores.get(k) for k in (*MEMBER_SCORES, "profile")}
    entry.update({f"{s}_ci": scores.get(f"{s}_ci") for s in MEMBER_SCORES})
    entry["counts"] = scores.get("counts")
    return entry


def projection_entries(frame: pd.DataFrame) -> list[dict]:
    """Grid rows with `<score>_ci` = [lo, hi] and `counts`, from the bundle's flat interval and count columns."""
    rows = []
    for record in frame.to_dict("records"):
        row = {c: record[c] for c in PROJECTION_COLUMNS if c in record}
        for score in SCORES:
            lo, hi = record.get(f"{score}_lo"), record.get(f"{score}_hi")
            row[f"{score}_ci"] = None if lo is None or hi is None or pd.isna(lo) or pd.isna(hi) else [lo, hi]
        row["counts"] = {k[2:]: int(v) for k, v in record.items() if k.startswith("n_") and pd.notna(v)}
        rows.append(row)
    return rows


def headline(family_path: str | Path) -> dict:
    bundle = bundle_for(family_path)
    manifest = bundle.manifest
    report = {
        "family": manifest["family"],
        "created": manifest["created"],
        "command": manifest["command"],
        "grid": manifest.get("grid"),
        "models": {m: model_entry(s) for m, s in bundle.scores.items()},
        "projection": projection_entries(bundle.table("projection")) if bundle.has("projection") else [],
        "safelora": report_rows(bundle),
        "lox": lox.report_rows(bundle),
        "findings": [f.as_json() for f in findings(bundle)],
    }
    if bundle.has("update_mso"):  # results computed stage by stage may not have it yet
        mso = bundle.table("update_mso")
        matrices = mso[mso["cols"] > 1]
        report["update_mso"] = matrices.groupby(["a", "b", "energy_frac"], as_index=False)[["mso", "mso_random"]] \
            .mean().to_dict("records")
    for table, columns in ACTIVATION_COLUMNS.items():
        if bundle.has(table):
            report[table] = _records(bundle.table(table), columns)
    return report


def comparison(family_paths: list[str | Path]) -> dict:
    """Families side by side: per family, each finding's verdict, statistic and interval, the MSO of every task
    update with the alignment update at η = 0.5, and each LoX setting against the unprotected fine-tune. Findings
    are measured on the grid ρ values all families score (`shared_grid_fracs`, null when their grids agree)."""
    bundles = {}
    for path in family_paths:
        bundle = bundle_for(path)
        bundles[bundle.manifest["family"]] = bundle
    overlaps = alignment_overlaps(bundles)
    shared, fracs = on_shared_grid(bundles)
    return {"families": list(bundles),
            "shared_grid_fracs": None if fracs is None else list(fracs),
            "findings": {name: [f.as_json() for f in findings(b)] for name, b in shared.items()},
            "alignment_overlap": overlaps.to_dict("records"),
            "harmful_over_useful": overlap_contrast(overlaps),
            "lox": {name: [o.as_json() for o in lox.lox_outcomes(b)] for name, b in bundles.items()}}
