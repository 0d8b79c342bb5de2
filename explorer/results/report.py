"""The precomputed headline of a family, read from its bundle without touching a checkpoint."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from explorer.checkpoints.family import read_family_spec
from explorer.evaluation.evaluate import SCORES
from explorer.results.bundle import Bundle
from explorer.results.defences import report_rows

PROJECTION_COLUMNS = ["variant", "method", "subspace", "frac", "energy_kept_ratio", "cosine_task_kept",
                      "cosine_task_alignment", "k_total", *SCORES, "profile"]
ACTIVATION_COLUMNS = {
    "activation_mso": ["member", "a", "b", "layer", "energy_frac", "mso", "mso_random"],
    "refusal_direction": ["member", "layer", "gap", "cosine_with_alignment_update"],
    "probe": ["member", "layer", "accuracy"],
}


def bundle_for(family_path: str | Path) -> Bundle:
    return Bundle.load(str(read_family_spec(family_path)["name"]))


def _records(frame: pd.DataFrame, columns: list[str]) -> list[dict]:
    return frame[[c for c in columns if c in frame]].to_dict("records")


def headline(family_path: str | Path) -> dict:
    bundle = bundle_for(family_path)
    manifest = bundle.manifest
    report = {
        "family": manifest["family"],
        "created": manifest["created"],
        "command": manifest["command"],
        "models": {m: {k: s[k] for k in (*SCORES, "profile")} for m, s in bundle.scores.items()},
        "projection": _records(bundle.table("projection"), PROJECTION_COLUMNS),
        "safelora": report_rows(bundle),
    }
    mso = bundle.table("update_mso")
    matrices = mso[mso["cols"] > 1]
    report["update_mso"] = matrices.groupby(["a", "b", "energy_frac"], as_index=False)[["mso", "mso_random"]] \
        .mean().to_dict("records")
    for table, columns in ACTIVATION_COLUMNS.items():
        if bundle.has(table):
            report[table] = _records(bundle.table(table), columns)
    return report
