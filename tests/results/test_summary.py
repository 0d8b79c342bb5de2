"""The overview's plain summary says which findings the family supports and which it departs from."""
from test_findings import _outcome_bundle

from explorer.results.findings import findings
from explorer.results.summary import plain_summary, profile_note, verdict_of


def test_summary_names_the_departures_and_the_profiles():
    measured = findings(_outcome_bundle("summary-disagree", 400, 0.5, 0.2, top_energy_boost=0.3, mso_ratio=1.0))
    departs = [f.number for f in measured if verdict_of(f) == "does not support"]
    assert departs and len(departs) < len(measured)
    manifest = {"profile": "full", "grid_profile": "quick"}
    text = plain_summary("tiny", measured, profile_note(manifest))
    supports = [f.number for f in measured if verdict_of(f) == "supports"]
    assert f"it supports {len(supports)} (finding" in text
    for number in departs:
        assert f"finding {number} (*" in text
    assert "**full** profile (100 refusal prompts" in text and "**quick** profile (32 refusal prompts" in text


def test_summary_when_everything_agrees():
    measured = findings(_outcome_bundle("summary-agree", 400, 0.5, 0.2))
    text = plain_summary("tiny", measured, profile_note({"profile": "smoke"}))
    supports = [f for f in measured if verdict_of(f) == "supports"]
    assert len(supports) == 5 and verdict_of(measured[5]) == "not measurable"  # no Safe LoRA points here
    assert "departs" not in text and "supports 5" in text and "every score from the **smoke**" in text
