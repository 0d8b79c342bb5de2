"""Spot-check: where does a new fine-tune of the family's aligned model sit next to the family's references?"""
import streamlit as st

from pages.common import ui

bundle = ui.page("Spot-check", "Spot-check a new model",
              "Give a checkpoint fine-tuned from this family's **aligned** model: a local folder, a hub id "
              "(`org/name@revision`) or a LoRA adapter folder. Its task update is compared with the family's useful "
              "and harmful updates.")
from explorer.results import charts  # noqa: E402

with st.form("spot_form"):
    spec = st.text_input("Checkpoint", key="spot_spec", placeholder="path/to/checkpoint, org/name or adapter")
    submitted = st.form_submit_button("Analyse", type="primary")
if submitted:
    if not spec.strip():
        st.error("Give a checkpoint path, hub id or adapter folder.")
        st.stop()
    family = ui.live_family()
    from explorer.weights.spotcheck import spot_check

    bar = st.progress(0.0, text="reading the checkpoint")
    with ui.errors("Analysing the checkpoint"):
        st.session_state["spot_result"] = spot_check(family, spec.strip(), ui.progress_callback(bar))
        st.session_state.pop("spot_scores", None)
    bar.empty()

result = st.session_state.get("spot_result")
if result is not None:
    closest = result.closest()
    if closest:
        name, values = closest
        st.success(f"Its update overlaps most with the **{name}** fine-tune's update (mean MSO at η = 0.5: "
                   + ", ".join(f"{k} {v:.3f}" for k, v in values.items()) + ").")
    left, right = st.columns(2)
    left.markdown("**Overlap with the family's updates**")
    left.altair_chart(charts.overlap_curves(result.overlaps, color="reference"), width="stretch")
    right.markdown("**Energy kept in the alignment subspace**")
    right.altair_chart(charts.energy_curves(result.energy), width="stretch")
    st.altair_chart(charts.layer_module_heatmap(result.summary, "effective_rank", "Effective rank of its update",
                                                value_title="Effective rank"), width="stretch")
    ui.download(result.summary, "its spectrum statistics", "spot-check-spectra.csv", key="dl_spot")
    if st.button("Score it (quick profile)", key="spot_score"):
        from explorer.evaluation.scores import member_scores

        bar = st.progress(0.0, text="loading the model")
        with ui.errors("Scoring the checkpoint"):
            st.session_state["spot_scores"] = member_scores(result.family, "candidate", "quick",
                                                            ui.progress_callback(bar))
        bar.empty()
    if "spot_scores" in st.session_state:
        import pandas as pd

        rows = [{"model": m, **{k: bundle.scores[m][k] for k in charts.SCORE_TITLES}}
                for m in ("aligned", "useful", "harmful") if m in bundle.scores]
        rows.append({"model": "candidate", **{k: st.session_state["spot_scores"][k] for k in charts.SCORE_TITLES}})
        st.altair_chart(charts.score_bars(pd.DataFrame(rows), "model"), width="stretch")
        st.caption("The candidate is scored with the quick profile; the references with the "
                   f"{bundle.manifest['profile']} profile.")
