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
from explorer.results.comparisons import nearest_scored  # noqa: E402
from explorer.results.family_comparison import largest_gap  # noqa: E402
from explorer.results.findings import focus_first  # noqa: E402
from explorer.results.samples import samples_from_rows, samples_table  # noqa: E402
from explorer.results.stages import GRID_FRACS, Stage, grid_stages  # noqa: E402
from explorer.weights.projection import PAPER_SIDE  # noqa: E402
from pages.common import compute  # noqa: E402

bundle = compute.require(bundle, [Stage("energy")], "Compute the projection energies",
                         "This page needs the energy each task update keeps when projected onto, or away from, the "
                         "top-k alignment subspace and the random controls, at every ρ: one decomposition pass per "
                         "fine-tuned member and projection side. Scores at chosen points follow.")
curves = ui.table(bundle, "energy_curves")
NO_POINTS = pd.DataFrame({**{c: pd.Series(dtype=object) for c in ("variant", "method", "subspace", "side")},
                          **{c: pd.Series(dtype=float) for c in ("frac", *SCORES)}})
grid = ui.table(bundle, "projection") if bundle.has("projection") else NO_POINTS
family, problem = ui.checkpoints(bundle)
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
live = st.session_state.setdefault("live_points", {})
live_key = (bundle.manifest["family"], variant, method, subspace, round(frac, 2), side)
measured = [live[live_key]] if live_key in live else nearest_scored(grid, variant, method, subspace, frac)
on_grid = len(measured) == 1 and np.isclose(measured[0].get("frac", frac), frac)
if not measured:
    grid_methods = sorted(set(grid["method"]))
    if grid.empty and side is not None:
        reason = f"The precomputed grid holds no point on the **{side}** side (it is for the paper's left side)."
    elif variant not in scored:
        reason = (f"The precomputed grid scores the {' and '.join(scored)} fine-tune only, not {variant} "
                  f"(`python -m explorer precompute FAMILY --extend --grid-variants {variant}` adds it).")
    elif method not in grid_methods:
        reason = f"Method **{method}** is not in the precomputed grid, which holds {' and '.join(grid_methods)}."
    else:
        reason = f"The precomputed grid has no {variant} · {method} · {subspace} point."
    st.info(reason if bundle.has("projection") else "No point of this family is scored yet.")
elif not on_grid:
    fracs = " and ".join(f"{row['frac']:.2f}" for row in measured)
    st.info(f"ρ = {frac:.2f} is not a scored point. Shown instead: the nearest scored point"
            f"{'s on either side' if len(measured) > 1 else ''}, ρ = {fracs}, each measured at its own ρ; nothing is "
            f"interpolated. The energy metrics above are exact at ρ = {frac:.2f}.")
stored = on_grid and not measured[0].get("live")
if not stored and (side or PAPER_SIDE) == PAPER_SIDE:  # a live point is this session's: these keep it in the results
    with st.expander("Score points into this family's results", expanded=not measured):
        compute.profile_choice(bundle)
        compute.offer(f"Compute this point (ρ = {frac:.2f})", [Stage("grid", points=((variant, method, subspace,
                                                                                      round(frac, 2)),))],
                      bundle, "compute_point")
        compute.offer(f"Compute the {variant} grid (ρ = {', '.join(f'{f:g}' for f in GRID_FRACS)})",
                      grid_stages([variant], GRID_FRACS), bundle, "compute_grid")
stream_slots = None  # filled at the end of the page, so that everything else is drawn first
# Drawn whenever it can act, so that the choice holds while the control crosses scored values.
auto = family is not None and st.toggle(
    "Score live as ρ moves", value=True, key="proj_auto",
    help="With the family's checkpoints, a position off the grid is projected in place (only the directions that "
         "change) and scored with the quick profile; estimates appear after the first prompts and narrow as the "
         "rest complete. Moving the control stops the running point; its scored prompts are kept.")
if not on_grid:
    if not auto:
        st.caption("Compute this point live: the aligned model's weights are projected in place and scored with "
                   "the quick profile (teacher-forced log-prob on 64 prompts; generations on 32 prompts each).")
    if auto or ui.live_button("Compute this point live", "compute_live", family, problem):
        stream_slots = st.empty(), st.empty()


def _delta(value: float, reference: float | None, score: str) -> str | None:
    if reference is None or value is None:
        return None
    if score == "target_logprob":
        return f"{value - reference:+.2f}"
    return f"{100 * (value - reference):+.0f} points"


def _reference(profile: str | None) -> dict:
    """The unprojected fine-tune's scores, on the grid's prompts where stored: a like-for-like delta."""
    found = bundle.scores.get(variant, {})
    if bundle.has("grid_reference"):
        same_prompts = ui.table(bundle, "grid_reference")
        same_prompts = same_prompts[(same_prompts["member"] == variant) & (same_prompts["profile"] == profile)]
        if len(same_prompts):
            found = {**found, **same_prompts.iloc[0].to_dict()}
    return found


def _score_block(container, scores: dict) -> None:
    """The four scores of one measured point, each with its 95% interval and its difference from the unprojected
    fine-tune where both were scored on the same prompts."""
    profile = scores.get("profile", bundle.manifest.get("grid_profile"))
    reference = _reference(profile)
    comparable = reference.get("profile", bundle.manifest["profile"]) == profile
    where = "computed live" if scores.get("live") else "scored"
    if scores.get("progress") and scores["progress"][0] < scores["progress"][1]:
        where = f"computing live: an estimate from {scores['progress'][0]} of {scores['progress'][1]} prompts"
    container.markdown(f"**ρ = {scores.get('frac', frac):.2f}**, {where} ({profile} profile)")
    cols = container.columns(2)
    for i, score in enumerate(SCORES):
        value = scores.get(score)
        if value is None or pd.isna(value):
            continue
        ci = charts.score_interval(scores, score)
        is_rate = score != "target_logprob"
        interval = "no interval stored" if ci is None else \
            f"95% CI {ci[0]:.0%}–{ci[1]:.0%}" if is_rate else f"95% CI {ci[0]:.2f} to {ci[1]:.2f}"
        cols[i % 2].metric(charts.SCORE_TITLES[score], f"{value:.0%}" if is_rate else f"{value:.2f}",
                           delta=_delta(value, reference.get(score), score) if comparable else None,
                           delta_color="off")
        cols[i % 2].caption(interval)
    if not comparable:
        container.caption(f"No difference is shown: the unprojected {variant} fine-tune was scored with the "
                          f"**{reference.get('profile', bundle.manifest['profile'])}** profile, on other prompts. "
                          "`python -m explorer precompute` stores it on the grid's prompts.")


if measured:
    # One point: its scores beside its responses; two neighbours: both across the page, the responses below.
    left, right = st.columns([2, 3]) if len(measured) == 1 else (st.container(), st.container())
    with left:
        blocks = st.columns(len(measured))
        for block, scores in zip(blocks, measured):
            _score_block(block, scores)
        st.caption("Differences from the unprojected fine-tune are in percentage points (log-prob: nats per token), "
                   "on the same prompts.")
    nearest = min(measured, key=lambda row: abs(row.get("frac", frac) - frac))
    samples = nearest.get("samples") if isinstance(nearest.get("samples"), dict) else None
    if samples is None and bundle.has("projection_samples"):
        rows = ui.table(bundle, "projection_samples")
        rows = rows[(rows["variant"] == variant) & (rows["method"] == method) & (rows["subspace"] == subspace)
                    & np.isclose(rows["frac"], nearest.get("frac", frac))]
        samples = samples_from_rows(rows) if len(rows) else None
    reference = _reference(nearest.get("profile"))
    with right:
        if samples:
            st.markdown(f"**Responses at ρ = {nearest.get('frac', frac):.2f}** (greedy, the first evaluation prompts)")
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
    live_point = {**measured[0], "frac": frac} if measured and measured[0].get("live") else None
    if variant in scored or live_point is not None:
        st.altair_chart(charts.tradeoff(grid[grid["variant"] == variant], harm, refs,
                                        current={"method": method, "subspace": subspace, "frac": frac,
                                                 "scored": [row["frac"] for row in measured]},
                                        live_point=live_point, width=380, height=300), width="content")
        st.caption("Bars: 95% intervals where stored. The ring marks the point at the control's ρ or, between "
                   "scored values, the nearest scored points; a live point is ringed when computed.")
        points = grid[grid["variant"] == variant]
        for score, label in (("utility_accuracy", "word-problem accuracy"), (harm, "the harm axis")):
            values = set(points[score].dropna().round(6))
            if len(values) == 1:
                value = values.pop()
                shown = f"{value:.2f}" if score == "target_logprob" else f"{value:.0%}"
                st.caption(f"Every precomputed point of the {variant} fine-tune has the same {label} ({shown}): "
                           "its points move along the other axis only.")
    else:
        st.info(f"No point of the {variant} fine-tune is scored yet"
                + (f" (the grid scores {', '.join(scored)})" if scored else "") + ". Compute points or its grid "
                f"above, or add its grid with `python -m explorer precompute FAMILY --extend --grid-variants "
                f"{variant}`.")

removed = ui.table(bundle, "removed_by_layer") if bundle.has("removed_by_layer") else NO_POINTS
if side is not None and "side" in removed:
    removed = removed[removed["side"] == side]
at = removed[(removed["variant"] == variant) & (removed["method"] == method) & (removed["subspace"] == subspace)
             & np.isclose(removed["frac"], frac)]
st.markdown(f"**Task-update energy removed, per layer** ({variant}, {method} · {subspace}, ρ = {frac:.2f})")
if len(at):
    st.altair_chart(charts.removed_by_layer(at, width=800), width="content")
elif grid.empty and not bundle.has("projection"):
    st.info("Energy removed per layer is computed with each scored point; no point is scored yet (see above).")
elif removed.empty:
    st.info(f"Energy removed per layer is precomputed for the grid's points only, none of them on the {side} side.")
else:
    st.info("Energy removed per layer is precomputed for the grid's points only (methods "
            f"{' and '.join(sorted(set(removed['method'])))}; ρ = "
            f"{', '.join(f'{f:g}' for f in sorted(set(removed['frac'])))}); choose one of them to see it.")
if len(grid):
    ui.download(grid, "projection grid", "projection-grid.csv", key="dl_grid")
ui.download(curve, "energy curves", f"energy-{variant}-{method}.csv", key="dl_curves")

st.header("Defences: Safe LoRA and LoX beside the projections")
from pages.common import defences  # noqa: E402

defences.render(bundle)

if stream_slots is not None:
    from explorer.evaluation.scores import PointScorer

    status, block = stream_slots
    bar = status.progress(0.0, text="projecting")
    with ui.errors("Computing this point live"):
        scorer = st.session_state.setdefault(f"scorer:{family.path}", PointScorer(family))
        for scores in scorer.score_stream(variant, method, subspace, frac, profile="quick",
                                          callback=ui.progress_callback(bar), **({"side": side} if side else {})):
            _score_block(block.container(border=True), scores)
    live[live_key] = {**scores, "live": True}
    st.rerun()
