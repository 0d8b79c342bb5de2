"""Safe LoRA in the results: the bundle's tables and report rows on a precomputed tiny family, and the
comparisons of the Defences view and the sixth finding on synthetic bundles whose answers are known."""
import numpy as np
import pandas as pd
import pytest

import explorer.evaluation.scores as scores_module
from explorer.checkpoints.family import load_family
from explorer.evaluation.evaluate import SCORES
from explorer.evaluation.scores import PointScorer
from explorer.results.bundle import Bundle, write_bundle
from explorer.results.defences import (
    SELECTIVITY_MARGIN,
    compare_with_orth,
    subspace_defence,
    variant_stats,
)
from explorer.results.findings import INCONCLUSIVE, SUPPORTS, findings
from explorer.results.html_report import render
from explorer.results.report import headline


MEMBER_SCORES = {"contaminated": {"utility_accuracy": 0.6, "refusal_rate": 0.2}}


def _manifest(name: str) -> dict:
    return {"family": name, "created": "2026-11-25", "command": "test", "profile": "smoke"}


@pytest.fixture(scope="module")
def tiny(tiny_demo):
    return Bundle.load(load_family(tiny_demo).name)


def test_bundle_holds_cosines_and_scored_points_for_every_variant(tiny):
    cosines, points = tiny.table("safelora_cosines"), tiny.table("safelora")
    assert set(points["variant"]) == {"useful", "harmful", "contaminated"}
    for variant, group in points.groupby("variant"):
        stats = variant_stats(cosines, variant)
        observed = stats.candidates["cosine"]
        projecting = group[group["projected_tensors"] > 0]
        assert projecting["threshold"].nunique() >= 6
        assert projecting["threshold"].between(observed.min(), observed.max()).all()
        assert (group["projected_tensors"] == 0).sum() == 1 and group["threshold"].min() < observed.min()
        assert group.sort_values("threshold")["projected_tensors"].is_monotonic_increasing
        for row in group.itertuples():
            point = stats.point(threshold=row.threshold)
            assert row.projected_tensors == point["projected_tensors"]
            assert row.energy_kept_ratio == pytest.approx(point["energy_kept_ratio"])
    assert points[list(SCORES)].notna().all().all()
    assert set(points["profile"]) == {tiny.manifest["grid_profile"]}
    assert {"tensor", "layer", "module", "cosine"} <= set(cosines)


def test_report_rows_have_scores_intervals_and_counts(tiny_demo):
    rows = headline(tiny_demo)["safelora"]
    assert len(rows) >= 3 * 7
    for row in rows:
        assert {"variant", "threshold", "projected_tensors", "candidate_tensors", "energy_kept_ratio", "counts"} <= set(row)
        for score in SCORES:
            lo, hi = row[f"{score}_ci"]
            assert lo <= row[score] <= hi
        assert row["counts"]["refusal"] == 8


def test_a_point_is_cached_by_what_it_projects(tiny, tiny_demo, monkeypatch):
    row = tiny.table("safelora").query("variant == 'harmful' and projected_tensors > 0").iloc[2]

    def no_evaluation(*args, **kwargs):
        raise AssertionError("evaluated again")

    monkeypatch.setattr(scores_module, "evaluate", no_evaluation)
    point = PointScorer(load_family(tiny_demo)).score_safelora("harmful", layers=int(row["projected_tensors"]),
                                                               profile="smoke")
    assert point["layers"] == row["projected_tensors"] and point["threshold"] is None
    assert [point[s] for s in SCORES] == pytest.approx([row[s] for s in SCORES])


def _outcomes(rng, utility, refusal, prompts):
    def draw(rate):
        values = np.zeros(prompts)
        values[rng.permutation(prompts)[:round(rate * prompts)]] = 1.0
        return values
    return {"utility": draw(utility), "refusal": draw(refusal)}


def _point(rng, prompts, utility, refusal, **fields):
    outcomes = _outcomes(rng, utility, refusal, prompts)
    return {**fields, "utility_accuracy": outcomes["utility"].mean(), "refusal_rate": outcomes["refusal"].mean(),
            "outcomes": outcomes}


def _defence_bundle(name, defended, orth_alignment, orth_random, prompts=400, outcomes=True):
    """Contaminated fine-tune at utility 0.6 and refusal 0.2; each method a list of (utility, refusal) points."""
    rng = np.random.default_rng(0)
    safelora = [_point(rng, prompts, 0.6, 0.2, variant="contaminated", threshold=-0.1, projected_tensors=0)]
    safelora += [_point(rng, prompts, u, r, variant="contaminated", threshold=0.1 * (i + 1), projected_tensors=i + 1)
                 for i, (u, r) in enumerate(defended)]
    grid = [_point(rng, prompts, u, r, variant="contaminated", method="orth", subspace=subspace, frac=0.2 * (i + 1))
            for subspace, points in (("alignment", orth_alignment), ("random", orth_random))
            for i, (u, r) in enumerate(points)]
    tables = {"safelora": pd.DataFrame(safelora), "projection": pd.DataFrame(grid)}
    if not outcomes:
        tables = {k: v.drop(columns="outcomes") for k, v in tables.items()}
    write_bundle(name, _manifest(name), MEMBER_SCORES, tables)
    return Bundle.load(name)


SELECTIVE = [(0.58, 0.4), (0.56, 0.5), (0.54, 0.6), (0.52, 0.7)]  # loses 0.2 utility, regains 1.4 refusal
UNSELECTIVE = [(0.5, 0.25), (0.4, 0.3), (0.3, 0.35), (0.2, 0.4)]  # loses 1.0 utility, regains 0.5 refusal


def test_a_selective_defence_does_not_support_the_finding():
    finding = subspace_defence(_defence_bundle("selective", SELECTIVE, UNSELECTIVE, UNSELECTIVE))
    assert finding.supported is False and finding.threshold == SELECTIVITY_MARGIN
    assert finding.statistic == pytest.approx((1.4 / 0.2) / (0.5 / 1.0))
    assert finding.ci[0] > SELECTIVITY_MARGIN and finding.ci[0] < finding.statistic < finding.ci[1]
    assert set(finding.data["method"]) == {"Safe LoRA", "orth · random", "orth · alignment"}


def test_a_defence_like_a_random_subspace_supports_the_finding():
    finding = subspace_defence(_defence_bundle("random-like", UNSELECTIVE, UNSELECTIVE, UNSELECTIVE))
    assert finding.statistic == pytest.approx(1.0)
    assert finding.ci[0] < 1.0 < finding.ci[1] < SELECTIVITY_MARGIN + 1
    # An interval that reaches past the margin cannot support the claim on its own: three-way verdict.
    assert finding.verdict == (SUPPORTS if finding.ci[1] <= SELECTIVITY_MARGIN else INCONCLUSIVE)
    assert "1.00" in finding.measured and "1.25x" in finding.measured


def test_without_per_prompt_outcomes_there_is_no_interval():
    bundle = _defence_bundle("no-outcomes", SELECTIVE, UNSELECTIVE, UNSELECTIVE, outcomes=False)
    finding = subspace_defence(bundle)
    assert finding.ci is None and finding.statistic == pytest.approx(14.0) and finding.verdict == INCONCLUSIVE
    comparison = compare_with_orth(bundle, "contaminated")
    assert comparison.verdict == "inconclusive" and "no interval" in comparison.sentence()


def test_comparison_with_orth_says_more_less_or_inconclusive():
    more = compare_with_orth(_defence_bundle("more", SELECTIVE, UNSELECTIVE, UNSELECTIVE), "contaminated")
    assert more.safelora[0] == pytest.approx(0.2 / 1.4) and more.orth[0] == pytest.approx(1.0 / 0.5)
    assert more.verdict == "more" and "keeps more utility per point of refusal regained" in more.sentence()
    assert more.difference[1][0] > 0 and more.points == (4, 4)
    less = compare_with_orth(_defence_bundle("less", UNSELECTIVE, SELECTIVE, UNSELECTIVE), "contaminated")
    assert less.verdict == "less" and less.difference[1][1] < 0
    close = [(0.5, 0.3), (0.45, 0.35)]
    noisy = compare_with_orth(_defence_bundle("noisy", close, [(0.49, 0.3), (0.44, 0.35)], UNSELECTIVE, prompts=20),
                              "contaminated")
    assert noisy.verdict == "inconclusive" and "includes zero" in noisy.sentence()


def test_missing_safelora_results_are_reported_not_raised():
    rng = np.random.default_rng(0)
    grid = pd.DataFrame([_point(rng, 10, 0.5, 0.5, variant="contaminated", method="orth", subspace="random", frac=0.5)])
    write_bundle("old", _manifest("old"), MEMBER_SCORES, {"projection": grid})
    bundle = Bundle.load("old")
    finding = subspace_defence(bundle)
    assert finding.supported is None and "no Safe LoRA points" in finding.measured
    assert compare_with_orth(bundle, "contaminated") is None


def test_sixth_finding_is_listed_on_a_precomputed_family(tiny):
    measured = findings(tiny)
    assert [f.number for f in measured] == [1, 2, 3, 4, 5, 6]
    assert measured[-1].title.startswith("A subspace defence (Safe LoRA)") and measured[-1].measured


def test_sixth_finding_in_the_html_report_with_its_chart():
    bundle = _defence_bundle("report-six", SELECTIVE, UNSELECTIVE, UNSELECTIVE)
    same = pd.DataFrame([{"variant": "contaminated", "method": "same", "subspace": s, "frac": 0.2,
                          "utility_accuracy": 0.5, "refusal_rate": 0.3} for s in ("alignment", "random")])
    tables = {"safelora": bundle.table("safelora"), "projection": pd.concat([bundle.table("projection"), same])}
    curves = pd.DataFrame([{"variant": "contaminated", "method": "same", "subspace": s, "frac": f,
                            "energy_kept_ratio": f, "cosine_task_kept": 0.5, "k_total": 1}
                           for s in ("alignment", "random", "random-k") for f in (0.2, 0.4, 0.6)])
    mso = pd.DataFrame([{"a": "useful", "b": "harmful", "cols": 8, "energy_frac": 0.5, "mso": 0.3, "mso_random": 0.1}])
    scores = {"contaminated": {"utility_accuracy": 0.6, "refusal_rate": 0.2, "over_refusal": 0.0,
                               "target_logprob": -1.0}}
    write_bundle("report-six", {"family": "report-six", "created": "2026-11-25", "command": "test", "profile": "smoke"},
                 scores, {**tables, "energy_curves": curves, "update_mso": mso})
    page = render(Bundle.load("report-six"))
    sixth = page[page.index("6. A subspace defence (Safe LoRA)"):]
    assert "does not support the paper" in sixth and "<svg" in sixth
