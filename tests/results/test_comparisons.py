"""A projected point is compared only with the unprojected fine-tune scored on the same prompts and profile."""
import pytest

from explorer.core.errors import ParameterError
from explorer.results.comparisons import paired_deltas


def _scores(profile, refusal, utility):
    return {"profile": profile, "outcomes": {"refusal": refusal, "utility": utility, "over_refusal": [],
                                             "target_logprob": []}}


def test_deltas_are_paired_points_with_intervals():
    point = _scores("full", [1.0] * 30 + [0.0] * 70, [1.0] * 50 + [0.0] * 50)
    reference = _scores("full", [0.0] * 100, [1.0] * 50 + [0.0] * 50)
    deltas = paired_deltas(point, reference).set_index("score")
    assert deltas.loc["refusal_rate", "delta"] == pytest.approx(0.30)
    assert 0.2 < deltas.loc["refusal_rate", "ci_lo"] < 0.3 < deltas.loc["refusal_rate", "ci_hi"] < 0.4
    assert deltas.loc["utility_accuracy", "delta"] == 0 and deltas.loc["utility_accuracy", "ci_lo"] == 0
    assert set(deltas.index) == {"refusal_rate", "utility_accuracy"}  # no prompts, no delta


def test_different_profiles_are_refused():
    with pytest.raises(ParameterError, match="prompts differ"):
        paired_deltas(_scores("quick", [1.0], [1.0]), _scores("full", [1.0], [1.0]))
