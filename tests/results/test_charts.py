"""Chart builders: sizes that fit, intervals drawn where present, one colour scale for faceted maps, the current
control value marked, and no series hidden under another. Checked on the Vega-Lite specs (chart.to_dict())."""
import json

import numpy as np
import pandas as pd
import pytest
from test_findings import _bundle

from explorer.results import charts
from explorer.results.findings import findings


def _layers(spec: dict) -> list[dict]:
    """Every unit spec inside a (possibly layered or faceted) spec."""
    inner = spec.get("spec", spec)
    return [inner] if "layer" not in inner else [u for layer in inner["layer"] for u in _layers(layer)]


def _rows(spec: dict, unit: dict) -> list[dict]:
    return spec["datasets"][unit.get("data", spec.get("data"))["name"]]


def _marks(spec: dict) -> list[str]:
    return [u["mark"]["type"] if isinstance(u["mark"], dict) else u["mark"] for u in _layers(spec)]


def test_natural_order_puts_layer_2_before_layer_10():
    names = [f"model.layers.{i}.mlp.down_proj.weight" for i in (10, 2, 1, 0, 11)]
    assert charts.natural_order(names) == [f"model.layers.{i}.mlp.down_proj.weight" for i in (0, 1, 2, 10, 11)]


def test_member_scores_label_every_bar_and_draw_intervals_when_stored():
    scores = {"aligned": {"refusal_rate": 1.0, "utility_accuracy": 0.0, "over_refusal": 0.0,
                          "refusal_rate_ci": [0.96, 1.0], "utility_accuracy_ci": [0.0, 0.04],
                          "over_refusal_ci": [0.0, 0.06]},
              "harmful": {"refusal_rate": 0.0, "utility_accuracy": 0.0, "over_refusal": 0.0}}
    spec = charts.member_scores(scores).to_dict()
    assert _marks(spec) == ["bar", "rule", "tick", "tick", "text"]  # a 0% bar still has its "0%" label
    rows = _rows(spec, spec["layer"][0])
    assert len(rows) == 6 and sum(r["lo"] is not None and not np.isnan(r["lo"]) for r in rows) == 3
    assert spec["width"] >= 250 and spec["height"] >= 150 and spec["autosize"]["type"] == "pad"
    no_ci = charts.member_scores({m: {k: v for k, v in s.items() if not k.endswith("_ci")}
                                  for m, s in scores.items()}).to_dict()
    assert _marks(no_ci) == ["bar", "text"]


def test_a_mixture_of_experts_map_has_one_cell_per_module_the_mean_of_its_experts():
    rows = [{"tensor": f"model.layers.{layer}.mlp.experts.{e}.down_proj.weight", "layer": layer,
             "module": "experts.down_proj", "update": "alignment", "effective_rank": float(e)}
            for layer in range(2) for e in range(4)]
    rows += [{"tensor": f"model.layers.{layer}.self_attn.o_proj.weight", "layer": layer, "module": "o_proj",
              "update": "alignment", "effective_rank": 9.0} for layer in range(2)]
    rows.append({"tensor": "model.layers.0.mlp.foo.weight", "layer": 0, "module": "mlp.foo", "update": "alignment",
                 "effective_rank": 1.0})
    current = {"update": "alignment", "tensor": "model.layers.1.mlp.experts.2.down_proj.weight"}
    spec = charts.layer_module_map(pd.DataFrame(rows), "effective_rank", "Effective rank", facet="update",
                                   selectable=True, current=current).to_dict()
    data = _rows(spec, spec)
    assert len(data) == 5 and {r["experts"] for r in data} == {1, 4}
    experts = [r for r in data if r["module"] == "experts.down_proj"]
    assert [r["effective_rank"] for r in experts] == [1.5, 1.5] and [r["current"] for r in experts] == [False, True]
    assert spec["spec"]["encoding"]["x"]["sort"] == ["o_proj", "experts.down_proj", "mlp.foo"]  # unknown ones last
    assert any(t.get("field") == "experts" for t in spec["spec"]["encoding"]["tooltip"])
    bars = charts.expert_bars(pd.DataFrame(rows[:4]).assign(expert=range(4), random=0.5), "effective_rank",
                              "Effective rank", current=2, reference="random").to_dict()
    assert _marks(bars) == ["bar", "tick"] and sum(r["current"] for r in _rows(bars, bars["layer"][0])) == 1


def test_faceted_map_has_one_colour_scale_a_title_per_panel_and_readable_cells():
    rows = [{"tensor": f"model.layers.{layer}.{m}.weight", "layer": layer, "module": m, "update": u,
             "effective_rank": float(layer + i)}
            for u in ("alignment", "useful") for layer in range(30) for i, m in enumerate(("q_proj", "k_proj"))]
    current = {"update": "useful", "tensor": "model.layers.3.q_proj.weight"}
    chart = charts.layer_module_map(pd.DataFrame(rows), "effective_rank", "Effective rank", facet="update",
                                    selectable=True, current=current)
    spec = chart.to_dict()
    assert spec["facet"]["column"]["field"] == "update" and spec["resolve"]["scale"]["color"] == "shared"
    assert spec["spec"]["width"] / 2 >= 14 and spec["spec"]["height"] / 30 >= 10  # px per cell
    data = _rows(spec, spec)
    assert sum(r["current"] for r in data) == 1
    assert spec["params"][0]["select"]["fields"] == ["tensor", "update"]


def test_tradeoff_keeps_rates_on_a_zero_to_one_axis_and_rings_the_current_point():
    grid = pd.DataFrame([{"variant": "useful", "method": m, "subspace": s, "frac": f, "refusal_rate": 0.97 + 0.01 * f,
                          "utility_accuracy": 0.3, "energy_kept_ratio": f, "target_logprob": -1.0,
                          "refusal_rate_lo": 0.9, "refusal_rate_hi": 1.0}
                         for m in ("same", "orth") for s in ("alignment", "random") for f in (0.1, 0.5)])
    refs = {"useful": {"refusal_rate": 0.96, "utility_accuracy": 0.35, "target_logprob": -0.9}}
    spec = charts.tradeoff(grid, "refusal_rate", refs, current={"method": "orth", "subspace": "random", "frac": 0.5})
    spec = spec.to_dict()
    x_scales = [u["encoding"]["x"].get("scale", {}).get("domain") for u in _layers(spec) if "x" in u["encoding"]]
    assert [-0.02, 1.02] in x_scales  # one prompt (3 points of 32) is no longer the width of the chart
    assert "rule" in _marks(spec)  # 95% error bars
    ring = [u for u in _layers(spec) if u["mark"].get("size") == 520]
    assert len(ring) == 1
    ringed = _rows(spec, ring[0])
    assert len(ringed) == 1 and ringed[0]["method"] == "orth" and ringed[0]["frac"] == 0.5
    assert "ρ = 0.50" in json.dumps(spec, ensure_ascii=False)


def test_per_layer_marks_the_band_and_current_layer_and_widens_coinciding_lines():
    flat = pd.DataFrame([{"member": m, "layer": layer, "accuracy": 1.0 if layer else 0.33, "chance": 1 / 3}
                         for m in ("aligned", "base", "useful") for layer in range(11)])
    spec = charts.per_layer(flat, "accuracy", "probe", reference="chance", band=(7, 9), current=8).to_dict()
    assert _marks(spec).count("rule") == 1 and "rect" in _marks(spec)
    widths = next(u for u in _layers(spec) if u["mark"]["type"] == "line" and "strokeWidth" in u["encoding"])
    assert widths["encoding"]["strokeWidth"]["scale"]["range"] == [6.0, 4.0, 2.0]
    apart = flat.assign(accuracy=flat["accuracy"] + flat["member"].map({"aligned": 0, "base": 0.2, "useful": 0.4}))
    assert not charts.coincide(apart, "accuracy", "member") and charts.coincide(flat, "accuracy", "member")


def test_stacked_counts_points_on_one_spot():
    frame = pd.DataFrame({"x": [0.0, 0.0001, 0.5, 1.0], "y": [0.0, 0.0, 0.5, 1.0]})
    assert charts.stacked(frame).tolist() == [2, 2, 1, 1]


@pytest.mark.parametrize("name, options", [("agree", {}), ("disagree", {"top_energy_boost": 0.3, "top_utility": 0.1,
                                                                         "mso_ratio": 1.0})])
def test_every_finding_has_a_chart_that_fits_its_labels(name, options):
    for finding in findings(_bundle(f"charts-{name}", **options)):
        if finding.verdict == "not measurable":  # finding 6: these results hold no Safe LoRA points
            assert charts.finding_chart(finding) is None
            continue
        chart = charts.finding_chart(finding)
        assert chart is not None, finding.number
        spec = chart.to_dict()
        assert spec["autosize"]["type"] == "pad" and spec["height"] >= 150 and spec["width"] >= 250
        titles = [u["encoding"]["y"].get("title") for u in _layers(spec) if "y" in u.get("encoding", {})]
        assert all(t is None or len(t) <= 36 for t in titles), titles  # a y-title must fit a 150-px axis
        assert "value" not in titles and "refusal_rate" not in json.dumps(spec.get("encoding", {}))


def test_tradeoff_reads_intervals_stored_as_ci_pairs():
    grid = pd.DataFrame([{"variant": "useful", "method": "same", "subspace": "alignment", "frac": f,
                          "refusal_rate": 0.5, "utility_accuracy": 0.3, "energy_kept_ratio": f,
                          "refusal_rate_ci": [0.4, 0.6], "utility_accuracy_ci": [0.2, 0.4]} for f in (0.1, 0.5)])
    spec = charts.tradeoff(grid, "refusal_rate", {}).to_dict()
    rules = [u for u in _layers(spec) if u["mark"]["type"] == "rule"]
    assert {tuple(sorted(r["encoding"])) for r in rules} >= {("color", "x", "x2", "y"), ("color", "x", "y", "y2")}
    assert charts.with_bounds(grid)["utility_accuracy_hi"].tolist() == [0.4, 0.4]
