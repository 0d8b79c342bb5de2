"""The Defences view's charts: what they mark and draw, checked through their Vega-Lite specs."""
import pandas as pd

from explorer.results.defence_charts import (
    defence_tradeoff,
    projected_map,
    selectivity_bars,
)


def _datasets(chart):
    return [pd.DataFrame(rows) for rows in chart.to_dict()["datasets"].values()]


def test_map_marks_the_tensors_projected_at_the_threshold_and_fits_its_cells():
    cosines = pd.DataFrame([{"tensor": f"model.layers.{layer}.{m}.weight", "layer": layer, "module": m,
                             "candidate": True, "cosine": 0.1 * layer + (0.05 if m == "o_proj" else 0.0)}
                            for layer in range(6) for m in ("q_proj", "o_proj", "down_proj")])
    cosines.loc[len(cosines)] = {"tensor": "model.norm.weight", "layer": -1, "module": "final_norm",
                                 "candidate": False, "cosine": float("nan")}
    chart = projected_map(cosines, 0.22)
    data = _datasets(chart)[0]
    assert len(data) == 18 and set(data.loc[data["state"] == "projected", "tensor"]) == {
        "model.layers.0.q_proj.weight", "model.layers.0.o_proj.weight", "model.layers.0.down_proj.weight",
        "model.layers.1.q_proj.weight", "model.layers.1.o_proj.weight", "model.layers.1.down_proj.weight",
        "model.layers.2.q_proj.weight", "model.layers.2.down_proj.weight"}
    spec = chart.to_dict()
    assert spec["title"]["text"].startswith("8 of 18 candidate tensors projected at τ = 0.220")
    assert spec["height"] >= 26 * 6 and spec["width"] >= 78 * 3


def _scored(n, fields):
    return pd.DataFrame([{"utility_accuracy": 0.5 - 0.05 * i, "refusal_rate": 0.2 + 0.1 * i, "energy_kept_ratio": 1.0,
                          "target_logprob": -1.0, **fields(i)} for i in range(n)])


def test_tradeoff_draws_every_method_with_intervals_and_one_label_per_spot():
    safelora = _scored(4, fields=lambda i: {"threshold": 0.1 * i, "utility_accuracy_lo": 0.3, "utility_accuracy_hi": 0.6,
                                            "refusal_rate_lo": 0.1, "refusal_rate_hi": 0.9})
    grid = pd.concat([_scored(3, fields=lambda i, s=s: {"method": m, "subspace": s, "frac": 0.25 * (i + 1),
                                                         "utility_accuracy_ci": [0.2, 0.7], "refusal_rate_ci": [0.0, 1.0]})
                      for m in ("same", "orth") for s in ("alignment", "random", "random-k")])
    same_spot = {"refusal_rate": 0.2, "utility_accuracy": 0.5}
    chart = defence_tradeoff(safelora, grid, "refusal_rate", {"aligned": same_spot, "contaminated": same_spot}, 0.15)
    frames = _datasets(chart)
    curves = next(f for f in frames if "setting" in f)
    assert curves.groupby("setting").size().to_dict() == {"Safe LoRA": 4, "orth · alignment": 3, "orth · random": 3,
                                                          "orth · random-k": 3}
    assert curves["utility_accuracy_lo"].notna().all()  # from <score>_ci pairs where a table has those
    marks = [layer["mark"]["type"] if isinstance(layer["mark"], dict) else layer["mark"]
             for layer in chart.to_dict()["layer"]]
    assert marks.count("errorbar") == 2
    assert any(list(f.get("member", [])) == ["aligned, contaminated"] for f in frames)
    ringed = next(f for f in frames if "threshold" in f and len(f) == 1)
    assert ringed["threshold"].iloc[0] == 0.1


def test_selectivity_bars_skip_undefined_values():
    table = pd.DataFrame([{"method": "Safe LoRA", "selectivity": 2.0, "lo": 1.0, "hi": 3.0},
                          {"method": "orth · random", "selectivity": float("nan"), "lo": None, "hi": None}])
    data = _datasets(selectivity_bars(table))
    assert list(data[0]["method"]) == ["Safe LoRA"]
