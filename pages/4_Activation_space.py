"""Activation space: where useful, harmful and benign prompts sit in each layer, and how their subspaces overlap."""
import numpy as np
import streamlit as st

from pages.common import ui

bundle = ui.page("Activation space", "Activation space",
              "Hidden states at each prompt's last real token. Sets can be linearly separable (probe accuracy) "
              "while their top subspaces still overlap (MSO): both are shown per layer.")
if not bundle.has("activation_mso"):
    st.error("This family's precomputed results have no activation analysis: run "
             "`python -m explorer precompute FAMILY.toml` without --no-activations.")
    st.stop()
from explorer.activations.mso import headline_layers  # noqa: E402
from explorer.results import charts  # noqa: E402

embeddings = ui.table(bundle, "embeddings")
prompts = ui.table(bundle, "prompts")
members = list(dict.fromkeys(embeddings["member"]))
n_layers = int(embeddings["layer"].max())
c1, c2, c3 = st.columns([1, 2, 1])
member = c1.selectbox("Member", members, index=members.index("aligned") if "aligned" in members else 0,
                      key="act_member")
layer = c2.slider("Layer (hidden state; 0 = embeddings)", 0, n_layers, round(0.75 * n_layers), key="act_layer")
umap_layers = sorted(set(embeddings.loc[embeddings["method"] == "umap", "layer"]))
method = c3.radio("Embedding", ["umap", "pca"], format_func=str.upper, horizontal=True, key="act_method")
points = embeddings[(embeddings["member"] == member) & (embeddings["layer"] == layer)
                    & (embeddings["method"] == method)]
live = st.session_state.setdefault("live_umaps", {})
if method == "umap" and layer not in umap_layers:
    points = live.get((bundle.manifest["family"], member, layer))
    if points is None and st.button(f"Compute UMAP for layer {layer}", key="compute_umap"):
        from explorer.activations.tables import layer_embedding

        family = ui.live_family()
        sets = {name: list(group.sort_values("index")["text"]) for name, group in prompts.groupby("set", sort=False)}
        with ui.errors("Computing the UMAP"), \
                st.spinner("Extracting activations (cached after the first time) and running UMAP…"):
            points = live[(bundle.manifest["family"], member, layer)] = layer_embedding(family, member, sets, layer)
    if points is None:
        st.info(f"UMAP is precomputed for layers {', '.join(map(str, umap_layers))}; showing PCA for layer "
                f"{layer}. Computing it takes a few seconds with the family's checkpoints.")
        method = "pca"
        points = embeddings[(embeddings["member"] == member) & (embeddings["layer"] == layer)
                            & (embeddings["method"] == "pca")]
points = points.merge(prompts, on=["set", "index"])
st.altair_chart(charts.embedding_scatter(points, f"{member}, layer {layer}, {method.upper()}"),
                width="stretch")

mso = ui.table(bundle, "activation_mso")
mso["pair"] = mso["a"] + " · " + mso["b"]
etas = sorted(set(mso["energy_frac"]))
eta = st.select_slider("Energy fraction η", etas, value=min(etas, key=lambda e: abs(e - 0.5)), key="act_eta")
at = mso[(mso["member"] == member) & np.isclose(mso["energy_frac"], eta)]
band = headline_layers(n_layers)
st.markdown(f"**Activation MSO per layer** ({member}, η = {eta}); the paper averages layers "
            f"{band[0]}–{band[-1]} (65–90% depth).")
st.altair_chart(charts.overlap_curves(at, color="pair", x="layer", x_title="Layer"), width="stretch")

left, right = st.columns(2)
refusal = ui.table(bundle, "refusal_direction")
alignment = ui.table(bundle, "refusal_alignment")
left.altair_chart(charts.per_layer(refusal, "gap", "Refusal direction strength (harmful − benign)",
                                   y_title="Separation along it (d′)"), width="stretch")
right.altair_chart(charts.per_layer(alignment[alignment["member"] == member], "share_topk",
                                    f"Refusal direction vs top-{int(alignment['k'].iloc[0])} alignment directions",
                                    reference="share_random", color="module", y_title="cosine with the subspace"),
                   width="stretch")
right.caption("Hidden state l is written by block l−1; the dashed line is a random direction's expected cosine.")
probe = ui.table(bundle, "probe")
st.altair_chart(charts.per_layer(probe, "accuracy", "Linear-probe accuracy: harmful vs useful vs benign",
                                 reference="chance", y_title="Cross-validated accuracy"), width="stretch")
ui.download(at.drop(columns="pair"), "activation MSO", "activation-mso.csv", key="dl_act_mso")
ui.download(refusal, "refusal direction", "refusal-direction.csv", key="dl_refusal")
ui.download(probe, "probe accuracy", "probe.csv", key="dl_probe")
