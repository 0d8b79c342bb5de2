"""Every page through Streamlit's AppTest on a tiny family with precomputed results."""
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]

PAGES = ["app.py", "pages/1_Weight_spectra.py", "pages/2_Projection_lab.py", "pages/3_Update_overlap.py",
         "pages/4_Activation_space.py", "pages/5_Spot-check.py"]
TIMEOUT = 120


def _run(page, family, **state):
    at = AppTest.from_file(str(ROOT / page), default_timeout=TIMEOUT)
    at.session_state["family"] = str(family)
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


def _charts(at):
    return [e for e in at.get("vega_lite_chart")]


def _chart_data(at, index=0):
    return _charts(at)[index].proto.spec


def _chart_rows(at, index=0):
    """The rows a chart draws (its Arrow datasets)."""
    import pandas as pd
    import pyarrow as pa

    sets = _charts(at)[index].proto.datasets
    return pd.concat([pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in sets], ignore_index=True)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_without_exceptions(tiny_demo, page):
    at = _run(page, tiny_demo)
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    if page != "pages/5_Spot-check.py":
        assert _charts(at), f"{page} shows no chart"
    assert "Glossary" in [e.label for e in at.sidebar.expander]


def test_overview_shows_six_findings_and_scores(tiny_demo):
    at = _run("app.py", tiny_demo)
    verdicts = [e.value for e in (*at.success, *at.warning, *at.info)]
    assert sum(v.startswith(("Supports", "Does not support", "Not measurable")) for v in verdicts) == 6
    assert len(at.dataframe) == 1 and set(at.dataframe[0].value.index) >= {"base", "aligned", "useful"}


def test_projection_slider_changes_what_is_shown(tiny_demo):
    at = _run("pages/2_Projection_lab.py", tiny_demo, proj_auto=False)  # off the grid: the neighbours, no live point
    before = [m.value for m in at.metric][:4]
    at.slider(key="proj_frac").set_value(0.5).run()
    at_half = [m.value for m in at.metric]
    after = at_half[:4]
    assert not at.exception and before != after
    assert len(at.metric) == 8  # 0.5 is in the grid: the four scores are shown at once
    at.slider(key="proj_frac").set_value(0.33).run()
    assert any("ρ = 0.33 is not a scored point" in i.value and "nothing is interpolated" in i.value for i in at.info)
    assert [m.value for m in at.metric][4:] == at_half[4:]  # the nearest scored point: 0.5, labelled as such
    assert _score_blocks(at) == ["**ρ = 0.50**, scored (smoke profile)"]
    at.selectbox(key="proj_method").set_value("orth").run()
    assert not at.exception


def _score_blocks(at) -> list[str]:
    return [m.value for m in at.markdown if m.value.startswith("**ρ = ")]


@pytest.mark.parametrize("frac", [0.01, 0.2, 0.25, 0.33, 0.5, 0.51, 0.99])
def test_every_position_of_the_control_shows_four_scores_without_checkpoints(tiny_broad, tmp_path, frac):
    """tiny_broad scores contaminated at ρ = 0.25 and 0.5 only: every other position shows the nearest scored
    points, each labelled with its own ρ, with intervals; the energy metrics stay those of the control's ρ."""
    at = _run("pages/2_Projection_lab.py", _without_checkpoints(tiny_broad, tmp_path), proj_frac=frac)
    assert not at.exception and not at.error
    expected = [f for f in (0.25, 0.5) if np.isclose(f, frac)] or \
        [f for f in ([max((f for f in (0.25, 0.5) if f < frac), default=None)]
                     + [min((f for f in (0.25, 0.5) if f > frac), default=None)]) if f is not None]
    assert _score_blocks(at) == [f"**ρ = {f:.2f}**, scored (smoke profile)" for f in expected]
    assert len(at.metric) == 4 + 4 * len(expected)
    assert sum(c.value.startswith("95% CI") for c in at.caption) == 4 * len(expected)
    live_buttons = [b for b in at.button if b.key == "compute_live"]
    assert [b.disabled for b in live_buttons] == ([] if np.isclose(expected, frac).any() else [True])
    energy = next(i for i, c in enumerate(_charts(at)) if "Task energy kept" in c.proto.spec)
    assert f"ρ = {frac:.2f}" in set(_chart_rows(at, energy).get("label", pd.Series(dtype=str)).dropna())
    tradeoff = next(i for i, c in enumerate(_charts(at)) if "Word-problem accuracy" in c.proto.spec)
    labels = set(_chart_rows(at, tradeoff).get("label", pd.Series(dtype=str)).dropna())
    on_grid = f"this point: same · alignment, ρ = {frac:.2f}"
    assert labels == ({on_grid} if len(expected) == 1 and np.isclose(expected[0], frac) else
                      {f"scored at ρ = {f:.2f}" for f in expected})


def test_a_position_off_the_grid_is_scored_live_as_the_control_moves(tiny_demo):
    """With checkpoints, moving ρ off the grid streams a live point (no click) and ends with its four scores."""
    at = _run("pages/2_Projection_lab.py", tiny_demo, proj_frac=0.5)
    assert at.toggle(key="proj_auto").value is True
    at.slider(key="proj_frac").set_value(0.42).run()
    assert not at.exception and not at.error and at.toggle(key="proj_auto").value is True
    assert _score_blocks(at) == ["**ρ = 0.42**, computed live (quick profile)"]
    assert sum(c.value.startswith("95% CI") for c in at.caption) == 4
    tradeoff = next(i for i, c in enumerate(_charts(at)) if "Word-problem accuracy" in c.proto.spec)
    assert "this point (live, ρ = 0.42)" in set(_chart_rows(at, tradeoff)["label"].dropna())


def _defence_map(at):
    return next(c.proto.spec for c in _charts(at) if "candidate tensors projected" in c.proto.spec)


def _projected(at):
    return next(m.value for m in at.markdown if m.value.startswith("At τ ="))


def test_defences_view_follows_the_threshold_and_variant(tiny_demo):
    at = _run("pages/2_Projection_lab.py", tiny_demo)
    assert not at.exception and not at.error
    before, map_before = _projected(at), _defence_map(at)
    curves = [c.proto for c in _charts(at) if '"Safe LoRA"' in c.proto.spec]
    settings = {s for chart in curves for data in chart.datasets
                for s in pa.ipc.open_stream(data.data.data).read_all().to_pandas().get("setting", [])}
    assert {"Safe LoRA", "orth · alignment", "orth · random", "orth · random-k"} <= settings
    assert any("fine-tune" in e.value for e in (*at.success, *at.warning, *at.info))
    at.slider(key="def_tau").set_value(at.slider(key="def_tau").min).run()
    assert not at.exception
    assert "**0 of 14** candidate tensors projected" in _projected(at) and _projected(at) != before
    assert _defence_map(at) != map_before
    at.selectbox(key="def_variant").set_value("useful").run()
    at.radio(key="def_harm").set_value("target_logprob").run()
    assert not at.exception and any("Utility against harm on useful" in m.value for m in at.markdown)


def test_projection_compute_live(tiny_demo):
    at = _run("pages/2_Projection_lab.py", tiny_demo, proj_frac=0.33, proj_auto=False)
    assert _score_blocks(at) == ["**ρ = 0.50**, scored (smoke profile)"]
    at.button(key="compute_live").click().run()
    assert not at.exception and not at.error
    assert len(at.metric) == 8 and _score_blocks(at) == ["**ρ = 0.33**, computed live (quick profile)"]


def test_overlap_and_spectra_selects_change_charts(tiny_demo):
    at = _run("pages/3_Update_overlap.py", tiny_demo)
    first = _chart_data(at)
    pairs = at.selectbox(key="mso_pair").options
    at.selectbox(key="mso_pair").set_value(pairs[-1]).run()
    assert not at.exception and _chart_data(at) != first
    at = _run("pages/1_Weight_spectra.py", tiny_demo)
    before = _chart_data(at, -1)
    at.selectbox(key="spectra_tensor").set_value("model.layers.1.mlp.down_proj.weight").run()
    assert not at.exception and _chart_data(at, -1) != before


def test_activation_layer_slider(tiny_demo):
    at = _run("pages/4_Activation_space.py", tiny_demo)
    before = _chart_data(at)
    at.slider(key="act_layer").set_value(1).run()
    assert not at.exception and _chart_data(at) != before


def test_bad_family_path_shows_an_error(tiny_demo, tmp_path):
    at = _run("app.py", tmp_path / "missing.toml")
    assert not at.exception and any("family file not found" in e.value for e in at.error)
    (tmp_path / "nobundle.toml").write_text('name = "nobody"\nbase = "b"\naligned = "a"\n[finetuned]\nx = "y"\n')
    at = _run("app.py", tmp_path / "nobundle.toml")  # no results, no checkpoints: it opens, and says what it lacks
    assert not at.exception and not at.error
    assert any("nobody has no results yet" in m.value for m in at.markdown)
    button = next(b for b in at.button if b.label == "Compute every missing stage")
    assert button.disabled and any("checkpoints" in c.value for c in at.caption)


def test_spot_check_bad_input_and_mismatch(tiny_demo, qwen_family):
    at = _run("pages/5_Spot-check.py", tiny_demo)
    at.text_input(key="spot_spec").input("/does/not/exist")
    at.button[0].click().run()
    assert not at.exception and any("does not exist" in e.value for e in at.error)
    at.text_input(key="spot_spec").input(str(qwen_family.parent / "useful"))
    at.button[0].click().run()
    assert not at.exception and any("architecture mismatch" in e.value or "differs in shape" in e.value
                                    for e in at.error)


def test_spot_check_of_a_family_member(tiny_demo):
    at = _run("pages/5_Spot-check.py", tiny_demo)
    at.text_input(key="spot_spec").input(str(tiny_demo.parent.parent / "models" / "harmful"))
    at.button[0].click().run()
    assert not at.exception and not at.error
    assert any("It resembles the **harmful** fine-tune" in s.value for s in at.success)  # itself
    assert len(_charts(at)) == 3
    at.button(key="spot_score").click().run()  # scores stream, then stay
    assert not at.exception and not at.error and len(_charts(at)) == 4
    bars = _chart_rows(at, 3)
    assert "candidate" in set(bars["model"]) and bars["value"].notna().all()


def test_umap_on_demand_for_a_layer_without_one(tiny_demo):
    at = _run("pages/4_Activation_space.py", tiny_demo, act_layer=1)
    assert any("UMAP is precomputed for layers 0, 2" in i.value for i in at.info)
    at.button(key="compute_umap").click().run()
    assert not at.exception and not at.error
    assert "UMAP" in _chart_data(at) and not any("precomputed for layers" in i.value for i in at.info)


def test_projection_opp_says_it_is_not_precomputed_and_keeps_every_chart(tiny_demo):
    at = _run("pages/2_Projection_lab.py", tiny_demo, proj_frac=0.5, proj_auto=False)
    charts_before = len(_charts(at))
    at.selectbox(key="proj_method").set_value("opp").run()
    assert not at.exception
    infos = [i.value for i in at.info]
    assert any("Method **opp** is not in the precomputed grid" in i for i in infos), infos
    assert not any("ρ = 0.50 is not in" in i for i in infos)
    assert any("precomputed for the grid's points only" in i for i in infos)  # the per-layer chart says why
    assert len(_charts(at)) == charts_before - 1


def test_projection_opens_on_the_variant_the_findings_read(tiny_demo):
    at = _run("pages/2_Projection_lab.py", tiny_demo)
    assert at.selectbox(key="proj_variant").options[0] == "useful"  # the grid scores every variant
    assert at.selectbox(key="proj_variant").value == "contaminated"


def test_a_variant_outside_the_grid_says_how_to_add_it(tiny_broad):
    at = _run("pages/2_Projection_lab.py", tiny_broad, proj_frac=0.5, proj_auto=False)
    assert at.selectbox(key="proj_variant").value == "contaminated"  # the only variant its grid scores
    at.selectbox(key="proj_variant").set_value("useful").run()
    assert not at.exception
    infos = " ".join(i.value for i in at.info)
    assert "scores the contaminated fine-tune only, not useful" in infos
    assert "precompute FAMILY --extend --grid-variants useful" in infos


def test_projection_shows_responses_at_a_grid_point(tiny_demo):
    at = _run("pages/2_Projection_lab.py", tiny_demo, proj_frac=0.5, proj_variant="harmful")
    assert [t.label for t in at.tabs][0] == "Harmful request"
    table = at.table[0].value
    assert list(table.columns) == ["response here", "response, unprojected harmful"]
    from explorer.evaluation.prompts import advbench_split

    assert table.index[0] == advbench_split("evaluation")[0].goal  # each response next to its own prompt
    assert (table["response here"].str.len() > 0).any()


def _without_checkpoints(tiny_demo, folder: Path) -> Path:
    """The tiny family's file, its checkpoints moved away: its precomputed results remain."""
    text = tiny_demo.read_text().replace('"../models/', '"../missing-models/')
    path = folder / "families" / tiny_demo.name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize("page, key, state", [
    ("pages/2_Projection_lab.py", "compute_live", {"proj_frac": 0.33, "proj_auto": False}),
    ("pages/4_Activation_space.py", "compute_umap", {"act_layer": 1}),
    ("pages/5_Spot-check.py", None, {}),
])
def test_live_actions_are_disabled_without_checkpoints_and_nothing_else_disappears(tiny_demo, tmp_path, page, key,
                                                                                  state):
    with_checkpoints = _run(page, tiny_demo, **state)
    at = _run(page, _without_checkpoints(tiny_demo, tmp_path), **state)
    assert not at.exception and not at.error
    button = at.button(key=key) if key else at.button[0]
    assert button.disabled and not (with_checkpoints.button(key=key) if key else with_checkpoints.button[0]).disabled
    assert any("Needs the family's checkpoints" in c.value and "missing-models" in c.value for c in at.caption)
    assert len(_charts(at)) == len(_charts(with_checkpoints))
    assert len(at.get("download_button")) == len(with_checkpoints.get("download_button"))


def test_spot_check_errors_name_the_given_source(tiny_demo, tmp_path):
    at = _run("pages/5_Spot-check.py", tiny_demo)
    given = {"relative": f"{tmp_path.name}/../{tmp_path.name}/nothing-here",
             "empty": str(tmp_path / "empty"), "hub": "someone/some-model"}
    (tmp_path / "empty").mkdir()
    expected = {"relative": f"{os.path.normpath(tmp_path / 'nothing-here')} does not exist",
                "empty": f"{tmp_path / 'empty'} holds no *.safetensors", "hub": "someone/some-model"}
    os.chdir(tmp_path.parent)  # relative sources are read against the working directory
    try:
        for case, spec in given.items():
            at.text_input(key="spot_spec").input(spec)
            at.button[0].click().run()
            errors = [e.value for e in at.error]
            assert not at.exception and len(errors) == 1, (case, errors)
            assert expected[case] in errors[0] and "member 'base'" not in errors[0], (case, errors[0])
            assert "/../" not in errors[0].replace(spec, "")  # paths it reports are normalised
    finally:
        os.chdir(ROOT)
    assert "HF_HUB_OFFLINE is set" in errors[0]


def test_activation_search_lists_matching_prompts_with_responses(tiny_demo):
    at = _run("pages/4_Activation_space.py", tiny_demo, act_layer=2)
    at.text_input(key="act_search").input("marbles").run()
    assert not at.exception
    listed = at.dataframe[0].value
    assert len(listed) > 0 and listed["prompt"].str.contains("marbles", case=False).all()
    assert {"response", "refused or not"} <= set(listed.columns)
    assert set(listed["refused or not"]) <= {"refused", "answered"}
    assert any("prompts matching" in m.value for m in at.markdown)
    drawn = _chart_rows(at)
    assert drawn["match"].sum() == len(listed) and "datum.match" in _chart_data(at)  # highlighted in the chart


def test_activation_colour_by_refusal_and_member(tiny_demo):
    at = _run("pages/4_Activation_space.py", tiny_demo, act_layer=2)
    assert "Member" not in at.radio(key="act_colour").options
    at.radio(key="act_colour").set_value("behaviour").run()
    assert not at.exception and '"field":"behaviour"' in _chart_data(at).replace(" ", "")
    at.selectbox(key="act_member").set_value("all members, side by side").run()
    at.radio(key="act_colour").set_value("member").run()
    spec = _chart_data(at).replace(" ", "")
    assert not at.exception and '"facet"' in spec and '"field":"member"' in spec


def test_activation_page_without_responses_says_to_rerun_precompute(tiny_demo, tmp_path):
    from explorer.results.bundle import bundle_dir

    shutil.copytree(bundle_dir("tiny"), bundle_dir("tiny-old"))
    (bundle_dir("tiny-old") / "activation_responses.parquet").unlink()
    family = tmp_path / "tiny-old.toml"
    family.write_text(tiny_demo.read_text().replace('name = "tiny"', 'name = "tiny-old"'))
    at = _run("pages/4_Activation_space.py", family, act_layer=2, act_colour="behaviour")
    assert not at.exception and not at.error
    assert any("run `python -m explorer precompute`" in i.value for i in at.info)
    assert '"field":"set"' in _chart_data(at).replace(" ", "")


def test_spectra_tensors_in_natural_order_and_matrices_only(tiny_demo):
    at = _run("pages/1_Weight_spectra.py", tiny_demo)
    tensors = at.selectbox(key="spectra_tensor").options
    layers = [int(t.split(".")[2]) for t in tensors if t.startswith("model.layers.")]
    assert layers == sorted(layers) and not any("norm" in t for t in tensors)


def test_projection_lab_reads_sides_and_the_grids_own_reference(tiny_demo, tmp_path):
    """Results that hold energy curves for both projection sides and the unprojected fine-tunes scored on the grid's
    prompts (grid_reference): a side toggle, and deltas against the like-for-like reference."""
    import pandas as pd

    from explorer.results.bundle import bundle_dir

    target = bundle_dir("tiny-sides")
    shutil.copytree(bundle_dir("tiny"), target)
    curves = pd.read_parquet(target / "energy_curves.parquet")
    pd.concat([curves.assign(side="left"), curves.assign(side="short", energy_kept_ratio=0.5)]).to_parquet(
        target / "energy_curves.parquet")
    for table in ("projection", "removed_by_layer"):
        pd.read_parquet(target / f"{table}.parquet").assign(side="left").to_parquet(target / f"{table}.parquet")
    scores = pd.read_parquet(target / "projection.parquet")
    reference = {"member": "harmful", "profile": scores["profile"].iloc[0], "refusal_rate": 0.75,
                 "utility_accuracy": 0.5, "over_refusal": 0.0, "target_logprob": -1.0}
    pd.DataFrame([reference]).to_parquet(target / "grid_reference.parquet")
    family = tmp_path / "tiny-sides.toml"
    family.write_text(tiny_demo.read_text().replace('name = "tiny"', 'name = "tiny-sides"'))

    at = _run("pages/2_Projection_lab.py", family, proj_frac=0.5, proj_variant="harmful")
    assert not at.exception and at.radio(key="proj_side").value == "left"
    refusal = scores[(scores["variant"] == "harmful") & (scores["method"] == "same")
                     & (scores["subspace"] == "alignment")]["refusal_rate"].iloc[0]
    assert at.metric[4].delta == f"{100 * (refusal - 0.75):+.0f} points"
    at.radio(key="proj_side").set_value("short").run()
    assert not at.exception and at.metric[0].value == "50.0%"
    assert any("no point on the **short** side" in i.value for i in at.info)
    assert any("none of them on the short side" in i.value for i in at.info)


def test_activation_page_states_k_and_offers_the_centered_variant(tiny_demo, tmp_path):
    import pandas as pd

    from explorer.results.bundle import bundle_dir

    at = _run("pages/4_Activation_space.py", tiny_demo, act_layer=2)
    assert any("the sets' subspaces have k = " in c.value and "(harmful)" in c.value for c in at.caption)
    target = bundle_dir("tiny-centered")
    shutil.copytree(bundle_dir("tiny"), target)
    mso = pd.read_parquet(target / "activation_mso.parquet")
    pd.concat([mso.assign(centered=False), mso.assign(centered=True, mso=0.0)]).to_parquet(
        target / "activation_mso.parquet")
    family = tmp_path / "tiny-centered.toml"
    family.write_text(tiny_demo.read_text().replace('name = "tiny"', 'name = "tiny-centered"'))
    at = _run("pages/4_Activation_space.py", family, act_layer=2)
    uncentered = _chart_rows(at, 1)
    at.radio(key="act_centered").set_value(True).run()
    centered = _chart_rows(at, 1)
    assert not at.exception and len(centered) == len(uncentered)  # one variant at a time, never both
    assert (centered.loc[centered["measure"] == "MSO", "overlap"] == 0).all()
    assert (uncentered.loc[uncentered["measure"] == "MSO", "overlap"] > 0).any()


def test_overview_sets_two_families_side_by_side(tiny_demo, tiny_broad):
    at = _run("app.py", tiny_demo, compare_family="tiny-broad")
    assert not at.exception, at.exception
    assert at.sidebar.selectbox(key="compare_choice_tiny").value == "tiny-broad"
    assert "Side by side: tiny and tiny-broad" in [h.value for h in at.subheader]
    table = at.dataframe[0].value
    assert len(table) == 6 and {"tiny: verdict", "tiny-broad: verdict"} <= set(table.columns)
    assert any("measured here on the ρ values both grids score (0.5)" in c.value for c in at.caption)
    overlap = next(i for i, c in enumerate(_charts(at)) if "Overlap with the alignment update" in c.proto.spec)
    assert set(_chart_rows(at, overlap)["family"]) == {"tiny", "tiny-broad"}
    members = at.dataframe[1].value
    assert "tiny-broad · aligned" in members.index and "House style" in members.columns
    at.sidebar.selectbox(key="compare_choice_tiny").set_value("none").run()
    assert "Side by side: tiny and tiny-broad" not in [h.value for h in at.subheader]


@pytest.mark.parametrize("page", ["pages/2_Projection_lab.py", "pages/3_Update_overlap.py",
                                  "pages/4_Activation_space.py"])
def test_curves_overlay_the_compared_family(tiny_demo, tiny_broad, page):
    alone = _run(page, tiny_demo, compare_family="none")
    at = _run(page, tiny_demo, compare_family="tiny-broad")
    assert not at.exception, at.exception
    overlaid = [i for i in range(len(_charts(at))) if "family" in _chart_rows(at, i)]
    assert overlaid and all(set(_chart_rows(at, i)["family"].dropna()) == {"tiny", "tiny-broad"} for i in overlaid)
    assert not any("family" in _chart_rows(alone, i) for i in range(len(_charts(alone))))


def test_live_actions_refuse_checkpoints_other_than_the_results_were_computed_from(tiny_demo, tmp_path):
    """Live points are drawn beside the precomputed grid: on rebuilt checkpoints whose weights differ (another CPU
    can give other weights), they would not compare like with like, so the live actions say so and stay off."""
    import json
    import tomllib

    from explorer.results.bundle import bundle_dir

    target = bundle_dir("tiny-rebuilt")
    shutil.copytree(bundle_dir("tiny"), target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["members"]["aligned"]["fingerprint"] = "0" * 20
    (target / "manifest.json").write_text(json.dumps(manifest))
    spec = tomllib.loads(tiny_demo.read_text())
    absolute = {k: (tiny_demo.parent / v).resolve() for k, v in (*spec["finetuned"].items(), ("base", spec["base"]),
                                                                 ("aligned", spec["aligned"]))}
    family = tmp_path / "tiny-rebuilt.toml"
    family.write_text(f'name = "tiny-rebuilt"\nbase = "{absolute["base"]}"\naligned = "{absolute["aligned"]}"\n'
                      "[finetuned]\n" + "".join(f'{k} = "{absolute[k]}"\n' for k in spec["finetuned"]))
    at = _run("pages/2_Projection_lab.py", family, proj_frac=0.33)
    assert not at.exception and not at.error
    assert at.button(key="compute_live").disabled and not at.toggle
    assert any("not the ones these results were computed from (aligned differs" in c.value for c in at.caption)
    at = _run("pages/4_Activation_space.py", family, act_layer=1)
    assert at.button(key="compute_umap").disabled
