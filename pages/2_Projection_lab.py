"""Projection lab: project a task update onto, or away from, the top-k alignment subspace and watch the scores."""
import streamlit as st

from pages.common import ui

bundle = ui.page("Projection lab", "Projection lab",
              "**same** keeps the part of the task update inside the top-k alignment subspace, **orth** the part "
              "outside it, **opp** subtracts the inside part. The random controls use subspaces of the same size.")
from explorer.evaluation.evaluate import SCORES  # noqa: E402
from explorer.results import charts  # noqa: E402

curves = ui.table(bundle, "energy_curves")
grid = ui.table(bundle, "projection")
variants = list(dict.fromkeys(curves["variant"]))
c1, c2, c3, c4 = st.columns(4)
variant = c1.selectbox("Variant", variants, key="proj_variant")
method = c2.selectbox("Method", ["same", "orth", "opp"], key="proj_method")
subspace = c3.selectbox("Subspace", ["alignment", "random-k", "random"], key="proj_subspace")
frac = c4.slider("Rank fraction ρ", 0.01, 0.99, 0.25, 0.01, key="proj_frac")

curve = curves[(curves["variant"] == variant) & (curves["method"] == method)]
point = curve[(curve["subspace"] == subspace) & ((curve["frac"] - frac).abs() < 1e-9)].iloc[0]
m1, m2, m3, m4 = st.columns(4)
m1.metric("Energy kept", f"{point['energy_kept_ratio']:.1%}")
m2.metric("cos(task, kept)", f"{point['cosine_task_kept']:.3f}")
m3.metric("cos(task, alignment)", f"{point['cosine_task_alignment']:.3f}")
m4.metric("k over all tensors", f"{int(point['k_total']):,}")

st.subheader("Safety and utility at this point")
cached = grid[(grid["variant"] == variant) & (grid["method"] == method) & (grid["subspace"] == subspace)
              & ((grid["frac"] - frac).abs() < 1e-9)]
live = st.session_state.setdefault("live_points", {})
live_key = (bundle.manifest["family"], variant, method, subspace, round(frac, 2))
scores = cached.iloc[0].to_dict() if len(cached) else live.get(live_key)
if scores is None:
    st.info(f"ρ = {frac:.2f} is not in the precomputed grid ({', '.join(map(str, sorted(set(grid['frac']))))}). "
            "Compute it live: the aligned model's weights are projected in place and scored with the quick "
            "profile (teacher-forced log-prob on every evaluation prompt; generations on 32 prompts each).")
    if st.button("Compute live", key="compute_live", type="primary"):
        family = ui.live_family()
        from explorer.evaluation.scores import PointScorer

        bar = st.progress(0.0, text="projecting")
        with ui.errors("Computing this point live"):
            scorer = st.session_state.setdefault(f"scorer:{family.path}", PointScorer(family))
            scores = scorer.score(variant, method, subspace, frac, profile="quick",
                                  callback=ui.progress_callback(bar))
        bar.empty()
        live[live_key] = scores
if scores is not None:
    cols = st.columns(4)
    for col, score in zip(cols, SCORES):
        reference = bundle.scores[variant][score]
        value = scores[score]
        col.metric(charts.SCORE_TITLES[score], f"{value:.1%}" if score != "target_logprob" else f"{value:.2f}",
                   delta=f"{value - reference:+.2f} vs unprojected", delta_color="off")
    st.caption(f"Scored with the **{scores['profile']}** profile.")

left, right = st.columns(2)
left.markdown("**Energy kept against ρ**")
left.altair_chart(charts.energy_curves(curve, frac), width="stretch")
harm = right.radio("Harm axis", ["refusal_rate", "target_logprob"], format_func=charts.SCORE_TITLES.get,
                   horizontal=True, key="proj_harm")
right.markdown(f"**Utility against harm across ρ** ({variant}, precomputed grid)")
refs = {m: bundle.scores[m] for m in ("aligned", variant) if m in bundle.scores}
right.altair_chart(charts.tradeoff(grid[grid["variant"] == variant], harm, refs), width="stretch")

removed = ui.table(bundle, "removed_by_layer")
at = removed[(removed["variant"] == variant) & (removed["method"] == method) & (removed["subspace"] == subspace)
             & ((removed["frac"] - frac).abs() < 1e-9)]
if len(at):
    st.markdown("**Task-update energy removed, per layer**")
    st.altair_chart(charts.removed_by_layer(at), width="stretch")
ui.download(grid, "projection grid", "projection-grid.csv", key="dl_grid")
ui.download(curve, "energy curves", f"energy-{variant}-{method}.csv", key="dl_curves")

st.header("Defences: Safe LoRA beside the projections")
from pages.common import defences  # noqa: E402

defences.render(bundle)
