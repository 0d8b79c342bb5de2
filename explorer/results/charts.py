"""Altair chart builders: tidy frames in, `alt.Chart` out. Every chart embeds fewer than 5,000 rows."""
from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from explorer.evaluation.evaluate import SCORES

MAX_ROWS = 5000
SCORE_TITLES = {"refusal_rate": "Refusal rate", "utility_accuracy": "Word-problem accuracy",
                "over_refusal": "Over-refusal (benign)", "target_logprob": "Log-prob of 'Sure, here is'"}
MODULE_ORDER = ["embed_tokens", "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
                "input_norm", "post_attn_norm", "q_proj.bias", "k_proj.bias", "v_proj.bias", "final_norm", "lm_head",
                "other"]
SUBSPACE_COLORS = alt.Scale(domain=["alignment", "random-k", "random"], range=["#d62728", "#ff7f0e", "#7f7f7f"])
SET_COLORS = alt.Scale(domain=["useful", "harmful", "benign"], range=["#1f77b4", "#d62728", "#2ca02c"])


def _capped(frame: pd.DataFrame, limit: int = MAX_ROWS, seed: int = 0) -> pd.DataFrame:
    return frame if len(frame) <= limit else frame.sample(limit, random_state=seed).sort_index()


def member_scores(scores: dict[str, dict]) -> alt.Chart:
    rows = [{"member": m, "score": SCORE_TITLES[k], "value": s[k]} for m, s in scores.items()
            for k in ("refusal_rate", "utility_accuracy", "over_refusal")]
    frame = pd.DataFrame(rows)
    return alt.Chart(frame).mark_bar().encode(
        x=alt.X("member:N", sort=list(scores), title=None),
        xOffset=alt.XOffset("score:N"),
        y=alt.Y("value:Q", title="Rate", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
        color=alt.Color("score:N", title=None),
        tooltip=["member", "score", alt.Tooltip("value:Q", format=".1%")],
    ).properties(height=220)


def spectrum(values: pd.DataFrame, title: str) -> alt.Chart:
    """Singular values (log scale) and cumulative energy of one tensor."""
    frame = values[["index", "singular_value"]].copy()
    frame["rank"] = frame["index"] + 1
    sq = frame["singular_value"].to_numpy(dtype=np.float64) ** 2
    frame["cumulative_energy"] = np.cumsum(sq) / sq.sum() if sq.sum() > 0 else 0.0
    frame = frame[frame["singular_value"] > 0]
    base = alt.Chart(frame).encode(x=alt.X("rank:Q", title="Rank (singular value index)"))
    sv = base.mark_line(color="#1f77b4").encode(
        y=alt.Y("singular_value:Q", scale=alt.Scale(type="log"), title="Singular value (log)"),
        tooltip=["rank", alt.Tooltip("singular_value:Q", format=".3g"), alt.Tooltip("cumulative_energy:Q", format=".1%")])
    energy = base.mark_line(color="#ff7f0e", strokeDash=[4, 3]).encode(
        y=alt.Y("cumulative_energy:Q", title="Cumulative energy", axis=alt.Axis(format="%")))
    return alt.layer(sv, energy).resolve_scale(y="independent").properties(title=title, height=260)


def layer_module_heatmap(frame: pd.DataFrame, value: str, title: str, selectable: bool = False,
                         value_title: str | None = None, domain: tuple[float, float] | None = None) -> alt.Chart:
    """A layer x module grid of one value; with `selectable`, clicking a cell selects its tensor."""
    modules = [m for m in MODULE_ORDER if m in set(frame["module"])]
    scale = alt.Scale(scheme="viridis", domain=list(domain)) if domain else alt.Scale(scheme="viridis")
    chart = alt.Chart(frame).mark_rect().encode(
        x=alt.X("module:N", sort=modules, title="Module"),
        y=alt.Y("layer:O", title="Layer (-1: outside the blocks)", sort="descending"),
        color=alt.Color(f"{value}:Q", title=value_title or value, scale=scale),
        tooltip=[alt.Tooltip("tensor:N") if "tensor" in frame else alt.Tooltip("module:N"), "layer:O",
                 alt.Tooltip(f"{value}:Q", format=".3g")],
    ).properties(title=title, height=max(200, 9 * frame["layer"].nunique()))
    if selectable:
        chart = chart.add_params(alt.selection_point(name="cell", fields=["tensor"], on="click"))
    return chart


def energy_curves(curves: pd.DataFrame, frac: float | None = None) -> alt.Chart:
    """Energy kept against rho, one line per subspace."""
    line = alt.Chart(curves).mark_line().encode(
        x=alt.X("frac:Q", title="Rank fraction ρ"),
        y=alt.Y("energy_kept_ratio:Q", title="Task-update energy kept", axis=alt.Axis(format="%")),
        color=alt.Color("subspace:N", scale=SUBSPACE_COLORS, title="Subspace"),
        tooltip=["subspace", "frac", alt.Tooltip("energy_kept_ratio:Q", format=".1%"),
                 alt.Tooltip("cosine_task_kept:Q", format=".3f"), "k_total"])
    layers = [line]
    if frac is not None:
        layers.append(alt.Chart(pd.DataFrame({"frac": [frac]})).mark_rule(strokeDash=[3, 3]).encode(x="frac:Q"))
    return alt.layer(*layers).properties(height=260)


def tradeoff(grid: pd.DataFrame, harm: str, references: dict[str, dict]) -> alt.Chart:
    """Utility against harm across rho, one line per (method, subspace); reference members as labelled points."""
    frame = grid.copy()
    frame["setting"] = frame["method"] + " · " + frame["subspace"]
    harm_title = SCORE_TITLES[harm]
    lines = alt.Chart(frame).mark_line(point=True).encode(
        x=alt.X(f"{harm}:Q", title=harm_title),
        y=alt.Y("utility_accuracy:Q", title="Word-problem accuracy", axis=alt.Axis(format="%")),
        color=alt.Color("setting:N", title="Method · subspace"),
        order="frac:Q",
        tooltip=["setting", "frac", alt.Tooltip(f"{harm}:Q", format=".3f"),
                 alt.Tooltip("utility_accuracy:Q", format=".1%"), alt.Tooltip("energy_kept_ratio:Q", format=".1%")])
    refs = pd.DataFrame([{"member": m, harm: s[harm], "utility_accuracy": s["utility_accuracy"]}
                         for m, s in references.items()])
    marks = alt.Chart(refs).mark_point(shape="diamond", size=150, filled=True, color="black").encode(
        x=f"{harm}:Q", y="utility_accuracy:Q", tooltip=["member", alt.Tooltip(f"{harm}:Q", format=".3f"),
                                                         alt.Tooltip("utility_accuracy:Q", format=".1%")])
    labels = marks.mark_text(dx=8, align="left").encode(text="member:N")
    return alt.layer(lines, marks, labels).properties(height=340)


def removed_by_layer(frame: pd.DataFrame) -> alt.Chart:
    return alt.Chart(frame).mark_bar().encode(
        x=alt.X("layer:O", title="Layer (-1: outside the blocks)"),
        y=alt.Y("removed_frac:Q", title="Task energy removed", axis=alt.Axis(format="%")),
        tooltip=["layer", alt.Tooltip("removed_frac:Q", format=".1%")]).properties(height=180)


def overlap_curves(frame: pd.DataFrame, color: str = "pair", x: str = "energy_frac",
                   x_title: str = "Energy fraction η") -> alt.Chart:
    """MSO (solid) and its random baseline (dashed) against η or layer."""
    long = frame.melt(id_vars=[c for c in frame.columns if c not in ("mso", "mso_random")],
                      value_vars=["mso", "mso_random"], var_name="measure", value_name="overlap")
    long["measure"] = long["measure"].map({"mso": "MSO", "mso_random": "random baseline"})
    return alt.Chart(_capped(long)).mark_line(point=True).encode(
        x=alt.X(f"{x}:Q", title=x_title),
        y=alt.Y("overlap:Q", title="Mode subspace overlap", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color(f"{color}:N", title=color.capitalize()),
        strokeDash=alt.StrokeDash("measure:N", title=None),
        tooltip=[color, x, "measure", alt.Tooltip("overlap:Q", format=".3f")]).properties(height=280)


def embedding_scatter(frame: pd.DataFrame, title: str) -> alt.Chart:
    return alt.Chart(_capped(frame)).mark_circle(size=28, opacity=0.7).encode(
        x=alt.X("x:Q", title="Component 1", axis=alt.Axis(labels=False)),
        y=alt.Y("y:Q", title="Component 2", axis=alt.Axis(labels=False)),
        color=alt.Color("set:N", scale=SET_COLORS, title="Prompt set"),
        tooltip=["set", "text"]).properties(title=title, height=380).interactive()


def per_layer(frame: pd.DataFrame, value: str, title: str, reference: str | None = None, color: str = "member",
              y_title: str | None = None) -> alt.Chart:
    """A value against layer, one line per `color`; `reference` as a dashed rule or line."""
    chart = alt.Chart(frame).mark_line(point=True).encode(
        x=alt.X("layer:Q", title="Layer (hidden state index; 0 = embeddings)"),
        y=alt.Y(f"{value}:Q", title=y_title or value),
        color=alt.Color(f"{color}:N", title=color.capitalize()),
        tooltip=[color, "layer", alt.Tooltip(f"{value}:Q", format=".3f")])
    layers = [chart]
    if reference is not None:
        layers.append(alt.Chart(frame).mark_line(strokeDash=[4, 4], color="gray").encode(
            x="layer:Q", y=f"mean({reference}):Q"))
    return alt.layer(*layers).properties(title=title, height=260)


def score_bars(frame: pd.DataFrame, group: str) -> alt.Chart:
    """Scores of a few models side by side (spot-check against the family's references)."""
    long = frame.melt(id_vars=[group], value_vars=[s for s in SCORES if s in frame and s != "target_logprob"],
                      var_name="score", value_name="value")
    long["score"] = long["score"].map(SCORE_TITLES)
    return alt.Chart(long).mark_bar().encode(
        x=alt.X(f"{group}:N", title=None), xOffset="score:N",
        y=alt.Y("value:Q", axis=alt.Axis(format="%"), title="Rate"), color=alt.Color("score:N", title=None),
        tooltip=[group, "score", alt.Tooltip("value:Q", format=".1%")]).properties(height=220)


def bars(frame: pd.DataFrame, x: str, y: str, color: str | None = None, title: str = "") -> alt.Chart:
    encoding = {"x": alt.X(f"{x}:N", title=None), "y": alt.Y(f"{y}:Q", title=y.replace("_", " ")),
                "tooltip": [c for c in (x, color) if c] + [alt.Tooltip(f"{y}:Q", format=".3f")]}
    if color:
        encoding.update(color=alt.Color(f"{color}:N", title=None), xOffset=f"{color}:N")
    return alt.Chart(frame).mark_bar().encode(**encoding).properties(title=title, height=220)
