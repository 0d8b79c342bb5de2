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

def _show(verdict, overlaps, energy, summary, download_key: str) -> None:
    """The verdict and charts of a spot-check (the user's, or the precomputed example)."""
    if verdict is not None and verdict.references:
        (st.success if verdict.resembles else st.info)(verdict.sentence())
    left, right = st.columns(2)
    with left:
        st.markdown("**Overlap with the family's updates**")
        st.altair_chart(charts.overlap_curves(overlaps, color="reference", width=230), width="content")
    with right:
        st.markdown("**Energy kept in the alignment subspace**")
        st.altair_chart(charts.energy_curves(energy, width=320), width="content")
    st.altair_chart(charts.layer_module_map(summary[summary["rank_max"] > 1], "effective_rank",
                                            "Effective rank").properties(title="Effective rank of its update"),
                    width="content")
    ui.download(summary, "its spectrum statistics", "spot-check-spectra.csv", key=download_key)


def _scores(candidate: dict, label: str, profile_text: str) -> None:
    rows = [{"model": m, **bundle.scores[m]} for m in ("aligned", "useful", "harmful") if m in bundle.scores]
    rows.append({"model": label, **candidate})
    st.altair_chart(charts.score_bars(charts.score_frame(rows), "model", width=420), width="content")
    st.caption(profile_text + " Error bars: 95% intervals.")


result = st.session_state.get("spot_result")
if result is not None:
    from explorer.results.spot_verdict import spot_verdict

    _show(spot_verdict(result.matrices, result.references), result.overlaps, result.energy, result.summary, "dl_spot")
    compared = (f"The candidate is scored with the quick profile; the references with the "
                f"{bundle.manifest['profile']} profile.")
    if ui.live_button("Score it (quick profile)", "spot_score", family, problem):
        from explorer.evaluation.scores import member_scores_stream

        bar, estimate = st.progress(0.0, text="loading the model"), st.empty()
        with ui.errors("Scoring the checkpoint"):
            for scores in member_scores_stream(result.family, "candidate", "quick", ui.progress_callback(bar)):
                if "progress" in scores:  # an estimate from the prompts scored so far; intervals narrow as they come
                    with estimate.container():
                        _scores(scores, "candidate", f"An estimate from {scores['progress'][0]} of "
                                f"{scores['progress'][1]} prompts. {compared}")
            st.session_state["spot_scores"] = scores
        bar.empty()
        estimate.empty()
    if "spot_scores" in st.session_state:
        _scores(st.session_state["spot_scores"], "candidate", compared)
else:
    from explorer.results.spot_example import spot_example

    with ui.errors("Reading the example spot-check"):
        example = spot_example(bundle) if bundle is not None else None
    if example is None:
        st.info("Give a checkpoint above to see where its update sits next to this family's useful and harmful "
                "fine-tunes. This family's precomputed results hold no example spot-check (`python -m explorer demo "
                "example` stores one for the demo).")
    else:
        st.subheader("An example, precomputed")
        st.markdown(f"Until you analyse a checkpoint of your own, this is the spot-check of **{example.label}** "
                    f"(`{example.source}`).")
        _show(example.verdict, example.overlaps, example.energy, example.summary, "dl_spot_example")
        if example.scores:
            profile = example.scores.get("profile", bundle.manifest["profile"])
            _scores(example.scores, "example", f"The example and the references are all scored with the "
                    f"**{profile}** profile, on the same prompts.")
        st.caption(f"Precomputed by `{example.command}`.")
