"""What a bundle's files must hold for the app and `report` to read them: a file that parses but lacks a column
or holds text where numbers belong (an edited or foreign file) is reported as damaged when it is read, in one line,
instead of failing later inside a chart or a statistic."""
from __future__ import annotations

from typing import Callable

import pandas as pd

from explorer.evaluation.evaluate import MEMBER_SCORES

TEXT, NUMBER, FLAG = "text", "number", "true/false"
_POINT = {"variant": TEXT, "method": TEXT, "subspace": TEXT, "frac": NUMBER}
_SCORES = {"refusal_rate": NUMBER, "utility_accuracy": NUMBER}
_OVERLAP = {"a": TEXT, "b": TEXT, "energy_frac": NUMBER, "mso": NUMBER, "mso_random": NUMBER}

# The columns each table must hold, and of what kind: those the analyses read (a page may read more, and then
# reports a missing one in its error box); other columns are allowed.
TABLES: dict[str, dict[str, str]] = {
    "spectra": {"tensor": TEXT, "layer": NUMBER, "module": TEXT, "index": NUMBER, "singular_value": NUMBER,
                "update": TEXT},
    "update_mso": {**_OVERLAP, "cols": NUMBER},
    "energy_curves": {**_POINT, "energy_kept_ratio": NUMBER, "cosine_task_kept": NUMBER, "k_total": NUMBER},
    "projection": {**_POINT, **_SCORES},
    "projection_outcomes": {"variant": TEXT, "method": TEXT, "outcome": TEXT, "prompt": NUMBER, "value": NUMBER},
    "projection_samples": {**_POINT, "kind": TEXT, "index": NUMBER, "response": TEXT},
    "removed_by_layer": {**_POINT, "layer": NUMBER, "total": NUMBER, "removed": NUMBER, "removed_frac": NUMBER},
    "grid_reference": {"member": TEXT, **_SCORES},
    "safelora": {"variant": TEXT, "threshold": NUMBER, "projected_tensors": NUMBER, **_SCORES},
    "lox": {"alpha": NUMBER, "frac": NUMBER, "model": TEXT, **_SCORES},
    "safelora_cosines": {"tensor": TEXT, "layer": NUMBER, "module": TEXT, "candidate": FLAG, "cosine": NUMBER,
                         "variant": TEXT},
    "activation_mso": {**_OVERLAP, "member": TEXT, "layer": NUMBER, "k_a": NUMBER, "k_b": NUMBER},
    "activation_responses": {"set": TEXT, "index": NUMBER, "response": TEXT, "refused": FLAG, "member": TEXT},
    "embeddings": {"set": TEXT, "index": NUMBER, "x": NUMBER, "y": NUMBER, "member": TEXT, "layer": NUMBER,
                   "method": TEXT},
    "probe": {"member": TEXT, "layer": NUMBER, "accuracy": NUMBER},
    "prompts": {"set": TEXT, "index": NUMBER, "text": TEXT},
    "refusal_direction": {"member": TEXT, "layer": NUMBER, "gap": NUMBER, "cosine_with_alignment_update": NUMBER},
    "refusal_alignment": {"member": TEXT, "layer": NUMBER, "module": TEXT, "cosine_top1": NUMBER},
}

_KIND_CHECKS: dict[str, Callable[[pd.Series], bool]] = {
    TEXT: lambda s: pd.api.types.is_string_dtype(s) or pd.api.types.is_object_dtype(s),
    NUMBER: lambda s: pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s),
    FLAG: pd.api.types.is_bool_dtype,
}


def table_problem(name: str, frame: pd.DataFrame) -> str | None:
    """What is wrong with a table read from a bundle, or None."""
    for column, kind in TABLES.get(name, {}).items():
        if column not in frame.columns:
            return f"it has no {column!r} column"
        if not _KIND_CHECKS[kind](frame[column]):
            return f"its {column!r} column holds {frame[column].dtype}, not {kind}"
    return None


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _not_an_object(data: object) -> str | None:
    return None if isinstance(data, dict) else f"it holds a JSON {type(data).__name__}, not an object"


def manifest_problem(manifest: object) -> str | None:
    """What is wrong with a bundle's manifest, or None."""
    if _not_an_object(manifest):
        return _not_an_object(manifest)
    # What every reader indexes; the rest is checked where present (small bundles of tests and tools omit it).
    for key in ("family", "created", "command", "profile"):
        if not isinstance(manifest.get(key), str):
            return f"its {key!r} is missing or not a str"
    for key, kind in (("members", dict), ("grid", dict), ("updates", list), ("extensions", list),
                      ("curve_sides", list), ("spot_example", dict), ("lox", dict), ("grid_profile", str)):
        if key in manifest and not isinstance(manifest[key], kind):
            return f"its {key!r} is not a {kind.__name__}"
    if "seed" in manifest and not (isinstance(manifest["seed"], int) and not isinstance(manifest["seed"], bool)):
        return "its 'seed' is not an integer"
    fracs = manifest.get("grid", {}).get("fracs", [])
    if not (isinstance(fracs, list) and all(_is_number(f) for f in fracs)):
        return "its grid's 'fracs' are not a list of numbers"
    return None


def scores_problem(scores: object) -> str | None:
    """What is wrong with a bundle's member scores (member -> scores), or None."""
    if _not_an_object(scores):
        return _not_an_object(scores)
    for member, entry in scores.items():
        if not isinstance(entry, dict):
            return f"the scores of {member!r} are not an object"
        for score in MEMBER_SCORES:
            if entry.get(score) is not None and not _is_number(entry[score]):
                return f"{member!r}'s {score} is not a number"
            interval = entry.get(f"{score}_ci")
            if interval is not None and not (isinstance(interval, list) and len(interval) == 2
                                             and all(v is None or _is_number(v) for v in interval)):
                return f"{member!r}'s {score}_ci is not a pair of numbers"
        if not isinstance(entry.get("counts", {}), dict):
            return f"{member!r}'s counts are not an object"
        if "profile" in entry and not isinstance(entry["profile"], str):
            return f"{member!r}'s profile is not a str"
    return None
