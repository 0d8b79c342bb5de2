"""Overview: what the chosen family shows, the six findings as measured on it, member scores."""
import pandas as pd
import streamlit as st

from pages.common import ui

bundle = ui.page("Overview", "Subspace Explorer",
                 "Safety alignment changes a model's weights along some directions. The study *Safety Subspaces are "
                 "Not Linearly Distinct* (Ponkshe et al., arXiv 2505.14185) asks whether those directions can be "
                 "used to keep the useful part of a later fine-tune while removing the harmful part. The paper "
                 "reports that they cannot: the top alignment directions amplify utility and harm alike, and useful "
                 "and harmful updates and activations share their subspaces. Below, each of its five findings, and a "
                 "sixth on the Safe LoRA defence, is measured again on the chosen family, which may or may not agree.")
from explorer.results import charts  # noqa: E402
from explorer.results.findings import findings  # noqa: E402
from explorer.results.html_report import render  # noqa: E402
from explorer.results.summary import plain_summary, profile_note, verdict_of  # noqa: E402

with ui.errors("Measuring the findings"):
    measured = findings(bundle)
st.info(plain_summary(bundle.manifest["family"], measured, profile_note(bundle.manifest)))

st.subheader("Members")
left, right = st.columns([5, 4])
left.altair_chart(charts.member_scores(bundle.scores), width="content")


def _cell(scores: dict, score: str) -> str:
    value = scores.get(score)
    if value is None:
        return "–"
    if score == "target_logprob":
        return f"{value:.2f}"
    ci = charts.score_interval(scores, score)
    return f"{value:.0%}" + (f" ({ci[0]:.0%}–{ci[1]:.0%})" if ci else "")


SHORT = {"refusal_rate": "Refusal", "utility_accuracy": "Accuracy", "over_refusal": "Over-refusal",
         "target_logprob": "Log-prob"}
table = pd.DataFrame({m: {SHORT[k]: _cell(s, k) for k in SHORT} for m, s in bundle.scores.items()}).T
right.dataframe(table, width="stretch")
counts = next(iter(bundle.scores.values())).get("counts", {})
right.caption(f"Refusal: refusal rate on {counts.get('refusal', '?')} held-out AdvBench prompts. Accuracy: "
              f"{counts.get('utility', '?')} held-out word problems. Over-refusal: refusals of "
              f"{counts.get('over_refusal', '?')} benign instructions. Log-prob: mean per-token log-probability of "
              "AdvBench's 'Sure, here is …' answer (higher = readier to comply). Rates in %, 95% intervals in "
              "brackets where stored.")

PAGES = {"Projection lab": "pages/2_Projection_lab.py", "Update overlap": "pages/3_Update_overlap.py",
         "Activation space": "pages/4_Activation_space.py"}
STYLE = {"supports": (st.success, "Supports the paper. "), "does not support": (st.warning, "Does not support "
         "the paper. "), "inconclusive": (st.info, "Inconclusive. "), "not measurable": (st.info, "Not measurable "
         "here. ")}
st.subheader("The six findings, measured")
for finding in measured:
    with st.container(border=True):
        st.markdown(f"**{finding.number}. {finding.title}**")
        st.caption(f"Paper: {finding.paper}")
        text, chart_col = st.columns([5, 6])
        with text:
            show, prefix = STYLE[verdict_of(finding)]
            show(prefix + finding.measured)
            st.page_link(PAGES[finding.page], label=f"Explore on the {finding.page} page", icon="➡️")
        chart = charts.finding_chart(finding)
        if chart is not None:
            chart_col.altair_chart(chart, width="content")

st.download_button("Download the HTML report of these findings", lambda: render(bundle, measured),
                   f"{bundle.manifest['family']}-findings.html", "text/html", key="report")  # drawn on click
st.caption(f"Precomputed by `{bundle.manifest['command']}` on {bundle.manifest['created']}.")
