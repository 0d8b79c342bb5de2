"""Weight spectra: singular values of any tensor of any update, and a layer x module map of spectrum statistics."""
import streamlit as st

from pages.common import ui

bundle = ui.page("Weight spectra", "Weight spectra",
              "The alignment update is *aligned − base*; each task update is *fine-tune − aligned*. "
              "Click a cell of a map to inspect that tensor's spectrum.")
from explorer.results import charts  # noqa: E402
from explorer.weights.spectra import summarize  # noqa: E402


@st.cache_data(show_spinner=False)
def summaries(folder: str, stamp: float):
    values = ui.table(bundle, "spectra")
    return values, {u: summarize(group) for u, group in values.groupby("update", sort=False)}


with st.spinner("Summarising the spectra of every update…"):
    values, summary = summaries(str(bundle.folder), bundle.manifest["created"])
STATS = {"effective_rank": "Effective rank", "stable_rank": "Stable rank", "frobenius": "Frobenius norm",
         "k90": "k for 90% energy"}
stat = st.radio("Statistic", list(STATS), format_func=STATS.get, horizontal=True, key="spectra_stat")
columns = st.columns(len(summary))
for column, (update, frame) in zip(columns, summary.items()):
    chart = charts.layer_module_heatmap(frame, stat, update, selectable=True, value_title=STATS[stat])
    event = column.altair_chart(chart, width="stretch", on_select="rerun", key=f"heat_{update}")
    picked = event["selection"].get("cell") if event else None
    if picked:
        st.session_state["spectra_tensor"] = picked[0]["tensor"]
        st.session_state["spectra_update"] = update

updates = list(summary)
tensors = list(summary[updates[0]]["tensor"])
st.session_state.setdefault("spectra_update", updates[0])
st.session_state.setdefault("spectra_tensor", next((t for t in tensors if "q_proj.weight" in t), tensors[0]))
left, right = st.columns([1, 2])
update = left.selectbox("Update", updates, key="spectra_update")
tensor = left.selectbox("Tensor", tensors, key="spectra_tensor")
row = summary[update].set_index("tensor").loc[tensor]
left.metric("Effective rank", f"{row['effective_rank']:.1f}", help="exp of the entropy of s / sum(s)")
left.metric("Stable rank", f"{row['stable_rank']:.2f}", help="||A||_F² / ||A||_2²")
left.metric("k for 50 / 90 / 99% energy", f"{row['k50']:.0f} / {row['k90']:.0f} / {row['k99']:.0f}")
selected = values[(values["update"] == update) & (values["tensor"] == tensor)]
right.altair_chart(charts.spectrum(selected, f"{update}: {tensor}"), width="stretch")
ui.download(summary[update], f"{update} spectrum statistics", f"spectra-{update}.csv", key="dl_summary")
ui.download(selected, "these singular values", f"singular-values-{tensor}.csv", key="dl_values")
