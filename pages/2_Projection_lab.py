"""Projection lab: project a task update onto, or away from, the top-k alignment subspace and watch the scores."""
import numpy as np
import pandas as pd
import streamlit as st

from pages.common import ui

bundle = ui.page("Projection lab", "Projection lab",
                 "**same** keeps the part of the task update inside the top-k alignment subspace, **orth** the part "
                 "outside it, **opp** subtracts the inside part. The random controls use subspaces of the same size: "
                 "**random-k**, k of the alignment update's own directions chosen at random; **random**, a random "
                 "k-dimensional subspace.")
from explorer.evaluation.evaluate import SCORES  # noqa: E402
from explorer.results import charts  # noqa: E402
from explorer.results.family_comparison import largest_gap  # noqa: E402
from explorer.results.findings import focus_first  # noqa: E402
from explorer.results.samples import samples_from_rows, samples_table  # noqa: E402

curves = ui.table(bundle, "energy_curves")
grid = ui.table(bundle, "projection")
family, problem = ui.checkpoints()
variants = list(dict.fromkeys(curves["variant"]))
c1, c2, c3, c4 = st.columns(4)
# A grid may score some variants only; it opens on the one the findings read.
scored = [v for v in focus_first(variants) if v in set(grid["variant"])]
variant = c1.selectbox("Variant", variants, index=variants.index(scored[0]) if scored else 0, key="proj_variant")
method = c2.selectbox("Method", ["same", "orth", "opp"], key="proj_method")
subspace = c3.selectbox("Subspace", ["alignment", "random-k", "random"], key="proj_subspace")
frac = c4.slider("Rank fraction ρ", 0.01, 0.99, 0.25, 0.01, key="proj_frac")
side = None  # results precomputed before projection sides existed hold the short side's only
if "side" in curves:
    sides = sorted(set(curves["side"]), key=lambda s: s != "left")
    side = st.radio("Projection side", sides, horizontal=True, key="proj_side",
                    format_func=lambda s: {"left": "left (the paper's: P_k from dA's left singular vectors)",
                                           "short": "short (each matrix's smaller side)"}.get(s, s))
    curves = curves[curves["side"] == side]
    grid = grid[grid["side"] == side] if "side" in grid else grid

curve = curves[(curves["variant"] == variant) & (curves["method"] == method)]
point = curve[(curve["subspace"] == subspace) & np.isclose(curve["frac"], frac)].iloc[0]
m1, m2, m3, m4 = st.columns(4)
m1.metric("Energy kept", f"{point['energy_kept_ratio']:.1%}", help="share of the task update's squared norm kept")
m2.metric("cos(task, kept)", f"{point['cosine_task_kept']:.3f}")
m3.metric("cos(task, alignment)", f"{point['cosine_task_alignment']:.3f}")
m4.metric("k over all tensors", f"{int(point['k_total']):,}", help="directions kept, summed over every tensor")

st.subheader("Safety and utility at this point")
cached = grid[(grid["variant"] == variant) & (grid["method"] == method) & (grid["subspace"] == subspace)
              & np.isclose(grid["frac"], frac)]
live = st.session_state.setdefault("live_points", {})
live_key = (bundle.manifest["family"], variant, method, subspace, round(frac, 2), side)
scores = cached.iloc[0].to_dict() if len(cached) else live.get(live_key)
if scores is None:
    grid_methods, grid_fracs = sorted(set(grid["method"])), sorted(set(grid["frac"]))
    if grid.empty and side is not None:
        reason = f"The precomputed grid holds no point on the **{side}** side (it is for the paper's left side)."
    elif variant not in scored:
        reason = (f"The precomputed grid scores the {' and '.join(scored)} fine-tune only, not {variant} "
                  f"(`python -m explorer precompute FAMILY --extend --grid-variants {variant}` adds it).")
    elif method not in grid_methods:
        reason = f"Method **{method}** is not in the precomputed grid, which holds {' and '.join(grid_methods)}."
    elif not np.isclose(grid_fracs, frac).any():
        reason = f"ρ = {frac:.2f} is not in the precomputed grid (ρ = {', '.join(f'{f:g}' for f in grid_fracs)})."
    else:
        reason = f"The precomputed grid has no {variant} · {subspace} point at ρ = {frac:.2f}."
    st.info(f"{reason} Compute it live: the aligned model's weights are projected in place and scored with the "
            "quick profile (teacher-forced log-prob on 64 prompts; generations on 32 prompts each).")
    if ui.live_button("Compute live", "compute_live", family, problem):
        from explorer.evaluation.scores import PointScorer

        bar = st.progress(0.0, text="projecting")
        with ui.errors("Computing this point live"):
            scorer = st.session_state.setdefault(f"scorer:{family.path}", PointScorer(family))
            scores = scorer.score(variant, method, subspace, frac, profile="quick",
                                  callback=ui.progress_callback(bar), **({"side": side} if side else {}))
        bar.empty()
        live[live_key] = scores


def _delta(value: float, reference: float | None, score: str) -> str | None:
    if reference is None or value is None:
        return None
    if score == "target_logprob":
        return f"{value - reference:+.2f} vs unprojected"
    return f"{100 * (value - reference):+.0f} points vs unprojected"


if scores is not None:
    reference = bundle.scores.get(variant, {})
    if bundle.has("grid_reference"):  # the unprojected fine-tune on the grid's prompts: a like-for-like delta
        same_prompts = ui.table(bundle, "grid_reference")
        same_prompts = same_prompts[(same_prompts["member"] == variant)
                                    & (same_prompts["profile"] == scores.get("profile"))]
        if len(same_prompts):
            reference = {**reference, **same_prompts.iloc[0].to_dict()}
    profile = scores.get("profile", bundle.manifest.get("grid_profile"))
    comparable = reference.get("profile", bundle.manifest["profile"]) == profile  # the same prompts
    left, right = st.columns([2, 3])
    cols = left.columns(2)
    for i, score in enumerate(SCORES):
        value = scores.get(score)
        if value is None:
            continue
        ci = charts.score_interval(scores, score)
        is_rate = score != "target_logprob"
        shown = f"{value:.0%}" if is_rate else f"{value:.2f}"
        interval = None if ci is None else f"{ci[0]:.0%}–{ci[1]:.0%}" if is_rate else f"{ci[0]:.2f} to {ci[1]:.2f}"
        delta = _delta(value, reference.get(score), score) if comparable else None
        cols[i % 2].metric(charts.SCORE_TITLES[score], shown, delta=delta, delta_color="off",
                           help=interval and f"95% interval {interval}")
    if comparable:
        left.caption(f"Scored with the **{profile}** profile, like the unprojected {variant} fine-tune it is compared "
                     "with. Differences are in percentage points (log-prob: in nats per token).")
    else:
        left.caption(f"Scored with the **{profile}** profile. No difference is shown: the unprojected {variant} "
                     f"fine-tune was scored with the **{reference.get('profile', bundle.manifest['profile'])}** "
                     "profile, on other prompts. `python -m explorer precompute` stores it on the grid's prompts.")
    samples = scores.get("samples") if isinstance(scores.get("samples"), dict) else None
    if samples is None and bundle.has("projection_samples"):
        rows = ui.table(bundle, "projection_samples")
        rows = rows[(rows["variant"] == variant) & (rows["method"] == method) & (rows["subspace"] == subspace)
                    & np.isclose(rows["frac"], frac)]
        samples = samples_from_rows(rows) if len(rows) else None
    with right:
        if samples:
            st.markdown("**Responses at this point** (greedy, the first evaluation prompts)")
            shown = samples_table(samples, reference.get("samples"), f"unprojected {variant}")
        else:
            st.markdown(f"**Responses of the unprojected {variant} fine-tune** (greedy, the first evaluation prompts)")
            st.caption("This family's precomputed results keep no responses for grid points; run "
                       "`python -m explorer precompute` again to store them (table projection_samples).")
            shown = samples_table(reference.get("samples") or {}).rename(
                columns={"response here": f"response, unprojected {variant}"})
        kinds = list(dict.fromkeys(shown["kind"])) if len(shown) else []
        for tab, kind in zip(st.tabs(kinds) if kinds else [], kinds):
            tab.table(shown[shown["kind"] == kind].drop(columns="kind").set_index("prompt"))

left, right = st.columns([4, 5])
with left:
    compared = ui.comparison(bundle)
    overlaid = curve
    if compared is not None:
        other, other_bundle = compared
        theirs = ui.table(other_bundle, "energy_curves")
        theirs = theirs[(theirs["variant"] == variant) & (theirs["method"] == method)
                        & ((theirs["side"] == side) if side is not None and "side" in theirs else True)]
        overlaid = pd.concat([curve.assign(family=bundle.manifest["family"]), theirs.assign(family=other)])
        gap = largest_gap(overlaid, "energy_kept_ratio", ["subspace", "frac"])
        if gap is None:
            st.caption(f"{other} has no {variant} · {method} energy curve on this side to overlay.")
    st.markdown("**Energy kept against ρ**" + (f" ({bundle.manifest['family']} solid, {compared[0]} dashed)"
                                                if compared is not None else ""))
    st.altair_chart(charts.energy_curves(overlaid, frac, width=330), width="content")
    if compared is not None and gap is not None:
        st.caption(f"The two families' curves differ by at most {gap * 100:.1f} points of energy at any ρ"
                   + (": the dashed lines lie under the solid ones." if gap < 0.02 else "."))
with right:
    harm = st.radio("Harm axis", ["refusal_rate", "target_logprob"], format_func=charts.SCORE_TITLES.get,
                    horizontal=True, key="proj_harm")
    st.markdown(f"**Utility against harm across ρ** ({variant}, precomputed grid)")
    refs = {m: bundle.scores[m] for m in ("aligned", variant) if m in bundle.scores}
    live_point = ({**scores, "frac": frac} if scores is not None and not len(cached) else None)
    if variant in scored or live_point is not None:
        st.altair_chart(charts.tradeoff(grid[grid["variant"] == variant], harm, refs,
                                        current={"method": method, "subspace": subspace, "frac": frac},
                                        live_point=live_point, width=380, height=300), width="content")
        st.caption("Bars: 95% intervals where stored. Precomputed points only; a live point is ringed when computed.")
        points = grid[grid["variant"] == variant]
        for score, label in (("utility_accuracy", "word-problem accuracy"), (harm, "the harm axis")):
            values = set(points[score].dropna().round(6))
            if len(values) == 1:
                value = values.pop()
                shown = f"{value:.2f}" if score == "target_logprob" else f"{value:.0%}"
                st.caption(f"Every precomputed point of the {variant} fine-tune has the same {label} ({shown}): "
                           "its points move along the other axis only.")
    else:
        st.info(f"No precomputed point of the {variant} fine-tune: the grid scores {', '.join(scored) or 'none'}. "
                f"Compute points live above, or add its grid with `python -m explorer precompute FAMILY --extend "
                f"--grid-variants {variant}`.")

removed = ui.table(bundle, "removed_by_layer")
if side is not None and "side" in removed:
    removed = removed[removed["side"] == side]
at = removed[(removed["variant"] == variant) & (removed["method"] == method) & (removed["subspace"] == subspace)
             & np.isclose(removed["frac"], frac)]
st.markdown(f"**Task-update energy removed, per layer** ({variant}, {method} · {subspace}, ρ = {frac:.2f})")
if len(at):
    st.altair_chart(charts.removed_by_layer(at, width=800), width="content")
elif removed.empty:
    st.info(f"Energy removed per layer is precomputed for the grid's points only, none of them on the {side} side.")
else:
    st.info("Energy removed per layer is precomputed for the grid's points only (methods "
            f"{' and '.join(sorted(set(removed['method'])))}; ρ = "
            f"{', '.join(f'{f:g}' for f in sorted(set(removed['frac'])))}); choose one of them to see it.")
ui.download(grid, "projection grid", "projection-grid.csv", key="dl_grid")
ui.download(curve, "energy curves", f"energy-{variant}-{method}.csv", key="dl_curves")

st.header("Defences: Safe LoRA beside the projections")
from pages.common import defences  # noqa: E402

defences.render(bundle)
