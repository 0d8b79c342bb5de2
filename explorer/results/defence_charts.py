"""Altair charts of Safe LoRA beside the paper's projections: tidy frames in, `alt.Chart` out."""
from __future__ import annotations

import altair as alt
import pandas as pd

from explorer.results.charts import MODULE_ORDER, SCORE_TITLES
from explorer.results.defences import with_intervals

SAFELORA = "Safe LoRA"
SETTING_COLORS = alt.Scale(domain=[SAFELORA, "orth · alignment", "orth · random-k", "orth · random"],
                           range=["#1f77b4", "#d62728", "#ff7f0e", "#7f7f7f"])
CELL_WIDTH, CELL_HEIGHT = 78, 26


def projected_map(cosines: pd.DataFrame, threshold: float) -> alt.Chart:
    """Candidate tensors as a layer x module grid coloured by cosine; those projected at `threshold` are opaque,
    outlined and labelled with their cosine, the others faded."""
    frame = cosines[cosines["candidate"]].copy()
    frame["state"] = frame["cosine"].le(threshold).map({True: "projected", False: "keeps its update"})
    frame["label"] = frame["cosine"].map("{:.2f}".format)
    modules = [m for m in MODULE_ORDER if m in set(frame["module"])]
    low, high = float(frame["cosine"].min()), float(frame["cosine"].max())
    projected = int((frame["state"] == "projected").sum())
    base = alt.Chart(frame).encode(
        x=alt.X("module:N", sort=modules, title="Module", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("layer:O", title="Layer", sort="ascending"))
    cells = base.mark_rect(stroke="black").encode(
        color=alt.Color("cosine:Q", title="cos(C·dT, dT)", scale=alt.Scale(scheme="viridis", domain=[low, high])),
        opacity=alt.Opacity("state:N", legend=None, scale=alt.Scale(domain=["projected", "keeps its update"],
                                                                    range=[1.0, 0.25])),
        strokeWidth=alt.condition(alt.datum.state == "projected", alt.value(2), alt.value(0)),
        tooltip=["tensor:N", "layer:O", "module:N", alt.Tooltip("cosine:Q", format=".4f"), "state:N"])
    dark = (alt.datum.state == "projected") & (alt.datum.cosine < (low + high) / 2)  # viridis is dark at the low end
    text = base.mark_text(fontSize=11).encode(text="label:N", color=alt.condition(dark, alt.value("white"),
                                                                                    alt.value("black")))
    # Streamlit sizes the whole chart (axes, title and legends included) to width x height.
    return alt.layer(cells, text).properties(
        title=alt.TitleParams(f"{projected} of {len(frame)} candidate tensors projected at τ = {threshold:.3f}",
                              subtitle="Outlined: projected through C. Faded: keeps its task update."),
        width=CELL_WIDTH * len(modules) + 190, height=max(220, CELL_HEIGHT * frame["layer"].nunique() + 120))


def _curve_frame(safelora: pd.DataFrame, grid: pd.DataFrame) -> pd.DataFrame:
    defended = with_intervals(safelora).assign(setting=SAFELORA, order=safelora["threshold"],
                                               step=safelora["threshold"].map("τ = {:.3f}".format))
    orth = with_intervals(grid[grid["method"] == "orth"])
    orth = orth.assign(setting="orth · " + orth["subspace"], order=orth["frac"], step=orth["frac"].map("ρ = {:.2f}".format))
    return pd.concat([defended, orth], ignore_index=True)


def defence_tradeoff(safelora: pd.DataFrame, grid: pd.DataFrame, harm: str, references: dict[str, dict],
                     threshold: float | None = None) -> alt.Chart:
    """Utility against harm: Safe LoRA across τ, orthogonal projection across ρ in the alignment subspace and the
    random controls, with 95% intervals as error bars; the unprojected models as labelled diamonds; the Safe LoRA
    point at `threshold` ringed."""
    frame = _curve_frame(safelora, grid)
    x_title, y_title = SCORE_TITLES[harm], SCORE_TITLES["utility_accuracy"]
    base = alt.Chart(frame).encode(color=alt.Color("setting:N", scale=SETTING_COLORS, title="Method"))
    lines = base.mark_line(point=True).encode(
        x=alt.X(f"{harm}:Q", title=x_title, scale=alt.Scale(zero=False)),
        y=alt.Y("utility_accuracy:Q", title=y_title, axis=alt.Axis(format="%")),
        order="order:Q",
        tooltip=["setting:N", "step:N", alt.Tooltip(f"{harm}:Q", format=".3f"),
                 alt.Tooltip("utility_accuracy:Q", format=".1%"), alt.Tooltip("energy_kept_ratio:Q", format=".1%")])
    layers = [lines]
    if {f"{harm}_lo", "utility_accuracy_lo"} <= set(frame):
        bars = frame.dropna(subset=[f"{harm}_lo", f"{harm}_hi", "utility_accuracy_lo", "utility_accuracy_hi"])
        error = alt.Chart(bars).encode(color=alt.Color("setting:N", scale=SETTING_COLORS))
        layers += [error.mark_errorbar(opacity=0.45).encode(x=alt.X(f"{harm}_lo:Q", title=x_title), x2=f"{harm}_hi:Q",
                                                            y=alt.Y("utility_accuracy:Q", title=y_title)),
                   error.mark_errorbar(opacity=0.45).encode(y=alt.Y("utility_accuracy_lo:Q", title=y_title),
                                                            y2="utility_accuracy_hi:Q",
                                                            x=alt.X(f"{harm}:Q", title=x_title))]
    if threshold is not None:
        chosen = safelora[safelora["threshold"] <= threshold + 1e-12].tail(1)
        layers.append(alt.Chart(chosen).mark_point(size=320, strokeWidth=2, color="black").encode(
            x=f"{harm}:Q", y="utility_accuracy:Q"))
    refs = pd.DataFrame([{"member": m, harm: s[harm], "utility_accuracy": s["utility_accuracy"]}
                         for m, s in references.items()])
    refs = refs.groupby([harm, "utility_accuracy"], as_index=False)["member"].agg(", ".join)  # one label per spot
    marks = alt.Chart(refs).mark_point(shape="diamond", size=150, filled=True, color="black").encode(
        x=f"{harm}:Q", y="utility_accuracy:Q", tooltip=["member:N", alt.Tooltip(f"{harm}:Q", format=".3f"),
                                                         alt.Tooltip("utility_accuracy:Q", format=".1%")])
    layers += [marks, marks.mark_text(dx=9, align="left", fontSize=12).encode(text="member:N")]
    return alt.layer(*layers).properties(width=560, height=380)


def selectivity_bars(table: pd.DataFrame) -> alt.Chart:
    """Refusal regained per point of utility lost, one bar per method, with its 95% interval."""
    finite = table.dropna(subset=["selectivity"])
    finite = finite[finite["selectivity"].abs() < float("inf")]
    base = alt.Chart(finite).encode(x=alt.X("method:N", title=None, sort=None, axis=alt.Axis(labelAngle=0)))
    layers = [base.mark_bar().encode(
        y=alt.Y("selectivity:Q", title="Refusal regained per utility lost"),
        color=alt.Color("method:N", scale=SETTING_COLORS, legend=None),
        tooltip=["method:N", alt.Tooltip("selectivity:Q", format=".2f"), alt.Tooltip("lo:Q", format=".2f"),
                 alt.Tooltip("hi:Q", format=".2f")])]
    intervals = finite.dropna(subset=["lo", "hi"])
    if len(intervals):
        layers.append(alt.Chart(intervals).mark_errorbar(ticks=True, color="black").encode(
            x=alt.X("method:N", sort=None), y="lo:Q", y2="hi:Q"))
    return alt.layer(*layers).properties(width=320, height=220)


UNPROTECTED = "unprotected (α = 0)"


def lox_tradeoff(table: pd.DataFrame, harm: str) -> alt.Chart:
    """Each model of the `lox` table on utility against harm: every setting's extrapolated aligned model (hollow)
    joined to its contaminated fine-tune (filled, with 95% intervals as error bars); the unprotected pair (the
    aligned model and the family's contaminated member) in black."""
    frame = table.drop(columns=["outcomes", "counts"], errors="ignore").copy()
    frame["setting"] = [UNPROTECTED if a == 0 else f"LoX α = {a:g}, ρ = {f:g}"
                        for a, f in zip(frame["alpha"], frame["frac"])]
    frame["stage"] = frame["model"].map({"extrapolated": "before the fine-tune", "fine-tuned": "after"})
    frame["order"] = (frame["model"] == "fine-tuned").astype(int)
    ordered = frame.sort_values(["frac", "alpha"])
    settings = list(dict.fromkeys(sorted(ordered["setting"], key=lambda s: s != UNPROTECTED)))
    palette = ["#000000", "#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]
    colors = alt.Scale(domain=settings, range=(palette * (1 + len(settings) // len(palette)))[:len(settings)])
    x_title, y_title = SCORE_TITLES[harm], SCORE_TITLES["utility_accuracy"]
    x = alt.X(f"{harm}:Q", title=x_title, scale=alt.Scale(zero=False))
    y = alt.Y("utility_accuracy:Q", title=y_title, axis=alt.Axis(format="%"))
    base = alt.Chart(frame).encode(x=x, y=y, color=alt.Color("setting:N", scale=colors, title="Aligned model"))
    tooltip = ["setting:N", "stage:N", alt.Tooltip(f"{harm}:Q", format=".3f"),
               alt.Tooltip("utility_accuracy:Q", format=".1%")]
    layers = [base.mark_line(strokeDash=[4, 3], opacity=0.6).encode(detail="setting:N", order="order:Q"),
              base.transform_filter(alt.datum.order == 0).mark_point(size=90, filled=False, strokeWidth=2)
              .encode(tooltip=tooltip),
              base.transform_filter(alt.datum.order == 1).mark_point(size=110, filled=True, opacity=1)
              .encode(tooltip=tooltip)]
    after = frame[frame["order"] == 1].dropna(subset=[f"{harm}_lo", f"{harm}_hi", "utility_accuracy_lo",
                                                      "utility_accuracy_hi"])
    if len(after):
        error = alt.Chart(after).encode(color=alt.Color("setting:N", scale=colors))
        layers += [error.mark_errorbar(opacity=0.5).encode(x=alt.X(f"{harm}_lo:Q", title=x_title), x2=f"{harm}_hi:Q",
                                                           y=y),
                   error.mark_errorbar(opacity=0.5).encode(y=alt.Y("utility_accuracy_lo:Q", title=y_title),
                                                           y2="utility_accuracy_hi:Q", x=x)]
    return alt.layer(*layers).properties(
        width=560, height=380,
        title=alt.TitleParams("Before and after the same contaminated fine-tune",
                              subtitle="Hollow: the aligned model (extrapolated by LoX). Filled: after the fine-tune, "
                                       "with 95% intervals."))
