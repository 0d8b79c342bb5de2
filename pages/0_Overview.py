"""Overview: what the chosen family shows, the six findings as measured on it, member scores."""
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
from explorer.results.html_report import render  # noqa: E402
from explorer.results.summary import member_table, plain_summary, profile_note, verdict_of  # noqa: E402
from pages.common.comparison import side_by_side  # noqa: E402
from pages.common.stages import stage_panel  # noqa: E402

stage_panel(bundle)
if bundle is None:
    st.stop()
with ui.errors("Measuring the findings"), st.spinner("Measuring the six findings on this family's results…"):
    measured = ui.findings_of(bundle)
scored = bool(bundle.scores) or bundle.has("projection")
st.info(plain_summary(bundle.manifest["family"], measured,
                      profile_note(bundle.manifest) if scored else "nothing is scored yet"))

compared = ui.comparison(bundle)
if compared is not None:
    side_by_side(bundle.manifest["family"], bundle, measured, *compared)

st.subheader("Members")
if bundle.scores:
    left, right = st.columns([5, 4])
    left.altair_chart(charts.member_scores(bundle.scores), width="content")
    right.dataframe(member_table(bundle.scores), width="stretch")
    counts = next(iter(bundle.scores.values())).get("counts", {})
    right.caption(f"Refusal: refusal rate on {counts.get('refusal', '?')} held-out AdvBench prompts. Accuracy: "
                  f"{counts.get('utility', '?')} held-out word problems. Over-refusal: refusals of "
                  f"{counts.get('over_refusal', '?')} benign instructions. Log-prob: mean per-token log-probability "
                  "of AdvBench's 'Sure, here is …' answer (higher = readier to comply). Rates in %, 95% intervals in "
                  "brackets where stored." + (f" House style: the share of {counts['style']} benign answers in the "
                                              "broad demo's house style." if counts.get("style") else ""))
else:
    from explorer.results.stages import Stage
    from pages.common import compute

    compute.offer("Compute the member scores", [Stage("scores", m) for m in compute.family_members()], bundle,
                  "compute_scores", needs="No member is scored yet. Each member answers held-out AdvBench prompts, "
                                          "word problems and benign instructions, with the profile chosen above.")

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

others = dict([compared]) if compared is not None else {}
st.download_button("Download the HTML report of these findings" + (f" (with {compared[0]})" if others else ""),
                   lambda: render(bundle, measured, others), "-".join([bundle.manifest["family"], *others])
                   + "-findings.html", "text/html", key="report")  # drawn on click
st.caption(f"Precomputed by `{bundle.manifest['command']}` on {bundle.manifest['created']}.")
