"""A self-contained HTML page of a family's findings, with its charts, for stakeholders.

Charts are Vega-Lite specs rendered by vega-embed, loaded from the jsDelivr CDN when the page is opened.
"""
from __future__ import annotations

import html
import json

import altair as alt

from explorer.results import charts, defence_charts
from explorer.results.bundle import Bundle
from explorer.results.findings import Finding, findings

_SCRIPTS = "".join(f'<script src="https://cdn.jsdelivr.net/npm/{lib}"></script>'
                   for lib in ("vega@5", "vega-lite@5", "vega-embed@6"))
_VERDICT = {True: ("supports the paper", "#2ca02c"), False: ("does not support the paper", "#d62728"),
            None: ("not measurable here", "#7f7f7f")}


def finding_chart(finding: Finding) -> alt.Chart | None:
    data = finding.data
    if data.empty:
        return None
    if finding.number == 1:
        return charts.energy_curves(data[data["variant"] == data["variant"].iloc[0]])
    if finding.number == 4:
        return charts.overlap_curves(data)
    if finding.number == 5:
        return charts.per_layer(data, "mso", "Useful vs harmful prompts, η = 0.5", reference="mso_random",
                                y_title="Activation MSO")
    if finding.number == 6:
        return defence_charts.selectivity_bars(data)
    if finding.number == 2:
        variant = "contaminated" if "contaminated" in set(data["variant"]) else data["variant"].iloc[0]
        long = data[data["variant"] == variant].melt(id_vars=["subspace"], value_vars=["utility_accuracy",
                                                                                      "refusal_rate"])
        return charts.bars(long, "subspace", "value", color="variable", title=f"{variant}, parallel, ρ ≤ 0.5")
    return charts.bars(data, "subspace", "refusal_gained_per_utility_lost", title="Orthogonal projection")


def _embed(chart: alt.Chart | None, index: int) -> str:
    if chart is None:
        return ""
    spec = json.dumps(chart.properties(width=560).to_dict())
    return f'<div id="chart{index}"></div><script>vegaEmbed("#chart{index}", {spec});</script>'


def render(bundle: Bundle, measured: list[Finding] | None = None) -> str:
    """The report page; `measured` reuses findings already computed from this bundle."""
    manifest = bundle.manifest
    parts = [f"<h1>Safety subspaces: {html.escape(manifest['family'])}</h1>",
             f"<p>Precomputed on {manifest['created']} with <code>{html.escape(manifest['command'])}</code>; "
             f"scores from the {manifest['profile']} evaluation profile.</p>",
             "<h2>Members</h2>", _embed(charts.member_scores(bundle.scores), 0)]
    rows = "".join(f"<tr><td>{m}</td>" + "".join(f"<td>{s[k]:.3f}</td>" for k in charts.SCORE_TITLES) + "</tr>"
                   for m, s in bundle.scores.items())
    parts.append("<table><tr><th>member</th>" + "".join(f"<th>{t}</th>" for t in charts.SCORE_TITLES.values())
                 + f"</tr>{rows}</table>")
    for finding in measured if measured is not None else findings(bundle):
        verdict, colour = _VERDICT[finding.supported]
        parts += [f"<h2>{finding.number}. {html.escape(finding.title)}</h2>",
                  f"<p><b>Paper:</b> {html.escape(finding.paper)}</p>",
                  f"<p><b>Measured:</b> {html.escape(finding.measured)}</p>",
                  f'<p style="color:{colour}"><b>This measurement {verdict}.</b></p>',
                  _embed(finding_chart(finding), finding.number)]
    style = "<style>body{font-family:sans-serif;max-width:900px;margin:2em auto}td,th{padding:4px 8px}</style>"
    return f"<!doctype html><html><head><meta charset='utf-8'>{_SCRIPTS}{style}</head><body>{''.join(parts)}</body></html>"
