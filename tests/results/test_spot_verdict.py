"""The spot-check verdict on planted candidates whose answer is known, and the CLI that can gate a release:
a harmful-like update resembles harmful, a useful-like one useful, and a random one of the same norm neither."""
import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from builders import TINY, low_rank, write_family
from safetensors.torch import save_file
from transformers import LlamaConfig

from explorer.cli import main
from explorer.results.spot_verdict import LIFT, MARGIN, SpotVerdict, spot_verdict


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    """A family whose useful and harmful updates are independent low-rank updates, and three candidates fine-tuned
    from its aligned model: the harmful update plus a little noise, the useful one plus a little noise, and a
    random low-rank update of the same norm."""
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("planted")
    config = LlamaConfig(**TINY)
    torch.manual_seed(0)
    base = {k: v.detach().clone() for k, v in AutoModelForCausalLM.from_config(config).state_dict().items()}
    gen = torch.Generator().manual_seed(1)
    aligned = {k: v + low_rank(v.shape, 4, 0.05, gen) for k, v in base.items()}
    updates = {name: {k: low_rank(v.shape, 4, 0.05, gen) for k, v in aligned.items()} for name in ("useful", "harmful")}
    members = {"base": base, "aligned": aligned,
               **{name: {k: aligned[k] + u[k] for k in aligned} for name, u in updates.items()}}
    family = write_family(root, config, members, name="planted")
    candidates = {}
    for name, update in (("harmful-like", updates["harmful"]), ("useful-like", updates["useful"]),
                         ("random", {k: low_rank(v.shape, 4, 0.05, gen) for k, v in aligned.items()})):
        state = {k: aligned[k] + update[k] + low_rank(v.shape, 4, 0.005, gen) for k, v in aligned.items()}
        folder = root / "candidates" / name
        folder.mkdir(parents=True)
        save_file({k: v.contiguous() for k, v in state.items()}, folder / "model.safetensors")
        config.save_pretrained(folder)
        candidates[name] = folder
    return family, candidates


@pytest.mark.parametrize("candidate,expected", [("harmful-like", "harmful"), ("useful-like", "useful"),
                                                ("random", None)])
def test_planted_candidates_get_the_known_verdict(planted, capsys, candidate, expected):
    family, candidates = planted
    assert main(["spot-check", str(family), str(candidates[candidate]), "--json"]) == 0
    report = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(f"not strict JSON: {c}"))
    assert report["resembles"] == expected
    assert [r["reference"] for r in report["references"]] == ["useful", "harmful"]
    assert report["rule"] == {"lift_at_least": LIFT, "margin_at_least": MARGIN, "level": 0.95}
    for ref in report["references"]:
        assert ref["mso"] > 0 and ref["baseline"] > 0 and len(ref["lift_ci"]) == 2
        assert ref["lift_ci"][0] <= ref["lift"] <= ref["lift_ci"][1]
    if expected:
        chosen = next(r for r in report["references"] if r["reference"] == expected)
        assert chosen["clear_of_baseline"] and chosen["clear_of_others"] and chosen["margin"] > 0.5
    else:
        assert all(not r["clear_of_baseline"] for r in report["references"])  # both near chance
    assert {"frac", "subspace", "energy_kept_ratio"} <= set(report["energy"][0])


@pytest.mark.parametrize("candidate,code", [("harmful-like", 3), ("useful-like", 0), ("random", 0)])
def test_fail_on_harmful_gates_a_release(planted, capsys, candidate, code):
    family, candidates = planted
    assert main(["spot-check", str(family), str(candidates[candidate]), "--fail-on", "harmful"]) == code
    out = capsys.readouterr().out
    assert out.startswith("It resembles") and "**" not in out


def test_bad_input_exits_2(planted, capsys, tmp_path):
    family, _ = planted
    assert main(["spot-check", str(family), str(tmp_path / "missing"), "--fail-on", "harmful"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    with pytest.raises(SystemExit) as exited:
        main(["spot-check", str(family), str(tmp_path), "--fail-on", "nope"])
    assert exited.value.code == 2


def _matrices(values: dict[str, list[tuple[float, float]]]) -> pd.DataFrame:
    return pd.DataFrame([{"reference": ref, "group": f"m{i}", "mso": m, "mso_random": b}
                         for ref, rows in values.items() for i, (m, b) in enumerate(rows)])


def test_two_references_alike_are_neither_and_the_verdict_round_trips():
    alike = _matrices({"useful": [(0.6, 0.1), (0.62, 0.1), (0.58, 0.1)] * 10,
                       "harmful": [(0.6, 0.1), (0.61, 0.1), (0.59, 0.1)] * 10})
    verdict = spot_verdict(alike, ["useful", "harmful"])
    assert verdict.resembles is None and all(r.clear_of_baseline for r in verdict.references)
    assert not any(r.clear_of_others for r in verdict.references)
    assert "resembles none of the references" in verdict.sentence() and verdict.matrices == 30
    assert SpotVerdict.from_dict(json.loads(json.dumps(verdict.as_dict()))) == verdict


def test_a_single_reference_gives_no_verdict():
    """Distinct fine-tunes of one model overlap far above chance, so one reference alone cannot carry a verdict."""
    verdict = spot_verdict(_matrices({"harmful": [(0.5, 0.05), (0.45, 0.05), (0.55, 0.05)] * 10}), ["useful", "harmful"])
    assert verdict.resembles is None and verdict.references[0].clear_of_baseline
    assert verdict.sentence().startswith("No verdict: the family has 1 reference fine-tune of useful and harmful")
