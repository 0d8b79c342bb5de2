"""A self-contained HTML page of a family's findings, with its charts, for stakeholders.

The page needs no network and runs no script, so it opens anywhere, as a mail attachment too: each chart is a
static SVG drawn by vl-convert (Vega's own renderer) with a caption that says what it shows, and its Vega-Lite
spec, data included, rides along as a JSON data block (never executed) for anyone who wants the numbers. All
text from the bundle is escaped, and the page's Content-Security-Policy forbids scripts, so a hostile member
name cannot run code in a reader's browser.
"""
from __future__ import annotations

import html
import json
import math

import altair as alt
import vl_convert

from explorer.results import charts, defence_charts
from explorer.results.bundle import Bundle
from explorer.results.findings import (
    INCONCLUSIVE,
    REFUTES,
    SUPPORTS,
    UNMEASURED,
    Finding,
    findings,
)

_VERDICT = {SUPPORTS: ("supports the paper", "#2ca02c"), REFUTES: ("does not support the paper", "#d62728"),
            INCONCLUSIVE: ("is inconclusive: its interval straddles the threshold", "#b8860b"),
            UNMEASURED: ("is not possible here", "#7f7f7f")}
_VEGA_LITE = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])  # the version Altair writes its specs in
_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
_STYLE = ("body{font-family:sans-serif;max-width:900px;margin:2em auto;padding:0 1em}td,th{padding:4px 8px}"
          "figure{margin:1em 0}figcaption{color:#444;font-size:0.9em;margin-top:0.3em}svg{max-width:100%;height:auto}")
CAPTIONS = {
    0: "Bars: each member's refusal rate on held-out harmful prompts, accuracy on held-out word problems and "
       "over-refusal of benign instructions, from 0 to 100%.",
    1: "Lines: the share of a task update's energy kept (y) when it is projected onto the top fraction ρ (x) of a "
       "subspace, for the alignment subspace and two random subspaces of the same size. Lines that lie on top of "
       "each other mean the alignment directions hold no more of the update than random ones.",
    2: "Bars: word-problem accuracy and refusal rate of the fine-tune when only the part of its update inside a "
       "subspace is kept (averaged over ρ ≤ 0.5), for the top alignment subspace and for random subspaces.",
    3: "Bars: refusal regained per point of word-problem accuracy lost when the part of the fine-tune's update "
       "inside each subspace is removed; a taller alignment bar would mean a more selective removal.",
    4: "Lines: the mode subspace overlap (MSO) of the useful and harmful task updates, averaged over all weight "
       "matrices, against the energy fraction η; the dashed line is the overlap two random subspaces would have.",
    5: "Lines: per layer, the overlap (MSO at η = 0.5) of the subspaces spanned by useful and by harmful prompts' "
       "hidden states, one line per member; the dashed grey line is the random baseline.",
}


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


def _text(value: object) -> str:
    return html.escape(str(value))


def json_script(data: object, element_id: str) -> str:
    """JSON in a data block: '<', '>' and '&' are written as \\u escapes, so no text can close the element."""
    text = json.dumps(data, default=str, sort_keys=True)
    text = text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
    return f'<script type="application/json" id="{_text(element_id)}">{text}</script>'


def _sized(chart: alt.TopLevelMixin) -> alt.TopLevelMixin:
    if isinstance(chart, (alt.Chart, alt.LayerChart)) and chart.width is alt.Undefined:
        return chart.properties(width=560)
    return chart  # facets and concatenations size their panels themselves


def chart_figure(chart: alt.TopLevelMixin | None, index: int, caption: str) -> str:
    """One chart as inline SVG with its caption and its spec."""
    if chart is None:
        return "<p><i>No chart: this family's results have no data for it.</i></p>"
    spec = _sized(chart).to_dict()
    svg = vl_convert.vegalite_to_svg(spec, vl_version=_VEGA_LITE)
    return (f'<figure id="chart{index}" role="img" aria-label="{_text(caption)}">{svg}'
            f"<figcaption>{_text(caption)}</figcaption>{json_script(spec, f'chart{index}-spec')}</figure>")


def _score(value: object) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return f"{value:.3f}"
    return "–" if value is None else _text(value)


def render(bundle: Bundle, measured: list[Finding] | None = None) -> str:
    """The report page; `measured` reuses findings already computed from this bundle."""
    manifest = bundle.manifest
    family, command = manifest.get("family", bundle.folder.name), manifest.get("command", "")
    parts = [f"<h1>Safety subspaces: {_text(family)}</h1>",
             f"<p>Precomputed on {_text(manifest.get('created', '?'))} with <code>{_text(command)}</code>; "
             f"scores from the {_text(manifest.get('profile', '?'))} evaluation profile. This page is "
             "self-contained: its charts are images drawn when it was written, and it loads nothing.</p>",
             "<h2>Members</h2>", chart_figure(charts.member_scores(bundle.scores), 0, CAPTIONS[0])]
    rows = "".join(f"<tr><td>{_text(m)}</td>" + "".join(f"<td>{_score(s.get(k))}</td>" for k in charts.SCORE_TITLES)
                   + "</tr>" for m, s in bundle.scores.items())
    parts.append("<table><tr><th>member</th>" + "".join(f"<th>{_text(t)}</th>" for t in charts.SCORE_TITLES.values())
                 + f"</tr>{rows}</table>")
    for finding in measured if measured is not None else findings(bundle):
        verdict, colour = _VERDICT[finding.verdict]
        parts += [f"<h2>{finding.number}. {_text(finding.title)}</h2>",
                  f"<p><b>Paper:</b> {_text(finding.paper)}</p>",
                  f"<p><b>Measured:</b> {_text(finding.measured)}</p>",
                  f'<p style="color:{colour}"><b>This measurement {verdict}.</b></p>',
                  chart_figure(finding_chart(finding), finding.number, CAPTIONS.get(finding.number, ""))]
    head = (f"<meta charset='utf-8'><meta http-equiv='Content-Security-Policy' content=\"{_POLICY}\">"
            f"<title>Safety subspaces: {_text(family)}</title><style>{_STYLE}</style>")
    return f"<!doctype html><html lang='en'><head>{head}</head><body>{''.join(parts)}</body></html>"
