"""Spot-check: where does a new fine-tune of the family's aligned model sit next to the family's references?"""
import streamlit as st

from pages.common import ui

bundle = ui.page("Spot-check", "Spot-check a new model",
                 "Give a checkpoint fine-tuned from this family's **aligned** model: a local folder, a hub id "
                 "(`org/name@revision`) or a LoRA adapter folder. Its task update is compared with the family's "
                 "useful and harmful updates.")
from explorer.core.errors import ExplorerError  # noqa: E402
from explorer.results import charts  # noqa: E402

family, problem = ui.checkpoints()
with st.form("spot_form"):
    spec = st.text_input("Checkpoint", key="spot_spec", placeholder="path/to/checkpoint, org/name or adapter")
    submitted = st.form_submit_button("Analyse", type="primary", disabled=family is None)
    if problem:
        st.caption(f"Analysing compares the checkpoint with the family's own updates. {problem}")
if submitted and family is not None:
    if not spec.strip():
        st.error("Give a checkpoint path, hub id or adapter folder.")
        st.stop()
    from explorer.weights.spotcheck import spot_check

    bar = st.progress(0.0, text="reading the checkpoint")
    with ui.errors("Analysing the checkpoint"):
        try:
            st.session_state["spot_result"] = spot_check(family, spec.strip(), ui.progress_callback(bar))
            st.session_state.pop("spot_scores", None)
        except ExplorerError as exc:
            bar.empty()
            st.error(f"Cannot spot-check `{spec.strip()}`: {exc}")
            st.stop()
    bar.empty()

result = st.session_state.get("spot_result")
if result is not None:
    closest = result.closest()
    if closest:
        name, values = closest
        st.success(f"Its update overlaps most with the **{name}** fine-tune's update (mean MSO at η = 0.5: "
                   + ", ".join(f"{k} {v:.3f}" for k, v in values.items()) + ").")
    left, right = st.columns(2)
    with left:
        st.markdown("**Overlap with the family's updates**")
        st.altair_chart(charts.overlap_curves(result.overlaps, color="reference", width=230), width="content")
    with right:
        st.markdown("**Energy kept in the alignment subspace**")
        st.altair_chart(charts.energy_curves(result.energy, width=320), width="content")
    st.altair_chart(charts.layer_module_map(result.summary[result.summary["rank_max"] > 1], "effective_rank",
                                            "Effective rank").properties(title="Effective rank of its update"),
                    width="content")
    ui.download(result.summary, "its spectrum statistics", "spot-check-spectra.csv", key="dl_spot")
    if ui.live_button("Score it (quick profile)", "spot_score", family, problem):
        from explorer.evaluation.scores import member_scores

        bar = st.progress(0.0, text="loading the model")
        with ui.errors("Scoring the checkpoint"):
            st.session_state["spot_scores"] = member_scores(result.family, "candidate", "quick",
                                                            ui.progress_callback(bar))
        bar.empty()
    if "spot_scores" in st.session_state:
        rows = [{"model": m, **bundle.scores[m]} for m in ("aligned", "useful", "harmful") if m in bundle.scores]
        rows.append({"model": "candidate", **st.session_state["spot_scores"]})
        st.altair_chart(charts.score_bars(charts.score_frame(rows), "model", width=420), width="content")
        st.caption("The candidate is scored with the quick profile; the references with the "
                   f"{bundle.manifest['profile']} profile. Error bars: 95% intervals.")
