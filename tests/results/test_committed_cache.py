"""The committed demo results (demo and demo-broad) load without any checkpoint and meet the demo targets."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from explorer.evaluation.evaluate import SCORES
from explorer.results.bundle import Bundle
from explorer.results.findings import INCONCLUSIVE, REFUTES, SUPPORTS, UNMEASURED, findings
from explorer.results.spot_example import spot_example
from explorer.results.stages import GRID_FRACS

ROOT = Path(__file__).resolve().parents[2]
FAMILIES = ("demo", "demo-broad")
# Where people slide the rank control: ρ = 0.01, then every 0.05, then 0.99 (the Makefile's DENSE_FRACS).
DENSE_FRACS = (0.01, *(round(0.05 * i, 2) for i in range(1, 20)), 0.99)


@pytest.fixture(scope="module", params=FAMILIES)
def demo(request):
    folder = ROOT / "cache" / "families" / request.param
    assert (folder / "manifest.json").exists(), f"the precomputed results are missing from {folder}"
    return Bundle(folder)


def test_member_targets(demo):
    s = demo.scores
    assert all(s[m]["profile"] == "full" and s[m]["counts"]["refusal"] >= 100 for m in s)
    assert all(s[m]["counts"]["utility"] >= 100 and s[m]["refusal_rate_ci"] is not None for m in s)
    assert s["base"]["refusal_rate"] <= 0.20
    assert s["aligned"]["refusal_rate"] >= 0.90 and s["aligned"]["over_refusal"] <= 0.20
    assert s["harmful"]["refusal_rate"] <= 0.30
    assert s["useful"]["utility_accuracy"] >= s["aligned"]["utility_accuracy"] + 0.30
    # Contaminated: its utility gain and refusal drop relative to aligned are measured (reported in the README).
    assert s["contaminated"]["utility_accuracy"] > s["aligned"]["utility_accuracy"]
    assert s["contaminated"]["refusal_rate"] < s["aligned"]["refusal_rate"]


def test_style_adoption_separates_the_broad_alignment(demo):
    s = demo.scores
    assert all(s[m]["counts"]["style"] >= 60 and len(s[m]["style_adoption_ci"]) == 2 for m in s)
    assert s["base"]["style_adoption"] == 0
    if demo.manifest["family"] == "demo-broad":
        assert s["aligned"]["style_adoption"] >= 0.80
    else:
        assert s["aligned"]["style_adoption"] == 0


def test_grid_has_metrics_scores_and_outcomes_at_every_point(demo):
    grid, spec = demo.table("projection"), demo.manifest["grid"]
    assert len(grid) == spec["points"] and set(grid["frac"].round(6)) == set(spec["fracs"])
    assert set(grid["variant"]) == set(spec["variants"]) and "contaminated" in spec["variants"]
    assert set(grid["subspace"]) == {"alignment", "random", "random-k"} and set(grid["method"]) == {"same", "orth"}
    assert set(grid["side"]) == {"left"} and set(grid["profile"]) == {"full"}
    assert grid[list(SCORES) + ["energy_kept_ratio"]].notna().all().all()
    assert (grid["n_refusal"] >= 100).all() and (grid["n_utility"] >= 100).all()
    outcomes = demo.table("projection_outcomes")
    points = outcomes[outcomes["method"] != "unprojected"].groupby(["variant", "method", "subspace", "frac"]).ngroups
    assert points == len(grid)
    assert set(demo.table("energy_curves")["side"]) == {"left", "short"}
    safelora = demo.table("safelora")
    assert set(safelora["variant"]) >= set(spec["variants"])
    assert safelora.groupby("variant")["threshold"].nunique().min() >= 6


def test_each_grid_holds_the_default_grid_and_the_demos_contaminated_one_every_step_of_005(demo):
    grid = demo.table("projection")
    assert set(grid["variant"]) == {"useful", "harmful", "contaminated"}
    dense = {"contaminated"} if demo.manifest["family"] == "demo" else set()  # demo-broad: the default grid
    for variant, rows in grid.groupby("variant"):
        fracs = tuple(sorted(rows["frac"].round(6).unique()))
        assert fracs == (DENSE_FRACS if variant in dense else GRID_FRACS), variant
        assert len(rows) == 2 * 3 * len(fracs) and rows.groupby("frac").size().eq(6).all()
    safelora = demo.table("safelora")
    assert set(safelora["variant"]) == {"useful", "harmful", "contaminated"}
    assert safelora.groupby("variant")["threshold"].nunique().min() >= 6
    assert (safelora["counts"].map(lambda c: c["refusal"] >= 100 and c["utility"] >= 100)).all()


def test_findings_are_measured_with_intervals(demo):
    measured = {f.number: f for f in findings(demo)}
    assert len(measured) == 6 and all(f.verdict != UNMEASURED for f in measured.values())
    assert all(measured[n].ci is not None for n in (3, 6))
    assert all(measured[n].ci is not None for n in (2, 3) if measured[n].statistic is not None)
    assert measured[1].statistic is not None and measured[4].statistic is not None


def test_bundle_is_small_and_complete(demo):
    size = sum(f.stat().st_size for f in demo.folder.iterdir())
    assert size < 20 * 2**20
    tables = ["spectra", "update_mso", "energy_curves", "safelora_cosines", "projection_outcomes", "activation_mso",
              "embeddings", "refusal_direction", "probe", "prompts", "activation_responses"]
    for table in tables:
        assert len(demo.table(table)), table
    assert set(demo.table("activation_mso")["member"]) == {"base", "aligned", "useful", "harmful", "contaminated"}


def test_lox_rows_have_intervals_and_their_unprotected_pair(demo):
    lox = demo.table("lox")
    assert {0.0, 1.25, 4.0} <= set(lox["alpha"]) and set(lox["model"]) == {"extrapolated", "fine-tuned"}
    bounds = [f"{s}_{end}" for s in ("refusal_rate", "utility_accuracy") for end in ("lo", "hi")]
    assert lox[bounds].notna().all().all() and (lox["refusal_rate_lo"] <= lox["refusal_rate"] + 1e-12).all()


def _not_json(constant: str):
    raise AssertionError(f"report --json printed {constant}, which strict JSON parsers reject")


@pytest.mark.parametrize("family", FAMILIES)
def test_report_reads_the_cache_without_checkpoints(family):
    env = {k: v for k, v in os.environ.items() if k != "EXPLORER_CACHE_DIR"}
    proc = subprocess.run([sys.executable, "-m", "explorer", "report", str(ROOT / "families" / f"{family}.toml"),
                           "--json"], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout, parse_constant=_not_json)
    assert set(report["models"]) == {"base", "aligned", "useful", "harmful", "contaminated"}
    for entry in report["models"].values():
        assert all(entry[f"{s}_ci"] is not None for s in SCORES) and entry["counts"]["refusal"] >= 100
    assert len(report["projection"]) >= 144 and len(report["lox"]) >= 6
    for row in report["projection"]:
        assert all(row[f"{s}_ci"] is not None for s in SCORES), row
        assert row["counts"]["refusal"] >= 100 and row["counts"]["utility"] >= 100, row
    assert {f["verdict"] for f in report["findings"]} <= {SUPPORTS, REFUTES, INCONCLUSIVE, UNMEASURED}
    rows = [r for table in ("update_mso", "activation_mso") for r in report.get(table, [])]
    # Undefined (null) only where a set has no direction: centered states at the embeddings, where every prompt
    # ends in the same template token.
    has_directions = [r.get("k_a", 1) > 0 and r.get("k_b", 1) > 0 for r in rows]
    assert any(has_directions)
    assert all(0 <= r[k] <= 1 for r, ok in zip(rows, has_directions) if ok for k in ("mso", "mso_random"))
    assert all(r["mso"] is r["mso_random"] is None for r, ok in zip(rows, has_directions) if not ok)
    assert {"refusal_rate", "utility_accuracy", "over_refusal", "target_logprob", "style_adoption",
            "style_adoption_ci"} <= set(report["models"]["base"])
    row = report["projection"][0]
    assert {"variant", "method", "subspace", "frac", "energy_kept_ratio", "refusal_rate", "utility_accuracy",
            "refusal_rate_ci", "counts"} <= set(row)
    assert [f["number"] for f in report["findings"]] == [1, 2, 3, 4, 5, 6]
    assert {"member", "a", "b", "layer", "energy_frac", "mso", "mso_random"} <= set(report["activation_mso"][0])
    assert {"member", "layer", "gap", "cosine_with_alignment_update"} <= set(report["refusal_direction"][0])
    assert {"member", "layer", "accuracy"} <= set(report["probe"][0])


def test_the_demo_holds_a_spot_check_example_with_its_verdict_and_scores():
    example = spot_example(Bundle(ROOT / "cache" / "families" / "demo"))
    assert example is not None and example.verdict is not None and example.command.startswith("python -m explorer")
    assert len(example.summary) and len(example.overlaps) and len(example.energy)
    scores = example.scores
    assert scores["profile"] == "full" and scores["counts"]["refusal"] >= 100
    assert all(len(scores[f"{s}_ci"]) == 2 for s in SCORES)
