"""Altair chart builders: tidy frames in, `alt.Chart` out. Every chart embeds fewer than 5,000 rows, has an explicit
size that fits its labels, legends whose symbols look like the marks, and draws 95% intervals where the frame
carries them (`<score>_lo`/`<score>_hi` columns, or `<score>_ci` pairs in member scores)."""
from __future__ import annotations

import re

import altair as alt
import numpy as np
import pandas as pd

from explorer.evaluation.evaluate import MEMBER_SCORES

MAX_ROWS = 5000
SCORE_TITLES = {"refusal_rate": "Refusal rate", "utility_accuracy": "Word-problem accuracy",
                "over_refusal": "Over-refusal (benign)", "target_logprob": "Log-prob of 'Sure, here is'",
                "style_adoption": "House style (benign)"}
RATES = ("refusal_rate", "utility_accuracy", "over_refusal", "style_adoption")  # style: members only
# The modules of every architecture's table (explorer/checkpoints/architectures.py), in the order a block runs
# them; a map places modules outside this list (names no table knows) after it, alphabetically.
MODULE_ORDER = ["embed_tokens", "q_proj", "k_proj", "v_proj", "qkv_proj", "q_norm", "k_norm", "o_proj",
                "gate_proj", "up_proj", "gate_up_proj", "down_proj", "router", "experts.gate_proj", "experts.up_proj",
                "experts.w1", "experts.w3", "experts.gate_up_proj", "experts.down_proj", "experts.w2",
                "input_norm", "post_attn_norm", "pre_ffn_norm", "post_ffn_norm", "q_proj.bias", "k_proj.bias",
                "v_proj.bias", "final_norm", "lm_head", "vision_tower", "mm_projector", "other"]
SUBSPACE_COLORS = alt.Scale(domain=["alignment", "random-k", "random"], range=["#d62728", "#ff7f0e", "#7f7f7f"])
# Subspaces also differ in dash and point shape: their curves often coincide, and colour alone hides one of them.
SUBSPACE_DASHES = alt.Scale(domain=["alignment", "random-k", "random"], range=[[1, 0], [8, 4], [2, 3]])
SUBSPACE_SHAPES = alt.Scale(domain=["alignment", "random-k", "random"], range=["circle", "square", "triangle-up"])
METHOD_COLORS = alt.Scale(domain=["same", "orth", "opp"], range=["#1f77b4", "#ff7f0e", "#9467bd"])
SET_COLORS = alt.Scale(domain=["useful", "harmful", "benign"], range=["#1f77b4", "#d62728", "#2ca02c"])
SCORE_COLORS = alt.Scale(domain=[SCORE_TITLES[r] for r in RATES], range=["#4c78a8", "#f58518", "#54a24b", "#b279a2"])
FAMILY_DASHES = [[1, 0], [7, 4], [2, 2]]  # the chosen family solid, compared ones dashed
MEASURE_DASHES = alt.Scale(domain=["MSO", "random baseline"], range=[[1, 0], [5, 4]])
BAND_LABEL = "65–90% depth"
LAYER_LABELS = "datum.value == -1 ? 'outside' : datum.value"
OUTSIDE_NOTE = "Layer ('outside': embeddings, final norm, lm_head)"


# Width and height are the plot's own; axes, titles and legends are added around it (Streamlit's default, "fit",
# would squeeze the plot to make room for them, down to nothing under a long legend).
PAD = alt.AutoSizeParams(type="pad", contains="padding")


def _capped(frame: pd.DataFrame, limit: int = MAX_ROWS, seed: int = 0) -> pd.DataFrame:
    return frame if len(frame) <= limit else frame.sample(limit, random_state=seed).sort_index()


def natural_order(names) -> list[str]:
    """Names sorted with their numbers as numbers: layers.2 before layers.10."""
    return sorted(names, key=lambda name: [int(part) if part.isdigit() else part
                                           for part in re.split(r"(\d+)", str(name))])


def score_interval(scores: dict, score: str) -> tuple[float, float] | None:
    """The 95% interval stored with a score: `<score>_ci` (member scores, live points) or `<score>_lo` and
    `<score>_hi` (grid rows); None if there is none."""
    ci = scores.get(f"{score}_ci")
    if ci is None and f"{score}_lo" in scores:
        ci = (scores[f"{score}_lo"], scores.get(f"{score}_hi"))
    if ci is None or len(ci) != 2 or any(v is None or pd.isna(v) for v in ci):
        return None
    return float(ci[0]), float(ci[1])


def _legend(title: str | None, orient: str = "right", stroke: bool = False, columns: int | None = None) -> alt.Legend:
    options = {"title": title, "orient": orient, "labelLimit": 240}
    if stroke:
        options.update(symbolType="stroke", symbolStrokeWidth=2.5, symbolSize=300)
    if columns:
        options["columns"] = columns
    return alt.Legend(**options)


def score_bars(frame: pd.DataFrame, group: str, width: int = 560, height: int = 260) -> alt.Chart:
    """The three rates of a few models side by side, as labelled bars (a 0% bar still shows its label), with
    95% error bars where the frame has `<score>_lo`/`<score>_hi`."""
    rows = []
    for _, row in frame.iterrows():
        for score in RATES:
            if score not in row or pd.isna(row[score]):
                continue
            lo, hi = row.get(f"{score}_lo", np.nan), row.get(f"{score}_hi", np.nan)
            rows.append({group: row[group], "score": SCORE_TITLES[score], "value": float(row[score]),
                         "lo": lo, "hi": hi, "top": float(hi) if pd.notna(hi) else float(row[score])})
    long = pd.DataFrame(rows)
    order = list(dict.fromkeys(frame[group]))
    base = alt.Chart(long).encode(
        x=alt.X(f"{group}:N", sort=order, title=None, axis=alt.Axis(labelAngle=0, labelFontSize=12)),
        xOffset=alt.XOffset("score:N", sort=list(SCORE_COLORS.domain)))
    present = [t for t in SCORE_COLORS.domain if t in set(long["score"])]
    colors = alt.Scale(domain=present, range=[SCORE_COLORS.range[SCORE_COLORS.domain.index(t)] for t in present])
    tooltip = [group, "score", alt.Tooltip("value:Q", format=".1%", title="value"),
               alt.Tooltip("lo:Q", format=".1%", title="95% interval from"),
               alt.Tooltip("hi:Q", format=".1%", title="95% interval to")]
    bars_ = base.mark_bar().encode(
        y=alt.Y("value:Q", title="Rate", scale=alt.Scale(domain=[0, 1.08], nice=False),
                axis=alt.Axis(format="%", values=[0, 0.25, 0.5, 0.75, 1])),
        color=alt.Color("score:N", scale=colors, legend=_legend(None, "bottom")), tooltip=tooltip)
    labels = base.mark_text(dy=-6, fontSize=10, baseline="bottom").encode(
        y="top:Q", text=alt.Text("value:Q", format=".0%"), tooltip=tooltip)
    layers = [bars_, labels]
    if long["lo"].notna().any():
        bounded = base.transform_filter("isValid(datum.lo)")
        layers[1:1] = [bounded.mark_rule(color="black", strokeWidth=1.2).encode(y="lo:Q", y2="hi:Q"),
                       *(bounded.mark_tick(color="black", thickness=1.2, size=8).encode(y=f"{end}:Q")
                         for end in ("lo", "hi"))]
    return alt.layer(*layers).properties(width=width, height=height, autosize=PAD)


def member_scores(scores: dict[str, dict]) -> alt.Chart:
    """Every member's three rates (scores.json), with their 95% intervals when stored."""
    return score_bars(score_frame([{"member": m, **values} for m, values in scores.items()]), "member", width=430)


def spectrum(values: pd.DataFrame, title: str, width: int = 470, height: int = 280) -> alt.Chart:
    """Singular values (log scale) and cumulative energy of one tensor."""
    frame = values[["index", "singular_value"]].copy()
    frame["rank"] = frame["index"] + 1
    sq = frame["singular_value"].to_numpy(dtype=np.float64) ** 2
    frame["cumulative_energy"] = np.cumsum(sq) / sq.sum() if sq.sum() > 0 else 0.0
    frame = frame[frame["singular_value"] > 0]
    frame["curve"] = "singular value (left axis)"
    energy = frame.assign(curve="cumulative energy (right axis)")
    curve_scale = alt.Scale(domain=["singular value (left axis)", "cumulative energy (right axis)"],
                            range=["#1f77b4", "#ff7f0e"])
    dash_scale = alt.Scale(domain=curve_scale.domain, range=[[1, 0], [5, 3]])
    legend = _legend(None, "bottom", stroke=True)
    x = alt.X("rank:Q", title="Rank (singular value index)")
    tooltip = ["rank", alt.Tooltip("singular_value:Q", format=".3g"), alt.Tooltip("cumulative_energy:Q", format=".1%")]
    sv = alt.Chart(frame).mark_line().encode(
        x=x, y=alt.Y("singular_value:Q", scale=alt.Scale(type="log"), title="Singular value (log scale)",
                     axis=alt.Axis(format=".0e")),
        color=alt.Color("curve:N", scale=curve_scale, legend=legend),
        strokeDash=alt.StrokeDash("curve:N", scale=dash_scale, legend=legend), tooltip=tooltip)
    cumulative = alt.Chart(energy).mark_line().encode(
        x=x, y=alt.Y("cumulative_energy:Q", title="Cumulative energy", axis=alt.Axis(format="%"),
                     scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("curve:N", scale=curve_scale, legend=legend),
        strokeDash=alt.StrokeDash("curve:N", scale=dash_scale, legend=legend), tooltip=tooltip)
    return alt.layer(sv, cumulative).resolve_scale(y="independent").properties(
        title=title, width=width, height=height, autosize=PAD)


def module_order(modules) -> list[str]:
    """The modules present, in MODULE_ORDER, then those it does not list, alphabetically."""
    present = set(modules)
    return [m for m in MODULE_ORDER if m in present] + sorted(present - set(MODULE_ORDER))


def per_cell(frame: pd.DataFrame, value: str, keys: list[str]) -> pd.DataFrame:
    """One row per cell (`keys`): a mixture of experts' tensors of one module and layer become the mean of their
    `value`, `experts` counting them (1 elsewhere); a cell's `tensor` is its first expert's, `current` whether any
    of its tensors is."""
    counts = frame.groupby(keys, sort=False)[value].transform("size")
    if (counts == 1).all():
        return frame.assign(experts=1)
    aggregations = {value: (value, "mean"), "experts": (value, "size")}
    aggregations.update({column: (column, "any" if column == "current" else "first")
                         for column in ("tensor", "current") if column in frame})
    return frame.groupby(keys, as_index=False, sort=False).agg(**aggregations)


def layer_module_map(frame: pd.DataFrame, value: str, value_title: str, facet: str | None = None,
                     facet_order: list[str] | None = None, domain: tuple[float, float] | None = None,
                     selectable: bool = False, current: dict | None = None, cell: tuple[int, int] = (18, 11),
                     value_format: str = ".3g") -> alt.Chart:
    """A layer x module grid of one value; with `facet`, one panel per value of that column, titled by it, all on
    one colour scale. `current` (column -> value) outlines one cell; `selectable` lets a click select a tensor.
    A mixture of experts' module is one cell per layer, the mean over its experts (per_cell)."""
    frame = frame.copy()
    modules = module_order(frame["module"])
    frame["current"] = False
    if current:
        frame["current"] = np.logical_and.reduce([frame[k] == v for k, v in current.items() if k in frame])
    frame = per_cell(frame, value, [k for k in (facet, "layer", "module") if k])
    scale = alt.Scale(scheme="viridis", domain=list(domain)) if domain else alt.Scale(scheme="viridis", zero=True)
    rows = frame["layer"].nunique()  # a shallow model's few rows are drawn taller, to be readable
    label = "tensor" if "tensor" in frame else "module"
    tooltip = ([alt.Tooltip(f"{facet}:N")] if facet else []) + [
        alt.Tooltip(f"{label}:N"), alt.Tooltip("layer:O"), alt.Tooltip(f"{value}:Q", format=value_format,
                                                                       title=value_title)]
    if (frame["experts"] > 1).any():
        tooltip.append(alt.Tooltip("experts:Q", title="experts (mean over)"))
    chart = alt.Chart(frame).mark_rect().encode(
        x=alt.X("module:N", sort=modules, title=None, axis=alt.Axis(labelAngle=-90, labelFontSize=11)),
        y=alt.Y("layer:O", sort="descending", title=OUTSIDE_NOTE, axis=alt.Axis(labelExpr=LAYER_LABELS)),
        color=alt.Color(f"{value}:Q", title=value_title, scale=scale,
                        legend=alt.Legend(orient="right", gradientLength=220, format=value_format)),
        stroke=alt.condition("datum.current", alt.value("#ff2a2a"), alt.value(None)),
        strokeWidth=alt.condition("datum.current", alt.value(3), alt.value(0)),
        tooltip=tooltip,
    ).properties(width=cell[0] * len(modules), height=max(cell[1], -(-160 // rows)) * rows)
    if selectable:
        chart = chart.add_params(alt.selection_point(name="cell", fields=[f for f in ("tensor", facet) if f],
                                                     on="click"))
    if facet:
        order = facet_order or list(dict.fromkeys(frame[facet]))
        chart = chart.facet(column=alt.Column(f"{facet}:N", sort=order, title=None,
                                              header=alt.Header(labelFontSize=13, labelFontWeight="bold")),
                            spacing=14).resolve_scale(color="shared")
    return chart.properties(autosize=PAD)


def expert_bars(frame: pd.DataFrame, value: str, value_title: str, current: int | None = None,
                reference: str | None = None, reference_label: str = "random baseline", value_format: str = ".3g",
                height: int = 180) -> alt.Chart:
    """One cell of a mixture of experts' map in detail: `value` per expert (an `expert` column), the `current`
    expert's bar outlined; `reference` as a dashed tick on each bar."""
    frame = frame.assign(current=frame["expert"] == current)
    x = alt.X("expert:O", title="Expert", axis=alt.Axis(labelAngle=0))
    bars = alt.Chart(frame).mark_bar(color="#4c78a8").encode(
        x=x, y=alt.Y(f"{value}:Q", title=value_title),
        stroke=alt.condition("datum.current", alt.value("#ff2a2a"), alt.value(None)),
        strokeWidth=alt.condition("datum.current", alt.value(3), alt.value(0)),
        tooltip=["expert", alt.Tooltip(f"{value}:Q", format=value_format, title=value_title)])
    layers = [bars]
    if reference is not None:
        ticks = frame.assign(measure=reference_label)
        layers.append(alt.Chart(ticks).mark_tick(color="#555555", thickness=2, strokeDash=[4, 2]).encode(
            x=x, y=f"{reference}:Q",
            shape=alt.Shape("measure:N", scale=alt.Scale(domain=[reference_label], range=["stroke"]),
                            legend=_legend(None, "bottom")),
            tooltip=["expert", alt.Tooltip(f"{reference}:Q", format=value_format, title=reference_label)]))
    return alt.layer(*layers).properties(width=max(160, 26 * frame["expert"].nunique()), height=height,
                                         autosize=PAD)


def energy_curves(curves: pd.DataFrame, frac: float | None = None, width: int = 380, height: int = 260) -> alt.Chart:
    """Energy kept against ρ, one line per subspace (dashed differently: random and random-k often coincide).
    With a `family` column naming two families or more, colour is the subspace and the dash the family: the first
    family solid, the next dashed."""
    legend = _legend("Subspace", "bottom", stroke=True)
    families = list(dict.fromkeys(curves["family"])) if "family" in curves else []
    if len(families) > 1:
        dash = alt.StrokeDash("family:N", scale=alt.Scale(domain=families, range=FAMILY_DASHES[:len(families)]),
                              legend=None)  # callers name the dashes (no room beside or below the plot)
        detail = {"detail": "family:N"}
    else:
        dash, detail = alt.StrokeDash("subspace:N", scale=SUBSPACE_DASHES, legend=legend), {}
    line = alt.Chart(curves).mark_line(strokeWidth=2.2).encode(
        x=alt.X("frac:Q", title="Rank fraction ρ", scale=alt.Scale(domain=[0, 1])),
        y=alt.Y("energy_kept_ratio:Q", title="Task energy kept", axis=alt.Axis(format="%"),
                scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("subspace:N", scale=SUBSPACE_COLORS, legend=legend), strokeDash=dash, **detail,
        tooltip=[*(["family"] if families else []), "subspace", "frac",
                 alt.Tooltip("energy_kept_ratio:Q", format=".1%"), alt.Tooltip("cosine_task_kept:Q", format=".3f"),
                 "k_total"])
    layers = [line]
    if frac is not None:
        layers += _rule_at("frac", frac, f"ρ = {frac:.2f}")
    return alt.layer(*layers).properties(width=width, height=height, autosize=PAD)


def alignment_overlap_bars(frame: pd.DataFrame, width: int = 380, height: int = 240) -> alt.Chart:
    """MSO of each task update with the alignment update, per family (family_comparison.alignment_overlaps), with
    the random baseline as a black tick on each bar."""
    families = list(dict.fromkeys(frame["family"]))
    order = [u for u in ("useful", "harmful", "contaminated") if u in set(frame["update"])] + \
        [u for u in dict.fromkeys(frame["update"]) if u not in ("useful", "harmful", "contaminated")]
    base = alt.Chart(frame).encode(x=alt.X("update:N", sort=order, title="Task update (· alignment)",
                                           axis=alt.Axis(labelAngle=0, labelFontSize=12)),
                                   xOffset=alt.XOffset("family:N", sort=families))
    tooltip = ["family", "update", alt.Tooltip("mso:Q", format=".3f", title="MSO"),
               alt.Tooltip("mso_random:Q", format=".3f", title="random baseline")]
    bars_ = base.mark_bar().encode(
        y=alt.Y("mso:Q", title="MSO with alignment, η = 0.5"),
        color=alt.Color("family:N", sort=families, legend=_legend("Family", "bottom")), tooltip=tooltip)
    labels = base.mark_text(dy=-4, fontSize=10, baseline="bottom").encode(y="mso:Q", text=alt.Text("mso:Q",
                                                                                                   format=".2f"))
    ticks = base.mark_tick(color="black", thickness=2, size=14).encode(y="mso_random:Q", tooltip=tooltip)
    return alt.layer(bars_, labels, ticks).properties(
        width=width, height=height, autosize=PAD, title="Overlap with the alignment update (tick: random baseline)")


def _rule_at(field: str, value: float, text: str, y_text: float | None = None) -> list[alt.Chart]:
    """A black rule marking the current value of a control, labelled at the top of the plot."""
    marker = pd.DataFrame({field: [value], "label": [text]})
    rule = alt.Chart(marker).mark_rule(color="black", strokeWidth=1.5, strokeDash=[3, 2]).encode(x=f"{field}:Q")
    label = alt.Chart(marker).mark_text(align="left", dx=4, dy=2, baseline="top", fontSize=11, fontWeight="bold",
                                        y=0).encode(x=f"{field}:Q", text="label:N")
    return [rule, *_haloed(label)]


def _haloed(text: alt.Chart) -> list[alt.Chart]:
    """A text layer over a white outline of itself, readable over lines and shading."""
    options = {k: v for k, v in text.mark.to_dict().items() if k != "type"}
    return [text.mark_text(**options, stroke="white", strokeWidth=3, strokeOpacity=0.9), text]


def _band(low: float, high: float, label: str = BAND_LABEL) -> list[alt.Chart]:
    """A shaded x range (the paper's 65–90% depth band), labelled at the bottom of the plot."""
    band = pd.DataFrame({"low": [low], "high": [high], "middle": [(low + high) / 2], "label": [label]})
    rect = alt.Chart(band).mark_rect(color="#bbbbbb", opacity=0.28).encode(x="low:Q", x2="high:Q")
    text = alt.Chart(band).mark_text(align="center", dy=-3, baseline="bottom", fontSize=10, color="#555555",
                                     y=0).encode(x="middle:Q", text="label:N")
    return [rect, text]


def tradeoff(grid: pd.DataFrame, harm: str, references: dict[str, dict], current: dict | None = None,
             live_point: dict | None = None, width: int = 430, height: int = 340) -> alt.Chart:
    """Utility against harm across ρ: colour = method, dash and shape = subspace; 95% error bars where the grid
    has them; reference members as labelled diamonds; `current` ({method, subspace, frac}) ringed and labelled, or
    when the grid has no point at that ρ, the scored points `current["scored"]` (their ρ values) beside it; or
    `live_point` (a computed point off the grid)."""
    frame = with_bounds(grid)
    frame["setting"] = frame["method"] + " · " + frame["subspace"]
    harm_title = SCORE_TITLES[harm]
    rate_axis = alt.Axis(format="%", values=[0, 0.25, 0.5, 0.75, 1])
    if harm in RATES:
        x_scale, x_axis = alt.Scale(domain=[-0.02, 1.02], nice=False), rate_axis
    else:
        values = pd.concat([frame[harm], *(frame[c] for c in (f"{harm}_lo", f"{harm}_hi") if c in frame),
                            pd.Series([s.get(harm) for s in references.values()], dtype=float)]).dropna()
        span = max(float(values.max() - values.min()), 0.5)  # a mean log-prob moves by ~0.1 per prompt set
        x_scale = alt.Scale(domain=[float(values.min()) - 0.1 * span, float(values.max()) + 0.1 * span], nice=False)
        x_axis = alt.Axis(format=".2f")
    x = alt.X(f"{harm}:Q", title=harm_title, scale=x_scale, axis=x_axis)
    y = alt.Y("utility_accuracy:Q", title="Word-problem accuracy", scale=alt.Scale(domain=[-0.02, 1.02], nice=False),
              axis=rate_axis)
    methods = [m for m in METHOD_COLORS.domain if m in set(frame["method"])]
    color = alt.Color("method:N", scale=alt.Scale(domain=methods, range=[METHOD_COLORS.range[
        METHOD_COLORS.domain.index(m)] for m in methods]), legend=_legend("Method", "bottom", stroke=True))
    dash = alt.StrokeDash("subspace:N", scale=SUBSPACE_DASHES, legend=_legend("Subspace", "bottom", stroke=True))
    tooltip = ["setting", "frac", alt.Tooltip(f"{harm}:Q", format=".3f"),
               alt.Tooltip("utility_accuracy:Q", format=".1%"), alt.Tooltip("energy_kept_ratio:Q", format=".1%")]
    base = alt.Chart(frame)
    lines = base.mark_line(strokeWidth=1.8, opacity=0.85, point=alt.OverlayMarkDef(size=70, filled=False,
                                                                                   strokeWidth=1.8)).encode(
        x=x, y=y, color=color, strokeDash=dash, detail="setting:N", order="frac:Q", tooltip=tooltip,
        shape=alt.Shape("subspace:N", scale=SUBSPACE_SHAPES, legend=_legend("Subspace", "bottom", stroke=True)))
    layers = [lines]
    for lo, hi, axis in ((f"{harm}_lo", f"{harm}_hi", "x"), ("utility_accuracy_lo", "utility_accuracy_hi", "y")):
        if lo in frame and frame[lo].notna().any():
            encoding = {"x": x, "y": y, axis: alt.X(f"{lo}:Q") if axis == "x" else alt.Y(f"{lo}:Q"),
                        f"{axis}2": f"{hi}:Q", "color": color}
            layers.insert(0, base.transform_filter(f"isValid(datum['{lo}'])").mark_rule(opacity=0.35)
                          .encode(**encoding))
    refs = pd.DataFrame([{"member": m, harm: s[harm], "utility_accuracy": s["utility_accuracy"]}
                         for m, s in references.items()])
    if len(refs):
        marks = alt.Chart(refs).mark_point(shape="diamond", size=150, filled=True, color="black").encode(
            x=x, y=y, tooltip=["member", alt.Tooltip(f"{harm}:Q", format=".3f"),
                               alt.Tooltip("utility_accuracy:Q", format=".1%")])
        layers += [marks, marks.mark_text(dx=9, align="left", fontSize=11).encode(text="member:N")]
    here = None
    if live_point is not None:
        here = pd.DataFrame([{harm: live_point[harm], "utility_accuracy": live_point["utility_accuracy"],
                              "label": f"this point (live, ρ = {live_point['frac']:.2f})"}])
    elif current is not None:
        setting = frame[(frame["method"] == current["method"]) & (frame["subspace"] == current["subspace"])]
        at = setting[np.isclose(setting["frac"], current["frac"])]
        if len(at):
            here = at.assign(label=f"this point: {current['method']} · {current['subspace']}, "
                                   f"ρ = {current['frac']:.2f}")
        else:  # the control between scored values: ring the measured neighbours, each labelled with its own ρ
            near = setting[np.isin(setting["frac"].round(6), np.round(current.get("scored", []), 6))]
            here = near.assign(label=[f"scored at ρ = {f:.2f}" for f in near["frac"]]) if len(near) else None
    if here is not None:
        ring = alt.Chart(here).mark_point(size=520, strokeWidth=2.5, color="black", filled=False).encode(x=x, y=y)
        layers.append(ring)
        for row, (_, point) in enumerate(here.iterrows()):
            right_half = float(point[harm]) > float(np.mean(x_scale.domain))
            label = alt.Chart(here.iloc[[row]]).mark_text(
                dx=-18 if right_half else 18, dy=0 if len(here) == 1 else (-11 if row == 0 else 11),
                align="right" if right_half else "left", fontSize=11, fontWeight="bold")
            layers += _haloed(label.encode(x=x, y=y, text="label:N"))
    return alt.layer(*layers).properties(width=width, height=height, autosize=PAD)


def removed_by_layer(frame: pd.DataFrame, width: int = 800, height: int = 200) -> alt.Chart:
    return alt.Chart(frame).mark_bar(color="#4c78a8").encode(
        x=alt.X("layer:O", title=OUTSIDE_NOTE, axis=alt.Axis(labelExpr=LAYER_LABELS, labelAngle=0)),
        y=alt.Y("removed_frac:Q", title="Energy removed", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1])),
        tooltip=["layer", alt.Tooltip("removed_frac:Q", format=".1%")]).properties(width=width, height=height,
                                                                                   autosize=PAD)


def overlap_curves(frame: pd.DataFrame, color: str = "pair", x: str = "energy_frac",
                   x_title: str = "Energy fraction η",
                   band: tuple[float, float] | None = None, current: float | None = None, height: int = 280,
                   width: int = 640, legend_orient: str = "right") -> alt.Chart:
    """MSO (solid) and its random baseline (dashed) against η or layer; per layer, the paper's band shaded and
    the current layer marked."""
    long = frame.melt(id_vars=[c for c in frame.columns if c not in ("mso", "mso_random")],
                      value_vars=["mso", "mso_random"], var_name="measure", value_name="overlap")
    long["measure"] = long["measure"].map({"mso": "MSO", "mso_random": "random baseline"})
    x_enc = alt.X(f"{x}:Q", title=x_title, scale=alt.Scale(nice=False))
    y_enc = alt.Y("overlap:Q", title="Subspace overlap (MSO)", scale=alt.Scale(domain=[0, 1]))
    columns = 1 if legend_orient == "right" else None
    lines = alt.Chart(_capped(long)).mark_line(strokeWidth=2).encode(
        x=x_enc, y=y_enc,
        color=alt.Color(f"{color}:N", title=color.capitalize(),
                        legend=_legend(color.capitalize(), legend_orient, stroke=True, columns=columns)
                        if long[color].nunique() > 1 else None),
        strokeDash=alt.StrokeDash("measure:N", scale=MEASURE_DASHES,
                                  legend=_legend(None, legend_orient, stroke=True, columns=columns)),
        detail="measure:N")
    points = alt.Chart(_capped(long)).mark_circle(size=22).encode(
        x=x_enc, y=y_enc, color=alt.Color(f"{color}:N", legend=None),
        tooltip=[color, x, "measure", alt.Tooltip("overlap:Q", format=".3f")])
    layers = ([] if band is None else _band(*band)) + [lines, points]
    if current is not None:
        layers += _rule_at(x, current, f"layer {current:g}" if x == "layer" else f"η = {current:g}")
    return alt.layer(*layers).properties(width=width, height=height, autosize=PAD)


def coincide(frame: pd.DataFrame, value: str, color: str, share: float = 0.3) -> bool:
    """Whether two series lie on each other (within 1% of the value range) over `share` of the layers."""
    wide = frame.pivot_table(index="layer", columns=color, values=value)
    span = float(np.nanmax(wide.to_numpy()) - np.nanmin(wide.to_numpy())) or 1.0
    columns = list(wide.columns)
    return any(((wide[a] - wide[b]).abs() < 0.01 * span).mean() >= share
               for i, a in enumerate(columns) for b in columns[i + 1:])


def per_layer(frame: pd.DataFrame, value: str, title: str, reference: str | None = None, color: str = "member",
              y_title: str | None = None, band: tuple[float, float] | None = None, current: int | None = None,
              reference_label: str = "random baseline", y_format: str | None = None, height: int = 260,
              width: int = 640, legend_orient: str = "right") -> alt.Chart:
    """A value against layer, one line per `color`; where series coincide, drawn widest first so that a line
    lying on another still shows as a coloured edge; `reference` as a dashed grey line in the legend; the paper's
    band and the current layer marked."""
    series = natural_order(frame[color].dropna().unique())
    widths = [2.0 * (len(series) - i) for i in range(len(series))] if coincide(frame, value, color) \
        else [2.2] * len(series)
    columns = 1 if legend_orient == "right" else None
    y_axis = alt.Axis(format=y_format) if y_format else alt.Axis()
    x_enc = alt.X("layer:Q", title="Layer (hidden state; 0 = embeddings)", scale=alt.Scale(nice=False))
    drawn = frame.assign(_series=frame[color].map({s: i for i, s in enumerate(series)})).sort_values(
        ["_series", "layer"], kind="stable")  # Vega draws series in data order: the widest goes first
    lines = alt.Chart(drawn).mark_line(point=False).encode(
        x=x_enc, y=alt.Y(f"{value}:Q", title=y_title or value, axis=y_axis),
        color=alt.Color(f"{color}:N", sort=series, legend=_legend(color.capitalize(), legend_orient, stroke=True,
                                                                  columns=columns)),
        strokeWidth=alt.StrokeWidth(f"{color}:O", sort=series,
                                    scale=alt.Scale(type="ordinal", domain=series, range=widths),
                                    legend=None),
        tooltip=[color, "layer", alt.Tooltip(f"{value}:Q", format=".3f")])
    layers = [] if band is None else _band(*band)
    layers.append(lines)
    if reference is not None:
        ref = frame.groupby("layer", as_index=False)[reference].mean().assign(measure=reference_label)
        layers.append(alt.Chart(ref).mark_line(color="#555555").encode(
            x=x_enc, y=f"{reference}:Q",
            strokeDash=alt.StrokeDash("measure:N", scale=alt.Scale(domain=[reference_label], range=[[5, 4]]),
                                      legend=_legend(None, legend_orient, stroke=True, columns=columns)),
            tooltip=["layer", alt.Tooltip(f"{reference}:Q", format=".3f", title=reference_label)]))
    if current is not None:
        layers += _rule_at("layer", current, f"layer {current}")
    return alt.layer(*layers).properties(title=title, width=width, height=height, autosize=PAD)


STACK_GRID = 100  # points closer than 1/100 of the plot's range (a marker's size) are counted as one stack


def stacked(frame: pd.DataFrame) -> pd.Series:
    """How many points share each point's spot (to 1/100 of the x and y ranges): prompts whose states
    (nearly) coincide lie on top of each other and would otherwise read as one."""
    def cells(column: str) -> pd.Series:
        values = frame[column].astype(float)
        span = float(values.max() - values.min()) or 1.0
        return ((values - values.min()) / span * STACK_GRID).round().astype(int)

    keys = [frame["member"]] if "member" in frame and frame["member"].nunique() > 1 else []
    spot = pd.Series(list(zip(*keys, cells("x"), cells("y"))), index=frame.index)
    return spot.map(spot.value_counts())


BEHAVIOUR_COLORS = alt.Scale(domain=["refused", "answered", "no response stored"],
                             range=["#1f77b4", "#ff7f0e", "#bbbbbb"])


def embedding_scatter(frame: pd.DataFrame, title: str, color_by: str = "set", facet: bool = False,
                      width: int = 760, height: int = 420) -> alt.Chart:
    """The 2-D embedding of prompts, coloured by `color_by` (set, member or behaviour); rows with `match`
    True are drawn large and outlined, the rest faded; a brush (one panel) or clicks (one panel per member)
    select prompts."""
    frame = _capped(frame).copy()
    frame["stack"] = stacked(frame)
    any_match = "match" in frame and bool(frame["match"].any())
    if "match" not in frame:
        frame["match"] = False
    if color_by == "set":
        color = alt.Color("set:N", scale=SET_COLORS, legend=_legend("Prompt set"))
    elif color_by == "member":
        color = alt.Color("member:N", sort=natural_order(frame["member"].unique()), legend=_legend("Member"))
    else:
        present = [b for b in BEHAVIOUR_COLORS.domain if b in set(frame["behaviour"])]
        scale = alt.Scale(domain=present, range=[BEHAVIOUR_COLORS.range[BEHAVIOUR_COLORS.domain.index(b)]
                                                 for b in present])
        color = alt.Color("behaviour:N", scale=scale, legend=_legend("Response"))
    tooltip = ["set", "text", alt.Tooltip("stack:Q", title="prompts at this spot")]
    tooltip += [c for c in ("member", "behaviour", "response") if c in frame]
    encoding = dict(x=alt.X("x:Q", title="Component 1", axis=alt.Axis(labels=False, ticks=False)),
                    y=alt.Y("y:Q", title="Component 2", axis=alt.Axis(labels=False, ticks=False)),
                    color=color, tooltip=tooltip,
                    opacity=alt.condition("datum.match", alt.value(1.0), alt.value(0.15 if any_match else 0.55)),
                    size=alt.condition("datum.match", alt.value(140), alt.value(30)),
                    stroke=alt.condition("datum.match", alt.value("black"), alt.value(None)),
                    order=alt.Order("match:O"))
    chart = alt.Chart(frame).mark_circle().encode(**encoding)
    if facet:
        panel = min(width // 3 - 20, 300)
        chart = chart.add_params(alt.selection_point(name="picked", fields=["member", "set", "index"], on="click"))
        return chart.properties(width=panel, height=panel).facet(
            facet=alt.Facet("member:N", sort=natural_order(frame["member"].unique()), title=None,
                            header=alt.Header(labelFontSize=13, labelFontWeight="bold")),
            columns=3, title=title).resolve_scale(x="independent", y="independent")
    chart = chart.add_params(alt.selection_interval(name="picked", encodings=["x", "y"]))
    return chart.properties(title=title, width=width, height=height, autosize=PAD)


def with_bounds(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with `<score>_lo`/`<score>_hi` columns wherever it has `<score>_ci` pairs instead."""
    frame = frame.copy()
    for score in MEMBER_SCORES:
        if f"{score}_ci" in frame and f"{score}_lo" not in frame:
            bounds = frame[f"{score}_ci"].map(lambda ci: tuple(ci) if ci is not None and len(ci) == 2
                                              else (np.nan, np.nan))
            frame[f"{score}_lo"] = [np.nan if b[0] is None else b[0] for b in bounds]
            frame[f"{score}_hi"] = [np.nan if b[1] is None else b[1] for b in bounds]
    return frame


def score_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows of scores (score -> value, `<score>_ci` -> [lo, hi]) as a frame with `_lo`/`_hi` columns."""
    out = []
    for row in rows:
        flat = {k: v for k, v in row.items() if k in MEMBER_SCORES or not isinstance(v, (dict, list, tuple))}
        for score in MEMBER_SCORES:
            ci = score_interval(row, score)
            flat[f"{score}_lo"], flat[f"{score}_hi"] = ci if ci else (np.nan, np.nan)
        out.append(flat)
    return pd.DataFrame(out)


def bars(frame: pd.DataFrame, x: str, y: str, color: str | None = None, title: str = "") -> alt.Chart:
    encoding = {"x": alt.X(f"{x}:N", title=None, axis=alt.Axis(labelAngle=0)),
                "y": alt.Y(f"{y}:Q", title=y.replace("_", " ")),
                "tooltip": [c for c in (x, color) if c] + [alt.Tooltip(f"{y}:Q", format=".3f")]}
    if color:
        encoding.update(color=alt.Color(f"{color}:N", title=None), xOffset=f"{color}:N")
    return alt.Chart(frame).mark_bar().encode(**encoding).properties(title=title, height=220)


FINDING_SIZE = {"width": 250, "height": 200}


def finding_chart(finding) -> alt.Chart | None:
    """The chart beside each finding on the overview (a `findings.Finding`); None when it has no data."""
    data = finding.data
    if data.empty:
        return None
    if finding.number == 1:
        spread = {v: float(g.pivot(index="frac", columns="subspace", values="energy_kept_ratio").pipe(
            lambda w: (w.max(1) - w.min(1)).max())) for v, g in data.groupby("variant")}
        variant = max(spread, key=spread.get)  # the update the finding's "at most" refers to
        return energy_curves(data[data["variant"] == variant], **FINDING_SIZE).properties(
            title=f"{variant} update: energy kept, method same")
    if finding.number == 2:
        variant = "contaminated" if "contaminated" in set(data["variant"]) else data["variant"].iloc[0]
        rows = data[data["variant"] == variant].rename(columns={"subspace": "kept subspace"})
        return score_bars(rows, "kept subspace", **FINDING_SIZE).properties(
            title=f"{variant}, same, mean over ρ ≤ 0.5")
    if finding.number == 3:
        measured = data.dropna(subset=["refusal_gained_per_utility_lost"])
        return _selectivity(measured, FINDING_SIZE["width"], 150) if len(measured) else None
    if finding.number == 4:
        return overlap_curves(data, **FINDING_SIZE).properties(
            title="useful · harmful updates, mean over weight matrices")
    if finding.number == 5:
        n_layers = int(data["layer"].max())
        return per_layer(data, "mso", "useful · harmful prompts, η = 0.5", reference="mso_random",
                         y_title="Activation MSO", band=(0.65 * n_layers, 0.9 * n_layers), y_format=".1f",
                         **FINDING_SIZE)
    return None


def _selectivity(table: pd.DataFrame, width: int, height: int) -> alt.Chart:
    """Finding 3: refusal gained per point of accuracy lost, per subspace, with the claim's 1.25 x random line."""
    column = "refusal_gained_per_utility_lost"
    frame = table.dropna(subset=[column])
    bars_ = alt.Chart(frame).mark_bar().encode(
        y=alt.Y("subspace:N", title=None, sort=list(SUBSPACE_COLORS.domain), axis=alt.Axis(labelFontSize=12)),
        x=alt.X(f"{column}:Q", title="Refusal points gained per accuracy point lost", scale=alt.Scale(zero=True)),
        color=alt.Color("subspace:N", scale=SUBSPACE_COLORS, legend=None),
        tooltip=["subspace", alt.Tooltip(f"{column}:Q", format=".2f")])
    labels = bars_.mark_text(align="left", dx=4, fontSize=11).encode(text=alt.Text(f"{column}:Q", format=".2f"),
                                                                    color=alt.value("black"))
    layers = [bars_, labels]
    random = frame.loc[frame["subspace"] == "random", column]
    if len(random):
        line = pd.DataFrame({"x": [1.25 * float(random.iloc[0])], "label": ["1.25 × random"]})
        rule = alt.Chart(line).mark_rule(strokeDash=[4, 3], color="black").encode(x="x:Q")
        layers += [rule, rule.mark_text(align="left", dx=3, y=-8, fontSize=10).encode(text="label:N")]
    return alt.layer(*layers).properties(width=width, height=height, autosize=PAD,
                                         title="orth: selectivity of each subspace")
