"""Two families side by side: the findings table, the alignment-overlap contrast, the summary and the report."""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from explorer.results.bundle import Bundle
from explorer.results.family_comparison import (
    SharedGrid,
    alignment_overlap,
    comparison_summary,
    differing_findings,
    finding_table,
    largest_gap,
    on_shared_grid,
    overlap_contrast,
    statistic_text,
)
from explorer.results.findings import INCONCLUSIVE, REFUTES, SUPPORTS, Finding, findings
from explorer.results.html_report import render
from explorer.results.report import bundle_for, comparison

ROOT = Path(__file__).resolve().parents[2]


def _finding(number, verdict, statistic, ci=None, threshold=None):
    return Finding(number, "measured", verdict, pd.DataFrame(), statistic, ci, threshold)


@pytest.mark.parametrize("finding,text", [
    (_finding(1, SUPPORTS, 0.034, None, 0.10), "3.4 points; threshold 10.0 points"),
    (_finding(2, REFUTES, -0.05, (-0.09, -0.012), 0.0), "-5.0 points (95% CI -9.0 to -1.2); threshold 0.0 points"),
    (_finding(3, INCONCLUSIVE, 1.3, (0.8, 2.2), 1.25), "1.30x (95% CI 0.80 to 2.20); threshold 1.25x"),
    (_finding(6, REFUTES, float("inf"), None, 1.25), "–"),
    (_finding(4, SUPPORTS, None), "–"),
])
def test_statistic_text_keeps_each_findings_unit(finding, text):
    assert statistic_text(finding) == text


def test_finding_table_and_differences_put_families_side_by_side():
    measured = {"narrow": [_finding(1, SUPPORTS, 0.03, None, 0.1), _finding(3, REFUTES, 2.0, (1.6, 2.5), 1.25)],
                "broad": [_finding(1, SUPPORTS, 0.02, None, 0.1), _finding(3, INCONCLUSIVE, 1.3, (0.9, 1.8), 1.25)]}
    table = finding_table(measured)
    assert list(table.columns) == ["finding", "narrow: verdict", "narrow: statistic", "broad: verdict",
                                   "broad: statistic"]
    assert table["narrow: verdict"].tolist() == [SUPPORTS, REFUTES]
    assert table["broad: statistic"].iloc[1].startswith("1.30x (95% CI 0.90 to 1.80)")
    assert differing_findings(measured) == [3]
    overlaps = pd.DataFrame({"family": ["narrow", "narrow", "broad", "broad"], "update": ["useful", "harmful"] * 2,
                             "mso": [0.1, 0.2, 0.3, 0.3], "mso_random": [0.05] * 4})
    assert overlap_contrast(overlaps) == pytest.approx({"narrow": 2.0, "broad": 1.0})
    summary = comparison_summary(measured, overlaps)
    assert "Verdicts differ on finding 3 (**narrow** does not support, **broad** inconclusive)." in summary
    assert "**narrow** 2.00x, **broad** 1.00x" in summary


def test_largest_gap_compares_the_families_at_shared_points_only():
    frame = pd.DataFrame({"family": ["a", "a", "b", "b", "b"], "frac": [0.1, 0.2, 0.1, 0.2, 0.3],
                          "value": [0.5, 0.6, 0.52, 0.5, 0.9]})
    assert largest_gap(frame, "value", ["frac"]) == pytest.approx(0.1)
    assert largest_gap(frame[frame["family"] == "a"], "value", ["frac"]) is None


def test_alignment_overlap_reads_the_weight_mso_at_half_energy(tiny_demo):
    bundle = bundle_for(tiny_demo)
    frame = alignment_overlap(bundle)
    mso = bundle.table("update_mso")
    harmful = mso[(mso["a"] == "harmful") & (mso["b"] == "alignment") & (mso["cols"] > 1)
                  & (mso["energy_frac"].round(6) == 0.5)]
    assert set(frame["update"]) == {"useful", "harmful", "contaminated"}
    assert frame.set_index("update").loc["harmful", "mso"] == pytest.approx(harmful["mso"].mean())


def test_report_and_html_cover_both_families(tiny_demo, tiny_broad):
    result = comparison([tiny_demo, tiny_broad])
    assert result["families"] == ["tiny", "tiny-broad"]
    assert [len(result["findings"][f]) for f in result["families"]] == [6, 6]
    assert {r["family"] for r in result["alignment_overlap"]} == {"tiny", "tiny-broad"}
    page = render(bundle_for(tiny_demo), compare={"tiny-broad": bundle_for(tiny_broad)})
    assert "Safety subspaces: tiny and tiny-broad" in page and "<h2>Side by side</h2>" in page
    assert "<th>tiny-broad: verdict</th>" in page and page.count("<svg") >= 2 * 6
    assert "<script src" not in page and "http://" not in page.split("</head>")[1].replace("http://www.w3.org", "")
    assert "findings 2, 3 and 6 are measured here on the ρ values both grids score (0.5)" in page
    proc = subprocess.run([sys.executable, "-m", "explorer", "report", str(tiny_demo), "--json", "--compare",
                           str(tiny_broad)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["comparison"]["families"] == ["tiny", "tiny-broad"]
    assert result["shared_grid_fracs"] == [0.5] and comparison([tiny_demo, tiny_demo])["shared_grid_fracs"] is None


def test_families_with_different_grids_are_compared_on_the_points_they_share(tiny_demo, tiny_broad):
    broad, demo = bundle_for(tiny_broad), bundle_for(tiny_demo)
    assert on_shared_grid({"a": demo, "b": demo}) == ({"a": demo, "b": demo}, None)
    shared, fracs = on_shared_grid({"tiny": demo, "tiny-broad": broad})
    assert fracs == (0.5,) and isinstance(shared["tiny-broad"], SharedGrid) and shared["tiny"] is demo
    assert sorted(broad.table("projection")["frac"].unique()) == [0.25, 0.5]
    for table in ("projection", "removed_by_layer", "projection_samples"):
        assert set(shared["tiny-broad"].table(table)["frac"]) == {0.5}, table
    outcomes, whole = shared["tiny-broad"].table("projection_outcomes"), broad.table("projection_outcomes")
    assert set(outcomes["frac"].dropna()) == {0.5}
    assert len(outcomes) == len(whole[whole["frac"].isna() | (whole["frac"] == 0.5)]) < len(whole)
    assert len(shared["tiny-broad"].table("safelora")) == len(broad.table("safelora")) > 0


def test_members_carry_style_adoption_with_its_interval(tiny_broad):
    scores = Bundle.load("tiny-broad").scores
    for member in ("base", "aligned"):
        assert 0 <= scores[member]["style_adoption"] <= 1 and scores[member]["counts"]["style"] == 4
        assert len(scores[member]["style_adoption_ci"]) == 2
    assert len(findings(Bundle.load("tiny-broad"))) == 6


def test_a_grid_of_some_variants_scores_those_only_and_safelora_every_variant(tiny_broad):
    bundle = Bundle.load("tiny-broad")
    assert set(bundle.table("projection")["variant"]) == {"contaminated"}
    assert set(bundle.table("safelora")["variant"]) == {"useful", "harmful", "contaminated"}
    assert set(bundle.table("safelora_cosines")["variant"]) == {"useful", "harmful", "contaminated"}
    assert bundle.manifest["grid"]["variants"] == ["contaminated"]
    proc = subprocess.run([sys.executable, "-m", "explorer", "precompute", str(tiny_broad), "--grid-variants",
                           "contaminated", "nope"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2 and "nope not among the fine-tuned members of tiny-broad" in proc.stderr
