"""`python -m explorer project --method safelora`: the engine's metrics as JSON, scores with intervals, clear errors."""
import json

import pytest

from explorer.checkpoints.family import load_family
from explorer.cli import main
from explorer.evaluation.evaluate import SCORES
from explorer.weights.safelora import safelora_stats


def _project(capsys, family, *options):
    code = main(["project", str(family), "--variant", "useful", "--method", "safelora", *options, "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)


@pytest.mark.parametrize("options,selection", [(["--threshold", "0.4"], {"threshold": 0.4}),
                                               (["--layers", "5"], {"layers": 5})])
def test_json_carries_the_engine_metrics(llama_family, capsys, options, selection):
    point = _project(capsys, llama_family, *options)
    stats = safelora_stats(load_family(llama_family), "useful")
    expected = stats.point(**selection)
    assert {k: point[k] for k in expected} == pytest.approx(expected)
    assert set(point["projected"]) == set(stats.projected(**selection))
    assert point["method"] == "safelora" and point["candidate_tensors"] == 14
    assert point["threshold"] == selection.get("threshold") and point["layers"] == selection.get("layers")


def test_evaluate_prints_scores_with_intervals(tiny_demo, capsys):
    point = _project(capsys, tiny_demo, "--layers", "2", "--evaluate", "smoke")
    assert point["projected_tensors"] == 2 and point["profile"] == "smoke"
    for score in SCORES:
        lo, hi = point[f"{score}_ci"]
        assert lo <= point[score] <= hi
    assert point["counts"]["refusal"] == 8 and len(point["outcomes"]["utility"]) == point["counts"]["utility"]


@pytest.mark.parametrize("options,message", [
    ([], "exactly one of a threshold τ (--threshold) or a number of tensors N (--layers)"),
    (["--threshold", "0.3", "--layers", "2"], "not both"),
    (["--layers", "0"], "whole number >= 1, got 0"),
    (["--layers", "99"], "cannot project N = 99 tensors: this update has 14 candidates"),
    (["--threshold", "1.5"], "threshold τ = 1.5 is outside [-1, 1]"),
    (["--threshold", "0.3", "--frac", "0.5"], "--subspace and --frac belong to the projection methods"),
])
def test_bad_safelora_options_are_one_line_and_exit_2(llama_family, capsys, options, message):
    code = main(["project", str(llama_family), "--variant", "useful", "--method", "safelora", *options])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and message in err


@pytest.mark.parametrize("options,message", [
    (["--subspace", "alignment", "--frac", "0.5", "--threshold", "0.3"], "--threshold and --layers belong to --method "
                                                                          "safelora"),
    (["--subspace", "alignment"], "--method orth needs --subspace and --frac"),
])
def test_projection_methods_refuse_safelora_options(llama_family, capsys, options, message):
    code = main(["project", str(llama_family), "--variant", "useful", "--method", "orth", *options])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err


def test_projection_methods_still_print_their_point(llama_family, capsys):
    code = main(["project", str(llama_family), "--variant", "useful", "--method", "orth", "--subspace", "random",
                 "--frac", "0.5", "--json"])
    point = json.loads(capsys.readouterr().out)
    assert code == 0 and point["method"] == "orth" and 0 < point["energy_kept_ratio"] < 1
