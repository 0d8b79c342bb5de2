"""Intervals of scores: Wilson for rates, normal for means, paired bootstraps for differences."""
import numpy as np
import pytest

from explorer.evaluation.evaluate import score_outcomes
from explorer.evaluation.stats import (
    bootstrap_interval,
    mean_interval,
    paired_difference,
    wilson,
)


def test_wilson_matches_the_textbook_values():
    lo, hi = wilson(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    assert wilson(0, 32)[0] == 0.0 and 0.10 < wilson(0, 32)[1] < 0.11
    assert wilson(0, 0) is None


def test_mean_interval_covers_the_mean_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    small, large = rng.normal(-1, 1, 20), rng.normal(-1, 1, 2000)
    for sample in (small, large):
        lo, hi = mean_interval(sample)
        assert lo < sample.mean() < hi
    assert np.diff(mean_interval(large)) < np.diff(mean_interval(small)) / 5
    assert mean_interval([1.0]) is None


def test_paired_bootstrap_sees_a_consistent_shift_that_an_unpaired_view_would_miss():
    rng = np.random.default_rng(1)
    control = rng.integers(0, 2, 100).astype(float)
    treated = control.copy()
    treated[np.flatnonzero(control == 0)[:10]] = 1  # ten prompts flip, none go back
    delta, (lo, hi) = paired_difference(treated, control)
    assert delta == pytest.approx(0.10) and 0 < lo < delta < hi
    assert paired_difference(treated, control) == paired_difference(treated, control)  # seeded
    with pytest.raises(ValueError):
        paired_difference(treated, control[:50])


def test_bootstrap_groups_are_resampled_independently():
    a, b = np.ones(50), np.zeros(30)
    lo, hi = bootstrap_interval(lambda x, y: x.mean() - y.mean(), [[a], [b]])
    assert lo == hi == 1.0


def test_scores_come_with_intervals_and_counts():
    scores = score_outcomes({"refusal": [1, 1, 0, 1], "utility": [], "over_refusal": [0, 0],
                             "target_logprob": [-1.0, -2.0, -3.0]})
    assert scores["refusal_rate"] == 0.75 and scores["refusal_rate_ci"] == wilson(3, 4)
    assert scores["utility_accuracy"] is None and scores["utility_accuracy_ci"] is None
    assert scores["target_logprob"] == -2.0 and scores["target_logprob_ci"][0] < -2.0
    assert scores["counts"] == {"refusal": 4, "utility": 0, "over_refusal": 2, "target_logprob": 3}
