"""Weight spectra: singular values of any tensor of any update, and a layer x module map of spectrum statistics."""
import pandas as pd
import streamlit as st

from pages.common import ui

bundle = ui.page("Weight spectra", "Weight spectra",
                 "The alignment update is *aligned − base*; each task update is *fine-tune − aligned*. The maps "
                 "show one statistic of every weight matrix of every update on one colour scale; click a cell to "
                 "inspect that tensor's spectrum below (its cell is outlined in red).")
from explorer.checkpoints.architectures import readable_role  # noqa: E402
from explorer.results import charts  # noqa: E402
from explorer.results.stages import Stage  # noqa: E402
from explorer.weights.spectra import summarize  # noqa: E402
from pages.common import compute  # noqa: E402

bundle = compute.require(bundle, [Stage("spectra")], "Compute the spectra",
                         "This page needs the singular values of every weight matrix of every update: one "
                         "decomposition per tensor of each update, the cheapest of the family's results.")


@st.cache_data(show_spinner=False)
def summaries(folder: str, stamp: str):
    values = ui.table(bundle, "spectra")
    summary = pd.concat([summarize(group).assign(update=u) for u, group in values.groupby("update", sort=False)],
                        ignore_index=True)
    return values, summary


with st.spinner("Summarising the spectra of every update…"):
    values, summary = summaries(str(bundle.folder), bundle.manifest["created"])
matrices = summary[summary["rank_max"] > 1]  # a 1-D tensor (norm, bias) has a single singular value: its norm
updates = list(dict.fromkeys(matrices["update"]))
tensors = charts.natural_order(matrices["tensor"].unique())
STATS = {"effective_rank": "Effective rank", "stable_rank": "Stable rank", "frobenius": "Frobenius norm",
         "k90": "k for 90% energy"}
stat = st.radio("Statistic", list(STATS), format_func=STATS.get, horizontal=True, key="spectra_stat")

st.session_state.setdefault("spectra_update", updates[0])
st.session_state.setdefault("spectra_tensor", next((t for t in tensors if "q_proj.weight" in t), tensors[0]))
clicked = st.session_state.get("heat_spectra")
picked = (clicked or {}).get("selection", {}).get("cell") or []
if picked:
    click = (picked[0].get("update"), picked[0].get("tensor"))
    # Apply a click once: later reruns keep reporting it, and must not undo a choice made in the selectboxes.
    if click != st.session_state.get("spectra_applied_click") and click[0] in updates and click[1] in tensors:
        st.session_state["spectra_update"], st.session_state["spectra_tensor"] = click
    st.session_state["spectra_applied_click"] = click
else:
    st.session_state.pop("spectra_applied_click", None)

current = {"update": st.session_state["spectra_update"], "tensor": st.session_state["spectra_tensor"]}
# Cells narrow as modules and updates add up, so that the panels and their legend fit the page's width.
cell_width = max(10, min(22, 720 // max(1, len(updates) * matrices["module"].nunique())))
st.altair_chart(charts.layer_module_map(matrices, stat, STATS[stat], facet="update", facet_order=updates,
                                        selectable=True, current=current, cell=(cell_width, 12)),
                width="content", on_select="rerun", key="heat_spectra")
st.caption(f"{len(tensors)} weight matrices per update; the {summary['tensor'].nunique() - len(tensors)} 1-D "
           "tensors (norms, biases) have a single singular value, their norm, and are left out.")

left, right = st.columns([1, 2])
update = left.selectbox("Update", updates, key="spectra_update")
tensor = left.selectbox("Tensor", tensors, key="spectra_tensor")
row = matrices[(matrices["update"] == update) & (matrices["tensor"] == tensor)].iloc[0]
left.metric("Effective rank", f"{row['effective_rank']:.1f}",
            help="exp of the entropy of the normalised singular values s / Σs")
left.metric("Stable rank", f"{row['stable_rank']:.2f}", help="squared Frobenius norm / squared largest singular value")
left.metric("k for 50 / 90 / 99% energy", f"{row['k50']:.0f} / {row['k90']:.0f} / {row['k99']:.0f}",
            help=f"of {row['rank_max']:.0f} singular values")
selected = values[(values["update"] == update) & (values["tensor"] == tensor)]
with right:
    st.altair_chart(charts.spectrum(selected, f"{update}: {tensor}"), width="content")
expert = readable_role(tensor).expert
if expert is not None:  # a mixture of experts: the map's cell is the mean over this module's experts
    cell = matrices[(matrices["update"] == update) & (matrices["layer"] == row["layer"])
                    & (matrices["module"] == row["module"])]
    cell = cell.assign(expert=[readable_role(t).expert for t in cell["tensor"]])
    st.markdown(f"**{STATS[stat]} of every expert's `{row['module']}` at layer {row['layer']}** "
                f"(the map shows their mean; expert {expert} outlined)")
    st.altair_chart(charts.expert_bars(cell, stat, STATS[stat], current=expert), width="content")
ui.download(matrices[matrices["update"] == update], f"{update} spectrum statistics", f"spectra-{update}.csv",
            key="dl_summary")
ui.download(selected, "these singular values", f"singular-values-{tensor}.csv", key="dl_values")
