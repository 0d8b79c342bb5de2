"""Every page through Streamlit's AppTest on a tiny family with precomputed results."""
from pathlib import Path

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


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_without_exceptions(tiny_demo, page):
    at = _run(page, tiny_demo)
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    if page != "pages/5_Spot-check.py":
        assert _charts(at), f"{page} shows no chart"


def test_overview_shows_six_findings_and_scores(tiny_demo):
    at = _run("app.py", tiny_demo)
    verdicts = [e.value for e in (*at.success, *at.warning, *at.info)]
    assert sum(v.startswith(("Supports", "Does not support", "Not measurable")) for v in verdicts) == 6
    assert len(at.dataframe) == 1 and set(at.dataframe[0].value.index) >= {"base", "aligned", "useful"}


def test_projection_slider_changes_what_is_shown(tiny_demo):
    at = _run("pages/2_Projection_lab.py", tiny_demo)
    before = [m.value for m in at.metric][:4]
    at.slider(key="proj_frac").set_value(0.5).run()
    after = [m.value for m in at.metric][:4]
    assert not at.exception and before != after
    assert len(at.metric) == 8  # 0.5 is in the grid: the four scores are shown at once
    at.slider(key="proj_frac").set_value(0.33).run()
    assert any("not in the precomputed grid" in i.value for i in at.info)
    at.selectbox(key="proj_method").set_value("orth").run()
    assert not at.exception


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
    at = _run("pages/2_Projection_lab.py", tiny_demo, proj_frac=0.33)
    at.button(key="compute_live").click().run()
    assert not at.exception and not at.error
    assert len(at.metric) == 8 and any("quick" in c.value for c in at.caption)


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
    at = _run("app.py", tmp_path / "nobundle.toml")
    assert not at.exception and any("no precomputed results" in e.value for e in at.error)


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
    assert any("overlaps most with the **harmful**" in s.value for s in at.success)
    assert len(_charts(at)) == 3


def test_umap_on_demand_for_a_layer_without_one(tiny_demo):
    at = _run("pages/4_Activation_space.py", tiny_demo, act_layer=1)
    assert any("UMAP is precomputed for layers 0, 2" in i.value for i in at.info)
    at.button(key="compute_umap").click().run()
    assert not at.exception and not at.error
    assert "UMAP" in _chart_data(at) and not any("precomputed for layers" in i.value for i in at.info)
