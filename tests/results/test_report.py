"""`report --json` on a precomputed demo-style family: strict JSON, intervals and counts, findings with verdicts."""
import json

import pytest

from explorer.cli import main
from explorer.results.findings import INCONCLUSIVE, REFUTES, SUPPORTS, UNMEASURED


def _reject(constant):
    raise ValueError(f"not strict JSON: {constant}")


@pytest.fixture(scope="module")
def report(tiny_demo):
    import io
    from contextlib import redirect_stdout

    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["report", str(tiny_demo), "--json"]) == 0
    return json.loads(out.getvalue(), parse_constant=_reject)


def test_every_member_score_has_an_interval_and_a_count(report):
    for member, scores in report["models"].items():
        assert scores["counts"]["refusal"] > 0
        lo, hi = scores["refusal_rate_ci"]
        assert 0 <= lo <= scores["refusal_rate"] <= hi <= 1, member
        assert scores["target_logprob_ci"][0] <= scores["target_logprob"] <= scores["target_logprob_ci"][1]


def test_every_grid_row_has_its_side_intervals_and_counts(report):
    assert report["projection"] and report["grid"]["side"] == "left"
    for row in report["projection"]:
        assert row["side"] == "left" and row["counts"]["utility"] > 0
        lo, hi = row["utility_accuracy_ci"]
        assert lo <= row["utility_accuracy"] <= hi


def test_findings_have_three_way_verdicts(report):
    assert [f["number"] for f in report["findings"]][:5] == [1, 2, 3, 4, 5]
    for finding in report["findings"]:
        assert finding["verdict"] in (SUPPORTS, REFUTES, INCONCLUSIVE, UNMEASURED)
        assert set(finding) >= {"statistic", "ci", "threshold", "text"}
        if finding["ci"] is not None:
            assert finding["ci"][0] <= finding["ci"][1]


def test_every_mso_lies_in_the_unit_interval(report):
    for table in ("update_mso", "activation_mso"):
        values = [row["mso"] for row in report[table] if row["mso"] is not None]
        assert values and all(0.0 <= v <= 1.0 for v in values), table
