"""The committed demo results load without any checkpoint and meet the demo's targets (issue 3, section 3)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from explorer.evaluation.evaluate import SCORES
from explorer.results.bundle import Bundle

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "cache" / "families" / "demo"


@pytest.fixture(scope="module")
def demo():
    assert (DEMO / "manifest.json").exists(), "the demo's precomputed results are missing from cache/families/demo"
    return Bundle(DEMO)


def test_member_targets(demo):
    s = demo.scores
    assert all(s[m]["profile"] == "full" and s[m]["counts"]["refusal"] >= 100 for m in s)
    assert s["base"]["refusal_rate"] <= 0.20
    assert s["aligned"]["refusal_rate"] >= 0.90 and s["aligned"]["over_refusal"] <= 0.20
    assert s["harmful"]["refusal_rate"] <= 0.30
    assert s["useful"]["utility_accuracy"] >= s["aligned"]["utility_accuracy"] + 0.30
    assert s["useful"]["refusal_rate"] >= 0.70
    # Contaminated: its utility gain and refusal drop relative to aligned are measured (reported in the README).
    assert s["contaminated"]["utility_accuracy"] > s["aligned"]["utility_accuracy"]
    assert s["contaminated"]["refusal_rate"] < s["aligned"]["refusal_rate"]


def test_grid_has_metrics_and_scores_at_every_point(demo):
    grid = demo.table("projection")
    fracs = demo.manifest["grid"]["fracs"]
    assert len(grid) == 3 * 2 * 3 * len(fracs) and len(fracs) >= 6
    assert set(grid["subspace"]) == {"alignment", "random", "random-k"} and set(grid["method"]) == {"same", "orth"}
    assert grid[list(SCORES) + ["energy_kept_ratio"]].notna().all().all()
    assert set(grid["profile"]) == {demo.manifest["grid_profile"]}


def test_bundle_is_small_and_complete(demo):
    size = sum(f.stat().st_size for f in DEMO.iterdir())
    assert size < 20 * 2**20
    for table in ("spectra", "update_mso", "energy_curves", "activation_mso", "embeddings", "refusal_direction",
                  "probe", "prompts"):
        assert len(demo.table(table)), table


def test_report_reads_the_cache_without_checkpoints():
    env = {k: v for k, v in os.environ.items() if k != "EXPLORER_CACHE_DIR"}
    proc = subprocess.run([sys.executable, "-m", "explorer", "report", str(ROOT / "families" / "demo.toml"), "--json"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert set(report["models"]) == {"base", "aligned", "useful", "harmful", "contaminated"}
    assert {"refusal_rate", "utility_accuracy", "over_refusal", "target_logprob"} <= set(report["models"]["base"])
    row = report["projection"][0]
    assert {"variant", "method", "subspace", "frac", "energy_kept_ratio", "refusal_rate", "utility_accuracy"} <= set(row)
    assert {"member", "a", "b", "layer", "energy_frac", "mso", "mso_random"} <= set(report["activation_mso"][0])
    assert {"member", "layer", "gap", "cosine_with_alignment_update"} <= set(report["refusal_direction"][0])
    assert {"member", "layer", "accuracy"} <= set(report["probe"][0])
