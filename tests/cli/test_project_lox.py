"""`python -m explorer project --method lox`: the engine's metrics, scores with intervals, a saved model, clear errors."""
import json

import pytest

from explorer.checkpoints.family import load_family
from explorer.cli import main
from explorer.evaluation.evaluate import SCORES
from explorer.weights.lox import lox_point


def _lox(capsys, family, *options) -> list[dict]:
    code = main(["project", str(family), "--method", "lox", *options, "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    return [json.loads(line) for line in out.out.splitlines()]


def test_every_alpha_and_rho_is_a_point_with_the_engine_metrics(llama_family, capsys):
    points = _lox(capsys, llama_family, "--alpha", "0.5", "1.25", "--frac", "0.1", "0.1")
    assert [(p["alpha"], p["frac"]) for p in points] == [(0.5, 0.1), (1.25, 0.1)]
    family = load_family(llama_family)
    assert points[1] == pytest.approx(lox_point(family, 1.25, 0.1))
    assert points[1]["relative_change"] == pytest.approx(2.5 * points[0]["relative_change"])


def test_evaluate_scores_the_extrapolated_model_and_save_writes_it(tiny_demo, capsys, tmp_path):
    [point] = _lox(capsys, tiny_demo, "--alpha", "1.25", "--frac", "0.25", "--evaluate", "smoke",
                   "--save", str(tmp_path / "lox"))
    assert point["method"] == "lox" and point["profile"] == "smoke"
    for score in SCORES:
        lo, hi = point[f"{score}_ci"]
        assert lo <= point[score] <= hi
    assert (tmp_path / "lox" / "model.safetensors").exists() and (tmp_path / "lox" / "config.json").exists()


@pytest.mark.parametrize("options,message", [
    (["--alpha", "1"], "--method lox needs --alpha and --frac"),
    (["--frac", "0.1"], "--method lox needs --alpha and --frac"),
    (["--alpha", "-1", "--frac", "0.1"], "LoX's α must be a number from 0 to 100"),
    (["--alpha", "1", "--frac", "1.5"], "1.5"),
    (["--alpha", "1", "--frac", "0.1", "--variant", "useful"], "takes --alpha and --frac, no --variant"),
    (["--alpha", "1", "--frac", "0.1", "--threshold", "0.3"], "--threshold and --layers belong to --method safelora"),
    (["--alpha", "1", "2", "--frac", "0.1", "--save", "x"], "--save writes one model"),
])
def test_bad_lox_options_are_one_line_and_exit_2(llama_family, capsys, options, message):
    code = main(["project", str(llama_family), "--method", "lox", *options])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and message in err


@pytest.mark.parametrize("argv,message", [
    (["--method", "lox", "orth", "--alpha", "1", "--frac", "0.1"], "--method lox cannot be combined"),
    (["--method", "orth", "--subspace", "alignment", "--frac", "0.1", "--alpha", "1", "--variant", "useful"],
     "--alpha and --save belong to --method lox"),
    (["--method", "orth", "--subspace", "alignment", "--frac", "0.1"], "--method orth needs --variant"),
])
def test_other_methods_refuse_lox_options(llama_family, capsys, argv, message):
    code = main(["project", str(llama_family), *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and message in err


def test_saving_into_an_existing_folder_is_refused_before_any_work(llama_family, capsys, tmp_path):
    code = main(["project", str(llama_family), "--method", "lox", "--alpha", "1", "--frac", "0.1", "--save",
                 str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "it exists; give a new folder" in err
