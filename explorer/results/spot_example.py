"""A precomputed example spot-check, kept in a family's bundle: what the Spot-check page shows before a user
analyses a checkpoint of their own. The example is a fine-tune the family does not include."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from explorer.checkpoints.family import load_family
from explorer.core.errors import CorruptBundleError, ParameterError
from explorer.core.progress import Callback
from explorer.evaluation.evaluate import MEMBER_SCORES
from explorer.evaluation.scores import member_scores
from explorer.results.bundle import Bundle, update_bundle
from explorer.results.spot_verdict import SpotVerdict, spot_verdict
from explorer.weights.spotcheck import CANDIDATE, spot_check

TABLES = {"summary": "spot_example_summary", "overlaps": "spot_example_overlaps", "energy": "spot_example_energy"}


@dataclass
class SpotExample:
    label: str  # what the example is, in words
    source: str
    summary: pd.DataFrame
    overlaps: pd.DataFrame
    energy: pd.DataFrame
    verdict: SpotVerdict | None
    scores: dict | None
    command: str


def store_spot_example(family_path: str | Path, source: str | Path, label: str, command: str,
                       callback: Callback | None = None) -> Path:
    """Spot-check `source` against the family, score it like the family's members, and add the result to the
    family's bundle (replacing an earlier example); every other result is kept. `command` is what the manifest
    records as having produced it."""
    family = load_family(family_path)
    bundle = Bundle.load(family.name)
    bundle.require_checkpoints_of(family, "the example spot-check")
    check = spot_check(family, str(source), callback)
    profile = bundle.manifest["profile"]
    scores = member_scores(check.family, CANDIDATE, profile, callback)
    kept = {k: scores[k] for k in (*MEMBER_SCORES, *(f"{s}_ci" for s in MEMBER_SCORES), "counts", "profile")
            if k in scores}
    example = {
        "label": label, "source": Path(source).name, "fingerprint": check.family.store(CANDIDATE).fingerprint(),
        "verdict": spot_verdict(check.matrices, check.references).as_dict(), "scores": kept,
        "command": command, "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}

    def add_example(current: Bundle) -> tuple[dict, dict, dict[str, pd.DataFrame]]:
        current.require_checkpoints_of(family, "the example spot-check")
        if current.manifest["profile"] != profile:
            raise ParameterError(f"the results of {family.name} were recomputed with the {current.manifest['profile']} "
                                 f"profile while the example was scored with {profile}; run this command again")
        tables = current.tables()
        tables.update({TABLES["summary"]: check.summary, TABLES["overlaps"]: check.overlaps,
                       TABLES["energy"]: check.energy})
        return {**current.manifest, "spot_example": example}, current.scores, tables

    return update_bundle(family.name, add_example)


def spot_example(bundle: Bundle) -> SpotExample | None:
    """The bundle's example spot-check, or None if it holds none."""
    entry = bundle.manifest.get("spot_example")
    if not isinstance(entry, dict) or not all(bundle.has(t) for t in TABLES.values()):
        return None
    try:
        verdict = SpotVerdict.from_dict(entry["verdict"]) if entry.get("verdict") else None
    except (KeyError, TypeError, IndexError) as exc:
        raise CorruptBundleError(f"{bundle.folder / 'manifest.json'}: its spot_example's verdict cannot be read "
                                 f"({exc!r}); run `{entry.get('command', 'python -m explorer demo example')}` again") \
            from None
    return SpotExample(entry.get("label", "an example fine-tune"), entry.get("source", ""),
                       *(bundle.table(TABLES[part]) for part in ("summary", "overlaps", "energy")),
                       verdict, entry.get("scores"), entry.get("command", ""))
