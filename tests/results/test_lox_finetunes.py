"""LoX against the unprotected fine-tune: `demo lox` fine-tunes the extrapolated aligned model with the contaminated
member's recipe, scores both, and stores a `lox` table that `report --json` and `report --compare` read."""
import json
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from explorer.checkpoints.family import load_family
from explorer.cli import main
from explorer.demo.lox import lox_finetune
from explorer.evaluation.evaluate import SCORES
from explorer.evaluation.stats import paired_difference
from explorer.results.bundle import Bundle, bundle_dir
from explorer.results.lox import FINETUNED, headline, lox_outcomes


@pytest.fixture(scope="module")
def lox_family(tiny_demo, tmp_path_factory) -> Path:
    """tiny_demo's members under another name, with a copy of its results, and tiny's family file beside it."""
    spec = tomllib.loads(tiny_demo.read_text())
    absolute = {k: str((tiny_demo.parent / v).resolve()) for k, v in spec["finetuned"].items()}
    folder = tmp_path_factory.mktemp("lox")
    for name in ("tiny-lox", "tiny"):  # tiny beside it, so that the Overview offers it for comparison
        (folder / f"{name}.toml").write_text(
            f'name = "{name}"\nbase = "{(tiny_demo.parent / spec["base"]).resolve()}"\n'
            f'aligned = "{(tiny_demo.parent / spec["aligned"]).resolve()}"\n[finetuned]\n'
            + "".join(f'{k} = "{v}"\n' for k, v in absolute.items()))
    path = folder / "tiny-lox.toml"
    shutil.copytree(bundle_dir("tiny"), bundle_dir("tiny-lox"))
    manifest = bundle_dir("tiny-lox") / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "family": "tiny-lox"}))
    return path


def test_alpha_zero_reproduces_the_contaminated_member_bit_for_bit(lox_family):
    """The LoX fine-tune differs from the contaminated member only where it starts: at α = 0 it is that member."""
    family = load_family(lox_family)
    folder = lox_finetune(family, 0.0, 0.25)
    made, member = (load_file(f / "model.safetensors") for f in (folder, family.store("contaminated").folder))
    assert made.keys() == member.keys() and all(np.array_equal(made[k], member[k]) for k in made)
    shutil.rmtree(folder)


@pytest.fixture(scope="module")
def stored(lox_family) -> tuple[Path, set[str], list[str]]:
    """`demo lox` run once on lox_family: its family file, the bundle's tables before, and what it printed."""
    import contextlib
    import io

    before = {p.name for p in bundle_dir("tiny-lox").glob("*.parquet")}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["demo", "lox", str(lox_family), "--setting", "1.25:0.25", "4:0.25"]) == 0
    return lox_family, before, out.getvalue().strip().splitlines()


def test_demo_lox_stores_a_table_that_reports_read(stored, tiny_demo, capsys):
    lox_family, before, printed = stored
    assert len(printed) == 2 and all(line.startswith("LoX at α = ") for line in printed)
    bundle = Bundle.load("tiny-lox")
    assert {p.name for p in bundle.folder.glob("*.parquet")} == before | {"lox.parquet"}
    entry = bundle.manifest["lox"]
    assert entry["same_checkpoints"] is True and entry["recipe"]["seed"] == 3 and entry["recipe"]["steps"] == 2
    assert entry["command"] == f"python -m explorer demo lox {lox_family} --setting 1.25:0.25 4:0.25"
    table = bundle.table("lox")
    assert sorted(zip(table["alpha"], table["model"])) == [
        (0.0, "extrapolated"), (0.0, "fine-tuned"), (1.25, "extrapolated"), (1.25, "fine-tuned"),
        (4.0, "extrapolated"), (4.0, "fine-tuned")]
    family = load_family(lox_family)
    control = table[(table["alpha"] == 0) & (table["model"] == FINETUNED)].iloc[0]
    assert control["fingerprint"] == family.store("contaminated").fingerprint()
    assert control["refusal_rate"] == bundle.scores["contaminated"]["refusal_rate"]

    report = json.loads(_run(capsys, "report", str(lox_family), "--json"))
    assert len(report["lox"]) == 6
    for row in report["lox"]:
        for score in SCORES:
            lo, hi = row[f"{score}_ci"]
            assert lo <= row[score] <= hi
        assert row["counts"]["refusal"] == 8
    strong = next(r for r in report["lox"] if r["alpha"] == 4.0 and r["model"] == "extrapolated")
    assert strong["relative_change"] > 0 and 0 < strong["alignment_energy_extrapolated"] <= 1

    outcomes = lox_outcomes(bundle)
    assert [(o.alpha, o.frac) for o in outcomes] == [(1.25, 0.25), (4.0, 0.25)]
    treated = table[(table["alpha"] == 4.0) & (table["model"] == FINETUNED)].iloc[0]
    expected = paired_difference(treated["outcomes"]["refusal"], control["outcomes"]["refusal"])
    assert outcomes[1].refusal[0] == pytest.approx(expected[0])
    assert outcomes[1].refusal[1] == pytest.approx(expected[1])
    assert outcomes[1].verdict in ("keeps more", "keeps less", "inconclusive")
    without = f"Refusal after the fine-tune: {control['refusal_rate']:.0%} without LoX"
    assert without in headline(outcomes) and headline(outcomes).count("α = ") == sum(
        o.verdict != "inconclusive" for o in outcomes)

    compared = json.loads(_run(capsys, "report", str(lox_family), "--compare", str(tiny_demo), "--json"))
    by_family = compared["comparison"]["lox"]
    assert [o["alpha"] for o in by_family["tiny-lox"]] == [1.25, 4.0], by_family
    assert by_family["tiny"] == [] and by_family["tiny-lox"][1]["refusal_difference_ci"] == list(outcomes[1].refusal[1])


def test_defences_view_and_overview_show_lox(stored, tiny_demo):
    from streamlit.testing.v1 import AppTest

    root = Path(__file__).resolve().parents[2]
    at = AppTest.from_file(str(root / "pages" / "2_Projection_lab.py"), default_timeout=180)
    at.session_state["family"] = str(stored[0])
    at.run()
    assert not at.exception and not at.error, at.exception or [e.value for e in at.error]
    assert "LoX" in [h.value for h in at.subheader]
    chart = next(c for c in at.get("vega_lite_chart") if "Before and after the same contaminated fine-tune"
                 in c.proto.spec)
    assert "unprotected (α = 0)" in chart.proto.spec or any(
        b"unprotected" in d.data.data for d in chart.proto.datasets)
    assert any(e.value.startswith(("No LoX setting of the 2 measured", "LoX keeps measurably more"))
               for e in (*at.success, *at.info))
    box = next(e for e in at.expander if e.label == "Each setting in words")
    assert sum("LoX at α = " in m.value for m in box.markdown) == 2
    table = next(d.value for d in at.dataframe if "Δ refusal (pts)" in d.value.columns)
    assert list(table["setting"]) == ["unprotected (α = 0)", "LoX α = 1.25, ρ = 0.25", "LoX α = 4, ρ = 0.25"]
    at.radio(key="lox_harm").set_value("target_logprob").run()
    assert not at.exception

    plain = AppTest.from_file(str(root / "pages" / "2_Projection_lab.py"), default_timeout=180)
    plain.session_state["family"] = str(tiny_demo)
    plain.run()
    assert any("These results have no LoX measurement" in e.value for e in plain.info)

    overview = AppTest.from_file(str(root / "app.py"), default_timeout=180)
    overview.session_state["family"] = str(stored[0])
    overview.session_state["compare_family"] = "tiny"
    overview.run()
    assert not overview.exception, overview.exception
    side = next(d.value for d in overview.dataframe if "Δ refusal (pts)" in d.value.columns)
    assert set(side["family"]) == {"tiny-lox"} and len(side) == 3
    assert any("tiny has no LoX measurement yet" in c.value for c in overview.caption)


def _run(capsys, *argv: str) -> str:
    code = main(list(argv))
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


@pytest.mark.parametrize("argv,message", [
    (["--setting", "1.25"], "is not ALPHA:RHO"),
    (["--setting=-1:0.1"], "is not ALPHA:RHO"),
    (["--setting", "1:0"], "is not ALPHA:RHO"),
])
def test_bad_settings_are_one_line(lox_family, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        main(["demo", "lox", str(lox_family), *argv])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and err.count("\n") == 0 and message in err


def test_a_family_without_a_build_log_is_one_line(llama_family, capsys, cache):
    from explorer.results.bundle import write_bundle

    write_bundle("tiny", {"family": "tiny", "created": "x", "command": "x", "profile": "smoke"}, {}, {})
    assert main(["demo", "lox", str(llama_family)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "build_log.json: no build configuration of 'contaminated'" in err
