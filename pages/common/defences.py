"""The Projection lab's Defences view: Safe LoRA beside the paper's projections, read from the precomputed bundle."""
from __future__ import annotations

import math
from pathlib import Path

import streamlit as st

from explorer.results.bundle import Bundle
from pages.common import ui

INTRO = ("**Safe LoRA** (Hsu et al., 2024) projects a fine-tune's update of a weight matrix through the alignment "
         "matrix C = V Vᵀ / ‖V‖ (V = aligned − base), but only in the matrices where cos(C·dT, dT) is at most a "
         "threshold τ: where the update looks least like the alignment. Every other tensor keeps its update.")
VERDICT = {"more": st.success, "less": st.warning, "inconclusive": st.info}


@st.cache_data(show_spinner=False)
def _comparison(folder: str, stamp: float, variant: str):
    """Bootstraps take about half a second: once per bundle and variant, not at every move of the slider."""
    from explorer.results.defences import compare_with_orth

    return compare_with_orth(Bundle(Path(folder)), variant)


def render(bundle: Bundle) -> None:
    """The τ slider and the tensors it projects, the utility-vs-harm curves, and the comparison sentence."""
    from explorer.results import defence_charts, defences

    if not (bundle.has("safelora") and bundle.has("safelora_cosines")):
        from explorer.results.stages import Stage
        from pages.common import compute

        compute.offer("Compute Safe LoRA's points", [Stage("safelora")], bundle, "compute_safelora",
                      needs="These results have no Safe LoRA points yet: for every fine-tuned member, each tensor's "
                            "cosine with the alignment matrix, then about nine thresholds τ, each scored.")
        return
    st.markdown(INTRO)
    cosines, points = ui.table(bundle, "safelora_cosines"), ui.table(bundle, "safelora")
    variants = list(dict.fromkeys(points["variant"]))
    left, right = st.columns([1, 3])
    variant = left.selectbox("Variant", variants, key="def_variant",
                             index=variants.index("contaminated") if "contaminated" in variants else 0)
    stats = defences.variant_stats(cosines, variant)
    if stats.candidates.empty:
        st.info(f"{variant} has no candidate tensor (2-D matrices inside the blocks, or a LoRA adapter's targets "
                "among them): Safe LoRA leaves it as it is.")
        return
    scored = points[points["variant"] == variant].sort_values("threshold")
    low = math.floor(float(stats.candidates["cosine"].min()) * 100) / 100
    high = max(math.ceil(float(stats.candidates["cosine"].max()) * 100) / 100, low + 0.01)
    middle = float(stats.candidates["cosine"].median())
    tau = right.slider("Threshold τ: project every candidate tensor whose cosine is at most τ", low, high,
                       round(middle, 3), 0.001, format="%.3f", key="def_tau")
    point = stats.point(threshold=tau)
    st.markdown(f"At τ = {tau:.3f}: **{point['projected_tensors']} of {point['candidate_tensors']}** candidate "
                f"tensors projected · task-update energy kept **{point['energy_kept_ratio']:.1%}** · "
                f"cos(task, kept) **{point['cosine_task_kept']:.3f}**")
    st.altair_chart(defence_charts.projected_map(stats.candidates.reset_index(drop=True), tau), width="content")

    harm = st.radio("Harm axis", ["refusal_rate", "target_logprob"], horizontal=True, key="def_harm",
                    format_func={"refusal_rate": "Refusal rate", "target_logprob": "Log-prob of 'Sure, here is'"}.get)
    grid = ui.table(bundle, "projection")
    references = {m: bundle.scores[m] for m in ("aligned", variant) if m in bundle.scores}
    st.markdown(f"**Utility against harm on {variant}**: Safe LoRA from the unprojected fine-tune through its "
                f"{int((scored['projected_tensors'] > 0).sum())} scored thresholds (ringed: the nearest at or below τ), "
                "orthogonal projection at every ρ of the grid in the alignment subspace and the random controls; "
                "bars are 95% intervals.")
    st.altair_chart(defence_charts.defence_tradeoff(scored, grid[grid["variant"] == variant], harm, references, tau),
                    width="content")
    comparison = _comparison(str(bundle.folder), (bundle.folder / "manifest.json").stat().st_mtime, variant)
    if comparison is None:
        st.info(f"No comparison on {variant}: the results lack the unprojected point or orthogonal projection.")
    else:
        VERDICT[comparison.verdict](comparison.sentence())
    ui.download(scored.drop(columns=["outcomes"], errors="ignore"), "Safe LoRA points", f"safelora-{variant}.csv",
                key="dl_safelora")
