"""Activation space: where useful, harmful and benign prompts sit in each layer, and how their subspaces overlap."""
import numpy as np
import pandas as pd
import streamlit as st

from pages.common import ui

bundle = ui.page("Activation space", "Activation space",
                 "Hidden states at each prompt's last real token. Sets can be linearly separable (probe accuracy) "
                 "while their top subspaces still overlap (MSO): both are shown per layer. Search for a prompt, "
                 "colour prompts by set or by how a member answered them, and drag a box over points to read their "
                 "prompts and responses.")
from explorer.activations.mso import headline_layers  # noqa: E402
from explorer.results import charts  # noqa: E402
from explorer.results.stages import Stage  # noqa: E402
from pages.common import compute  # noqa: E402

everyone = [Stage("activations", m) for m in compute.family_members()]
NEEDS = ("Each member's analysis runs its model on {count} prompts (useful, harmful and benign), keeps the hidden "
         "state of every layer, and embeds each layer in 2-D; the members' stages run one after another.")
if bundle is None or not bundle.has("activation_mso"):
    compute.offer("Compute activations", everyone, bundle, "compute_activations",
                  needs="This page needs the activations of the family's members. " + NEEDS.format(count=768))
    st.stop()

ALL = "all members, side by side"
RERUN = "This family's precomputed results hold no responses to these prompts; run `python -m explorer precompute` " \
        "again to store them (table activation_responses)."
embeddings = ui.table(bundle, "embeddings")
prompts = ui.table(bundle, "prompts")
responses = ui.table(bundle, "activation_responses") if bundle.has("activation_responses") else None
family, problem = ui.checkpoints(bundle)
members = charts.natural_order(embeddings["member"].unique())
n_layers = int(embeddings["layer"].max())
band = headline_layers(n_layers)
missing = [s for s in everyone if s.member not in members]
if missing:
    with st.expander(f"Not computed yet: the activations of {', '.join(s.member for s in missing)}"):
        compute.offer("Compute the activations of the other members", missing, bundle, "compute_more_activations",
                      needs=NEEDS.format(count=len(prompts)))
c1, c2, c3 = st.columns([1, 2, 1])
member = c1.selectbox("Member", [*members, ALL], index=members.index("aligned") if "aligned" in members else 0,
                      key="act_member")
layer = c2.slider("Layer (hidden state; 0 = embeddings)", 0, n_layers, round(0.75 * n_layers), key="act_layer")
method = c3.radio("Embedding", ["umap", "pca"], format_func=str.upper, horizontal=True, key="act_method")
COLOURS = {"set": "Prompt set", "behaviour": "Refused or not", "member": "Member"}
c4, c5 = st.columns([2, 2])
colour = c4.radio("Colour by", list(COLOURS) if member == ALL else list(COLOURS)[:2], format_func=COLOURS.get,
                  horizontal=True, key="act_colour")
query = c5.text_input("Highlight prompts containing", key="act_search", placeholder="e.g. bomb, marbles, recipe")

shown = members if member == ALL else [member]
umap_layers = sorted(set(embeddings.loc[embeddings["method"] == "umap", "layer"]))
points = embeddings[embeddings["member"].isin(shown) & (embeddings["layer"] == layer)
                    & (embeddings["method"] == method)]
live = st.session_state.setdefault("live_umaps", {})
if method == "umap" and layer not in umap_layers:
    points = live.get((bundle.manifest["family"], member, layer)) if member != ALL else None
    if points is None:
        method = "pca"
        st.info(f"UMAP is precomputed for layers {', '.join(map(str, umap_layers))}; layer {layer} is shown with "
                "**PCA** instead. Computing its UMAP needs the family's checkpoints: the first time extracts the "
                "activations of every prompt (minutes on a CPU; then cached), later layers take seconds.")
        if member != ALL and ui.live_button(f"Compute UMAP for layer {layer}", "compute_umap", family, problem):
            from explorer.activations.tables import layer_embedding

            sets = {name: list(group.sort_values("index")["text"])
                    for name, group in prompts.groupby("set", sort=False)}
            with st.spinner("Extracting activations (cached after the first time) and running UMAP…"), ui.errors():
                live[(bundle.manifest["family"], member, layer)] = layer_embedding(family, member, sets, layer)
            st.rerun()
        points = embeddings[embeddings["member"].isin(shown) & (embeddings["layer"] == layer)
                            & (embeddings["method"] == "pca")]
    else:
        points = points.assign(member=member)
points = points.merge(prompts, on=["set", "index"])
if responses is not None:
    points = points.merge(responses, on=["member", "set", "index"], how="left")
    points["behaviour"] = points["refused"].map({True: "refused", False: "answered"}).fillna("no response stored")
elif colour == "behaviour":
    st.info(f"Colouring by refusal needs the members' responses. {RERUN}")
    colour = "set"
points["match"] = points["text"].str.contains(query.strip(), case=False, regex=False) if query.strip() else False

title = f"{member if member != ALL else 'every member'}, layer {layer}, {method.upper()}"
event = st.altair_chart(charts.embedding_scatter(points, title, color_by=colour, facet=member == ALL),
                        width="content", on_select="rerun", key="act_scatter")
stacks = charts.stacked(points)
spots = int((1 / stacks).sum())
st.caption(f"{len(points) // len(shown)} prompts per member at about {spots // len(shown)} distinct spots: points on "
           "one spot are prompts whose hidden states (nearly) coincide, drawn on top of each other; hovering a point "
           "shows how many share its spot. Drag a box (one member) or click points (every member; shift-click for "
           "more) to list them below.")

picked = (event or {}).get("selection", {}).get("picked") if event else None
if isinstance(picked, dict) and picked.get("x") and picked.get("y"):
    (x0, x1), (y0, y1) = sorted(picked["x"]), sorted(picked["y"])
    listed, how = points[points["x"].between(x0, x1) & points["y"].between(y0, y1)], "selected"
elif isinstance(picked, list) and picked:
    keys = pd.DataFrame(picked)[["member", "set", "index"]]
    listed, how = points.merge(keys, on=["member", "set", "index"]), "selected"
elif query.strip():
    listed, how = points[points["match"]], f"matching “{query.strip()}”"
else:
    listed, how = points.iloc[0:0], None
if how is not None:
    columns = [c for c in ("member", "set", "text", "response", "behaviour") if c in listed]
    st.markdown(f"**{len(listed)} prompts {how}**" + ("" if responses is not None else f". {RERUN}"))
    st.dataframe(listed[columns].rename(columns={"text": "prompt", "behaviour": "refused or not"}).head(300),
                 hide_index=True, width="stretch")

mso = ui.table(bundle, "activation_mso")
mso["pair"] = mso["a"] + " · " + mso["b"]
etas = sorted(set(mso["energy_frac"]))
c6, c7 = st.columns([3, 2])
eta = c6.select_slider("Energy fraction η", etas, value=min(etas, key=lambda e: abs(e - 0.5)), key="act_eta")
if "centered" in mso:  # results with both variants: the paper's uncentered MSO and the centered one
    centered = c7.radio("States", [False, True], horizontal=True, key="act_centered",
                        format_func=lambda c: "centered (set mean removed)" if c else "uncentered (the paper's)")
    mso = mso[mso["centered"] == centered]
focus = member if member != ALL else ("aligned" if "aligned" in members else members[0])
at = mso[(mso["member"] == focus) & np.isclose(mso["energy_frac"], eta)]
marks = {"band": (band[0], band[-1]), "current": layer}
st.markdown(f"**Activation MSO per layer** ({focus}, η = {eta:g}); shaded: layers {band[0]}–{band[-1]}, the "
            "65–90% depth the paper averages over; the dotted rule marks the layer shown above.")
st.altair_chart(charts.overlap_curves(at, color="pair", x="layer", x_title="Layer (hidden state; 0 = embeddings)",
                                      width=640, **marks), width="content")
compared = ui.comparison(bundle)
if compared is not None:
    other, other_bundle = compared
    theirs = ui.table(other_bundle, "activation_mso") if other_bundle.has("activation_mso") else pd.DataFrame()
    if len(theirs) and "centered" in theirs and "centered" in mso:
        theirs = theirs[theirs["centered"] == centered]
    pair = "useful · harmful"
    theirs = theirs[(theirs["member"] == focus) & (theirs["a"] + " · " + theirs["b"] == pair)
                    & np.isclose(theirs["energy_frac"], eta)] if len(theirs) else theirs
    if theirs.empty:
        st.info(f"{other} has no activation MSO of {pair} prompts for the {focus} member to compare.")
    else:
        both = pd.concat([at[at["pair"] == pair].assign(family=bundle.manifest["family"]), theirs.assign(family=other)])
        st.markdown(f"**{pair} prompts, {focus}: {bundle.manifest['family']} and {other}** (η = {eta:g})")
        st.altair_chart(charts.overlap_curves(both, color="family", x="layer",
                                              x_title="Layer (hidden state; 0 = embeddings)", width=640, **marks),
                        width="content")
here = at[at["layer"] == layer]
if len(here):
    k = {**dict(zip(here["a"], here["k_a"])), **dict(zip(here["b"], here["k_b"]))}  # k depends on the set only
    single = set(k.values()) == {1}
    st.caption(f"At layer {layer}, η = {eta:g}, the sets' subspaces have k = "
               + ", ".join(f"{n} ({name})" for name, n in k.items()) + " directions."
               + (" With k = 1 the MSO compares the sets' single top directions, which for uncentered states lie "
                  "close to their mean activations." if single else ""))

left, right = st.columns(2)
refusal = ui.table(bundle, "refusal_direction")
alignment = ui.table(bundle, "refusal_alignment")
with left:
    st.altair_chart(charts.per_layer(refusal, "gap", "Refusal direction strength (harmful − benign)",
                                     y_title="Separation along it (d′)", width=260, **marks), width="content")
with right:
    st.altair_chart(charts.per_layer(alignment[alignment["member"] == focus], "share_topk",
                                     f"Refusal direction vs top-{int(alignment['k'].iloc[0])} alignment directions",
                                     reference="share_random", color="module", y_title="Cosine with the subspace",
                                     reference_label="random direction", width=260, **marks), width="content")
    st.caption(f"{focus}. Hidden state l is written by block l−1.")
probe = ui.table(bundle, "probe")
st.altair_chart(charts.per_layer(probe, "accuracy", "Linear-probe accuracy: harmful vs useful vs benign",
                                 reference="chance", reference_label="chance", y_title="Cross-validated accuracy",
                                 y_format="%", width=640, **marks), width="content")
st.caption("Member lines are drawn widest first, so where members coincide each still shows as a coloured edge.")
ui.download(at.drop(columns="pair"), "activation MSO", "activation-mso.csv", key="dl_act_mso")
ui.download(refusal, "refusal direction", "refusal-direction.csv", key="dl_refusal")
ui.download(probe, "probe accuracy", "probe.csv", key="dl_probe")
if responses is not None:
    ui.download(responses, "responses to these prompts", "activation-responses.csv", key="dl_responses")
