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
import re

import altair as alt
import pandas as pd
import vl_convert

from explorer.results import charts, defence_charts, lox
from explorer.results.bundle import Bundle
from explorer.results.family_comparison import (
    alignment_overlaps,
    comparison_summary,
    finding_table,
    on_shared_grid,
    shared_grid_note,
)
from explorer.results.findings import (
    INCONCLUSIVE,
    REFUTES,
    SUPPORTS,
    UNMEASURED,
    Finding,
    findings,
)
from explorer.results.summary import member_table

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
    6: "Bars: refusal regained per point of word-problem accuracy lost, for Safe LoRA and for orthogonal "
       "projection onto the top alignment subspace and onto a random one, with 95% intervals.",
    "lox": "Points: refusal rate (x) and word-problem accuracy (y) of each aligned model (hollow: the aligned model "
           "itself in black, and as extrapolated by LoX at each setting) and of the same contaminated fine-tune of it "
           "(filled, with 95% intervals); dashed lines join each pair.",
    "overlap": "Bars: the mode subspace overlap (MSO, η = 0.5, mean over weight matrices) of each task update with "
               "the alignment update, per family; the black tick is the overlap two random subspaces would have.",
}


def finding_chart(finding: Finding) -> alt.Chart | None:
    """The Overview's chart of a finding; finding 6's is the Defences view's selectivity bars."""
    if finding.number == 6:
        return None if finding.data.empty else defence_charts.selectivity_bars(finding.data)
    return charts.finding_chart(finding)


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


def _markdown(text: str) -> str:
    """Escaped text with the summaries' **bold** kept."""
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", _text(text))


def _table(frame: pd.DataFrame, index: bool = False) -> str:
    frame = frame.reset_index() if index else frame
    head = "".join(f"<th>{_text(c)}</th>" for c in frame.columns)
    rows = "".join("<tr>" + "".join(f"<td>{_text(v)}</td>" for v in row) + "</tr>"
                   for row in frame.itertuples(index=False))
    return f"<table><tr>{head}</tr>{rows}</table>"


def _family_sections(bundle: Bundle, measured: list[Finding], level: int, first_chart: int) -> list[str]:
    """A family's members and findings; headings start at <h{level}>, charts are numbered from first_chart."""
    h = f"h{level}"
    parts = [f"<{h}>Members</{h}>"]
    if bundle.scores:
        parts += [chart_figure(charts.member_scores(bundle.scores), first_chart, CAPTIONS[0]),
                  _table(member_table(bundle.scores).rename_axis("member"), index=True)]
    else:
        parts.append("<p>No member is scored yet: these results were computed stage by stage, and the member "
                     "scores are not among them.</p>")
    lox_rows, outcomes = lox.summary_table(bundle), lox.lox_outcomes(bundle)
    for finding in measured:
        verdict, colour = _VERDICT[finding.verdict]
        parts += [f"<{h}>{finding.number}. {_text(finding.title)}</{h}>",
                  f"<p><b>Paper:</b> {_text(finding.paper)}</p>",
                  f"<p><b>Measured:</b> {_text(finding.measured)}</p>",
                  f'<p style="color:{colour}"><b>This measurement {verdict}.</b></p>',
                  chart_figure(finding_chart(finding), first_chart + finding.number,
                               CAPTIONS.get(finding.number, ""))]
    if len(lox_rows):
        parts += [f"<{h}>LoX, then the same contaminated fine-tune</{h}>",
                  f"<p>{_text(lox.INTRO)}</p>",
                  *([f"<p><b>{_text(lox.headline(outcomes))}</b></p>"] if outcomes else []),
                  *(f"<p>{_text(o.sentence())}</p>" for o in outcomes),
                  _table(lox_rows),
                  chart_figure(defence_charts.lox_tradeoff(bundle.table(lox.TABLE), "refusal_rate"), first_chart + 7,
                               CAPTIONS["lox"])]
    return parts


def render(bundle: Bundle, measured: list[Finding] | None = None, compare: dict[str, Bundle] | None = None) -> str:
    """The report page; `measured` reuses findings already computed from this bundle. With `compare`, the page
    opens with the families side by side, then gives each family's members and findings."""
    manifest = bundle.manifest
    family = manifest.get("family", bundle.folder.name)
    measured_by = {family: measured if measured is not None else findings(bundle)}
    bundles = {family: bundle, **(compare or {})}
    for name, other in (compare or {}).items():
        measured_by[name] = findings(other)
    title = " and ".join(bundles)
    parts = [f"<h1>Safety subspaces: {_text(title)}</h1>"]
    for name, b in bundles.items():
        parts.append(f"<p><b>{_text(name)}</b>: precomputed on {_text(b.manifest.get('created', '?'))} with "
                     f"<code>{_text(b.manifest.get('command', ''))}</code>; scores from the "
                     f"{_text(b.manifest.get('profile', '?'))} evaluation profile.</p>")
    parts.append("<p>This page is self-contained: its charts are images drawn when it was written, and it loads "
                  "nothing.</p>")
    if compare:
        overlaps = alignment_overlaps(bundles)
        shared, fracs = on_shared_grid(bundles)
        side_by_side = {name: measured_by[name] if b is bundles[name] else findings(b)
                        for name, b in shared.items()}
        parts += ["<h2>Side by side</h2>", f"<p>{_markdown(comparison_summary(side_by_side, overlaps))}</p>",
                  _table(finding_table(side_by_side)), f"<p>{_text(shared_grid_note(fracs))}</p>" if fracs else "",
                  chart_figure(charts.alignment_overlap_bars(overlaps), 0, CAPTIONS["overlap"])]
        lox_rows = lox.families_table(bundles)
        if len(lox_rows):
            parts += ["<p><b>LoX, then the same contaminated fine-tune</b>, in each family:</p>", _table(lox_rows)]
        for index, (name, b) in enumerate(bundles.items()):
            parts += [f"<h2>{_text(name)}</h2>", *_family_sections(b, measured_by[name], 3, 10 * (index + 1))]
    else:
        parts += _family_sections(bundle, measured_by[family], 2, 0)
    head = (f"<meta charset='utf-8'><meta http-equiv='Content-Security-Policy' content=\"{_POLICY}\">"
            f"<title>Safety subspaces: {_text(title)}</title><style>{_STYLE}</style>")
    return f"<!doctype html><html lang='en'><head>{head}</head><body>{''.join(parts)}</body></html>"
