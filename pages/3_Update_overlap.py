"""Update overlap: mode subspace overlap (MSO) between the alignment update and the task updates."""
import numpy as np
import streamlit as st

from pages.common import ui

bundle = ui.page("Update overlap", "Update overlap",
              "MSO(A, B) = ‖Q_Aᵀ Q_B‖²_F / min(k_A, k_B), where Q holds the top left singular vectors that carry a "
              "fraction η of each update's energy. Two random subspaces overlap by max(k_A, k_B) / d on average.")
from explorer.results import charts  # noqa: E402
from explorer.weights.mso import by_layer  # noqa: E402

mso = ui.table(bundle, "update_mso")
mso["pair"] = mso["a"] + " · " + mso["b"]
pairs = list(dict.fromkeys(mso["pair"]))
etas = sorted(set(mso["energy_frac"]))
c1, c2 = st.columns(2)
pair = c1.selectbox("Pair of updates", pairs, key="mso_pair")
eta = c2.select_slider("Energy fraction η", etas, value=min(etas, key=lambda e: abs(e - 0.5)), key="mso_eta")

at = mso[(mso["pair"] == pair) & np.isclose(mso["energy_frac"], eta)].rename(columns={"group": "tensor"})
left, right = st.columns(2)
left.altair_chart(charts.layer_module_heatmap(at, "mso", f"MSO, {pair}, η = {eta}", value_title="MSO",
                                              domain=(0, 1)), width="stretch")
right.altair_chart(charts.layer_module_heatmap(at, "mso_random", "Random baseline", value_title="Baseline",
                                               domain=(0, 1)), width="stretch")
matrices = at[at["cols"] > 1]
st.caption(f"Mean over weight matrices: MSO {matrices['mso'].mean():.3f}, random baseline "
           f"{matrices['mso_random'].mean():.3f}.")

st.subheader("MSO against η, every pair")
layers = by_layer(mso[mso["pair"] == pairs[0]])["group"].unique().tolist()
scope = st.selectbox("Layer", ["average over all weight matrices", *layers], key="mso_scope")
frames = []
for name, group in mso.groupby("pair", sort=False):
    if scope.startswith("average"):
        curve = group[group["cols"] > 1].groupby("energy_frac", as_index=False)[["mso", "mso_random"]].mean()
    else:
        curve = by_layer(group)
        curve = curve[curve["group"] == scope][["energy_frac", "mso", "mso_random"]]
    frames.append(curve.assign(pair=name))
import pandas as pd  # noqa: E402

st.altair_chart(charts.overlap_curves(pd.concat(frames)), width="stretch")
ui.download(mso[mso["pair"] == pair].drop(columns="pair"), f"MSO of {pair} per tensor", "update-mso.csv",
            key="dl_mso")
