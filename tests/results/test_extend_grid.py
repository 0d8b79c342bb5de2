"""`precompute --extend`: the grid points a bundle lacks are scored and added; everything else is kept."""
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from explorer.cli import main
from explorer.results.bundle import Bundle
from explorer.results.findings import findings

KEYS = ["variant", "method", "subspace", "frac"]


@pytest.fixture
def broad_copy(tiny_broad, tmp_path, monkeypatch):
    """tiny_broad's bundle (contaminated at ρ 0.25 and 0.5) in a private cache, so that extending it changes
    nothing the other tests read; scored points are still read from the session's cache."""
    shared = Path(os.environ["EXPLORER_CACHE_DIR"])
    cache = tmp_path / "cache"
    shutil.copytree(shared / "families" / "tiny-broad", cache / "families" / "tiny-broad")
    shutil.copytree(shared / "results", cache / "results")
    monkeypatch.setenv("EXPLORER_CACHE_DIR", str(cache))
    return tiny_broad


def test_extend_scores_the_missing_points_and_keeps_every_other_result(broad_copy, capsys):
    before = Bundle.load("tiny-broad")
    old_grid, old_spectra = before.table("projection"), before.table("spectra")
    assert main(["precompute", str(broad_copy), "--extend", "--grid-variants", "contaminated", "useful",
                 "--grid-fracs", "0.5", "0.75"]) == 0
    assert "18 projection points added" in capsys.readouterr().err  # useful at 0.5, 0.75; contaminated at 0.75
    after = Bundle.load("tiny-broad")
    grid = after.table("projection")
    assert len(grid) == len(old_grid) + 18
    kept = grid.merge(old_grid, on=KEYS, suffixes=("", "_old"))
    assert len(kept) == len(old_grid)
    pd.testing.assert_series_equal(kept["refusal_rate"], kept["refusal_rate_old"], check_names=False)
    assert set(grid.loc[grid["variant"] == "useful", "frac"]) == {0.5, 0.75}
    assert set(grid.loc[grid["variant"] == "contaminated", "frac"]) == {0.25, 0.5, 0.75}
    assert (grid["side"] == "left").all() and grid["n_refusal"].notna().all()
    for table in ("removed_by_layer", "projection_samples", "projection_outcomes"):
        frame = after.table(table)
        points = frame[frame["method"] != "unprojected"].groupby(KEYS).ngroups
        assert points == len(grid), table
    pd.testing.assert_frame_equal(after.table("spectra"), old_spectra)
    assert after.scores == before.scores
    spec = after.manifest["grid"]
    assert spec["variants"] == ["contaminated", "useful"] and spec["fracs"] == [0.25, 0.5, 0.75]
    assert spec["points"] == len(grid) == 30
    assert after.manifest["command"].startswith(before.manifest["command"] + " && python -m explorer precompute")
    assert after.manifest["command"].endswith("--extend")
    assert after.manifest["extensions"][0]["points"] == 18
    assert len(findings(after)) == 6
    json.loads((after.folder / "manifest.json").read_text())


def test_extend_with_nothing_missing_leaves_the_bundle_alone(broad_copy, capsys):
    manifest = (Bundle.load("tiny-broad").folder / "manifest.json").read_text()
    assert main(["precompute", str(broad_copy), "--extend", "--grid-variants", "contaminated",
                 "--grid-fracs", "0.25"]) == 0
    assert "already has every requested point; nothing to do" in capsys.readouterr().err
    assert (Bundle.load("tiny-broad").folder / "manifest.json").read_text() == manifest


@pytest.mark.parametrize("args,message", [
    (["--seed", "3"], "--seed 3 differs from the bundle's 0"),
    (["--grid-profile", "quick"], "--grid-profile quick differs from the bundle's smoke"),
    (["--profile", "full"], "--profile, --no-activations and --restart do not apply"),
    (["--grid-variants", "nope"], "nope not among the fine-tuned members of tiny-broad"),
])
def test_extend_refuses_points_that_would_not_compare_like_with_like(broad_copy, capsys, args, message):
    assert main(["precompute", str(broad_copy), "--extend", *args]) == 2
    assert message in capsys.readouterr().err


def test_extend_refuses_a_bundle_of_other_checkpoints(broad_copy, capsys):
    path = Bundle.load("tiny-broad").folder / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["members"]["useful"]["fingerprint"] = "0" * 20
    path.write_text(json.dumps(manifest))
    assert main(["precompute", str(broad_copy), "--extend"]) == 2
    assert "computed from another 'useful' checkpoint" in capsys.readouterr().err
    assert json.loads(path.read_text()) == manifest
