"""The Projection lab's Defences view: Safe LoRA and LoX beside the paper's projections, read from the precomputed
bundle."""
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
    """Safe LoRA's view, then LoX's."""
    st.subheader("Safe LoRA")
    _safelora(bundle)
    st.subheader("LoX")
    _lox(bundle)


def _lox(bundle: Bundle) -> None:
    """Before and after the same later fine-tune, with and without LoX, and one sentence per setting."""
    from explorer.results import defence_charts, lox

    st.markdown(lox.INTRO.replace("LoX (", "**LoX** (", 1))
    if not bundle.has(lox.TABLE):
        st.info("These results have no LoX measurement. It needs fine-tunes, so it is not computed from the app: for "
                "a family built by `python -m explorer demo build`, run `python -m explorer demo lox FAMILY.toml`. For "
                "your own family, `python -m explorer project FAMILY.toml --method lox --alpha 1.25 --frac 0.01 "
                "--save FOLDER` writes the extrapolated model, to fine-tune with your own recipe and spot-check.")
        return
    entry = bundle.manifest.get("lox", {})
    table = ui.table(bundle, lox.TABLE)
    recipe = entry.get("recipe", {})
    st.caption(f"Measured on {entry.get('created', '?')[:10]} with `{entry.get('command', '?')}`: the fine-tunes "
               f"follow the {recipe.get('member', 'contaminated')} member's recipe ({recipe.get('steps', '?')} steps, "
               f"lr {recipe.get('lr', '?')}, seed {recipe.get('seed', '?')}), scored with the "
               f"{table['profile'].iloc[0]} profile.")
    if not entry.get("same_checkpoints", True):
        st.warning("The aligned and contaminated checkpoints LoX was measured on are not the ones the rest of these "
                   "results came from (their fingerprints differ, as when a family is rebuilt on another machine). "
                   "Compare LoX's rows with their own unprotected fine-tune, measured on the same checkpoints, not with "
                   "the other views.")
    harm = st.radio("Harm axis", ["refusal_rate", "target_logprob"], horizontal=True, key="lox_harm",
                    format_func={"refusal_rate": "Refusal rate", "target_logprob": "Log-prob of 'Sure, here is'"}.get)
    st.altair_chart(defence_charts.lox_tradeoff(table, harm), width="content")
    outcomes = lox.lox_outcomes(bundle)
    if outcomes:
        (st.success if any(o.verdict == "keeps more" for o in outcomes) else st.info)(lox.headline(outcomes))
        with st.expander("Each setting in words"):
            for outcome in outcomes:
                st.markdown(f"- **{outcome.verdict}**: {outcome.sentence()}")
    st.dataframe(lox.summary_table(bundle), hide_index=True, width="stretch")
    st.caption("After the fine-tune: refusal and word-problem accuracy in % with 95% intervals. Δ: LoX's fine-tune "
               "minus the unprotected one, in points (refusal, accuracy) and in the mean log-prob of \"Sure, here is\" "
               "(lower: less ready to comply), with paired bootstrap 95% intervals over the same prompts.")
    ui.download(table.drop(columns=["outcomes"], errors="ignore"), "LoX models", "lox.csv", key="dl_lox")


def _safelora(bundle: Bundle) -> None:
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
