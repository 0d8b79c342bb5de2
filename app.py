"""Overview: the study in three sentences, the six findings as measured on the chosen family, member scores."""
import pandas as pd
import streamlit as st

from pages.common import ui

bundle = ui.page("Overview", "Subspace Explorer",
              "Safety alignment changes a model's weights along some directions. The study *Safety Subspaces are Not "
              "Linearly Distinct* (Ponkshe et al., arXiv 2505.14185) asks whether those directions can be used to keep "
              "the useful part of a later fine-tune while removing the harmful part. It finds that they cannot: the top "
              "alignment directions amplify utility and harm alike, and useful and harmful updates and activations share "
              "their subspaces. Below, each finding is measured on the chosen family.")
from explorer.results import charts  # noqa: E402
from explorer.results.findings import findings  # noqa: E402
from explorer.results.html_report import finding_chart, render  # noqa: E402

st.subheader("Members")
left, right = st.columns([3, 2])
left.altair_chart(charts.member_scores(bundle.scores), width="stretch")
scores = {m: {charts.SCORE_TITLES[k]: s[k] for k in charts.SCORE_TITLES} for m, s in bundle.scores.items()}
right.dataframe(pd.DataFrame(scores).T, width="stretch")
right.caption(f"Scores from the **{bundle.manifest['profile']}** profile: refusal on "
              f"{next(iter(bundle.scores.values()))['counts']['refusal']} held-out AdvBench prompts, accuracy on "
              f"{next(iter(bundle.scores.values()))['counts']['utility']} held-out word problems.")

PAGES = {"Projection lab": "pages/2_Projection_lab.py", "Update overlap": "pages/3_Update_overlap.py",
         "Activation space": "pages/4_Activation_space.py"}
st.subheader("The six findings, measured")
with ui.errors("Measuring the findings"):
    measured = findings(bundle)
for finding in measured:
    with st.container(border=True):
        st.markdown(f"**{finding.number}. {finding.title}**")
        st.caption(f"Paper: {finding.paper}")
        text, chart_col = st.columns([3, 2])
        show = {"supports": text.success, "does not support": text.warning}.get(finding.verdict, text.info)
        clear = finding.verdict in ("supports", "does not support")
        show(f"{finding.verdict.capitalize()}{' the paper' if clear else ''}. {finding.measured}")
        text.page_link(PAGES[finding.page], label=f"Explore on the {finding.page} page", icon="➡️")
        chart = finding_chart(finding)
        if chart is not None:
            chart_col.altair_chart(chart.properties(height=180), width="stretch")

st.download_button("Download the HTML report of these findings", lambda: render(bundle, measured),
                   f"{bundle.manifest['family']}-findings.html", "text/html", key="report")  # drawn on click
st.caption(f"Precomputed by `{bundle.manifest['command']}` on {bundle.manifest['created']}.")
