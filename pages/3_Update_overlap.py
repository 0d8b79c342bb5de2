"""Update overlap: mode subspace overlap (MSO) between the alignment update and the task updates."""
import numpy as np
import pandas as pd
import streamlit as st

from pages.common import ui

bundle = ui.page("Update overlap", "Update overlap",
                 r"$\mathrm{MSO}(A, B) = \lVert Q_A^\top Q_B \rVert_F^2 \,/\, \min(k_A, k_B)$, where $Q_A$ holds "
                 r"the top left singular vectors of update $A$ that carry a fraction $\eta$ of its energy ($k_A$ of "
                 r"them). Two random subspaces overlap by $\max(k_A, k_B) / d$ on average: the random baseline.")
from explorer.checkpoints.architectures import readable_role  # noqa: E402
from explorer.results import charts  # noqa: E402
from explorer.results.family_comparison import largest_gap  # noqa: E402
from explorer.results.stages import Stage  # noqa: E402
from explorer.weights.mso import by_layer  # noqa: E402
from pages.common import compute  # noqa: E402

bundle = compute.require(bundle, [Stage("update_mso")], "Compute the update overlaps",
                         "This page needs the MSO of the family's pairs of updates at every η: one decomposition "
                         "with singular vectors per tensor of each update in a pair.")

mso = ui.table(bundle, "update_mso")
mso["pair"] = mso["a"] + " · " + mso["b"]
pairs = list(dict.fromkeys(mso["pair"]))
etas = sorted(set(mso["energy_frac"]))
c1, c2 = st.columns(2)
pair = c1.selectbox("Pair of updates", pairs, key="mso_pair")
eta = c2.select_slider("Energy fraction η", etas, value=min(etas, key=lambda e: abs(e - 0.5)), key="mso_eta")

at = mso[(mso["pair"] == pair) & np.isclose(mso["energy_frac"], eta)].rename(columns={"group": "tensor"})
panels = {"mso": f"MSO, {pair}, η = {eta:g}", "mso_random": "Random baseline"}
maps = at.melt(id_vars=["tensor", "layer", "module", "cols"], value_vars=list(panels), var_name="measure",
               value_name="overlap")
maps["measure"] = maps["measure"].map(panels)
st.altair_chart(charts.layer_module_map(maps, "overlap", "Overlap", facet="measure", facet_order=list(panels.values()),
                                        domain=(0, 1), cell=(26, 11), value_format=".2f"), width="content")
matrices = at[at["cols"] > 1]
st.caption(f"One colour scale for both maps, 0 to 1. Mean over weight matrices: MSO {matrices['mso'].mean():.3f}, "
           f"random baseline {matrices['mso_random'].mean():.3f}.")
experts = at.assign(expert=[readable_role(t).expert for t in at["tensor"]]).dropna(subset=["expert"])
if len(experts):  # a mixture of experts: each map cell of an expert module is the mean over its experts
    cells = list(dict.fromkeys(zip(experts["layer"], experts["module"])))
    layer, module = st.selectbox("Experts of one cell", cells, format_func=lambda c: f"layer {c[0]} · {c[1]}",
                                 key="mso_expert_cell")
    cell = experts[(experts["layer"] == layer) & (experts["module"] == module)].astype({"expert": int})
    st.altair_chart(charts.expert_bars(cell, "mso", f"MSO, η = {eta:g}", reference="mso_random",
                                       value_format=".2f"), width="content")

st.subheader("MSO against η, every pair")
layers = charts.natural_order(by_layer(mso[mso["pair"] == pairs[0]])["group"].unique())
scope = st.selectbox("Layer", ["average over all weight matrices", *layers], key="mso_scope")


def curve_of(group: pd.DataFrame) -> pd.DataFrame:
    """MSO against η of one pair: the mean over weight matrices, or one layer's (the scope chosen above)."""
    if scope.startswith("average"):
        return group[group["cols"] > 1].groupby("energy_frac", as_index=False)[["mso", "mso_random"]].mean()
    curve = by_layer(group)
    return curve[curve["group"] == scope][["energy_frac", "mso", "mso_random"]]


frames = [curve_of(group).assign(pair=name) for name, group in mso.groupby("pair", sort=False)]
st.altair_chart(charts.overlap_curves(pd.concat(frames), current=eta, width=640), width="content")

compared = ui.comparison(bundle)
if compared is not None:
    other, other_bundle = compared
    theirs = ui.table(other_bundle, "update_mso")
    theirs = theirs[theirs["a"] + " · " + theirs["b"] == pair]
    st.subheader(f"{pair}: {bundle.manifest['family']} and {other}")
    if theirs.empty:
        st.info(f"{other} has no {pair} pair to compare.")
    else:
        both = pd.concat([curve_of(mso[mso["pair"] == pair]).assign(family=bundle.manifest["family"]),
                          curve_of(theirs).assign(family=other)])
        st.altair_chart(charts.overlap_curves(both, color="family", current=eta, width=640), width="content")
        gap = largest_gap(both, "mso", ["energy_frac"])
        st.caption("Solid: MSO; dashed: each family's random baseline, which depends on how many directions hold "
                   f"η of each update's energy. The families' MSO differs by at most {gap:.3f} at any η"
                   + (", so their lines coincide." if gap < 0.02 else "."))
ui.download(mso[mso["pair"] == pair].drop(columns="pair"), f"MSO of {pair} per tensor", "update-mso.csv",
            key="dl_mso")
