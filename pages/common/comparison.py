"""The Overview's side-by-side view of two families: each finding's verdict and statistic for both, and how
much of each task update lies in each family's alignment subspace."""
from __future__ import annotations

import streamlit as st

from explorer.core.errors import ExplorerError
from explorer.results import charts
from explorer.results.bundle import Bundle
from explorer.results.family_comparison import (
    alignment_overlaps,
    comparison_summary,
    finding_table,
    on_shared_grid,
    shared_grid_note,
)
from explorer.results.findings import Finding
from explorer.results.lox import families_table
from explorer.results.summary import member_table
from pages.common import ui


def side_by_side(family: str, bundle: Bundle, measured: list[Finding], other: str, other_bundle: Bundle) -> None:
    st.subheader(f"Side by side: {family} and {other}")
    try:
        shared, fracs = on_shared_grid({family: bundle, other: other_bundle})
        measured_by = {name: measured if b is bundle else ui.findings_of(b) for name, b in shared.items()}
        overlaps = alignment_overlaps({family: bundle, other: other_bundle})
    except ExplorerError as exc:
        st.warning(f"Cannot compare with {other}: {exc}")
        return
    except Exception:
        ui.log.exception("Comparing with %s failed", other)
        st.warning(f"Comparing with {other} failed unexpectedly; the details are in the server's log.")
        return
    st.markdown(comparison_summary(measured_by, overlaps))
    table = finding_table(measured_by)
    widths = {c: "small" if c.endswith("verdict") else "medium" for c in table.columns}
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={c: st.column_config.TextColumn(c, width=w) for c, w in widths.items()})
    st.caption("Hover a cell to read it whole. Statistics, intervals and thresholds are each finding's own "
               "(the boxes below give the full text). " + shared_grid_note(fracs))
    left, right = st.columns([4, 5])
    left.altair_chart(charts.alignment_overlap_bars(overlaps), width="content")
    members = {f"{name} · {m}": s for name, b in ((family, bundle), (other, other_bundle)) for m, s in b.scores.items()}
    right.dataframe(member_table(members), width="stretch")
    right.caption("Members of both families; rates in % with 95% intervals. House style: the share of held-out "
                  "benign answers in the broad demo alignment's house style (header, bullets, sign-off), which "
                  "only a broadly aligned model learned.")
    lox = families_table({family: bundle, other: other_bundle})
    if len(lox):
        st.markdown("**LoX, then the same contaminated fine-tune**: refusal and word-problem accuracy after the "
                    "fine-tune, and their differences (Δ) from the unprotected fine-tune of the same family, with "
                    "paired 95% intervals (the Projection lab's Defences view explains each).")
        st.dataframe(lox, hide_index=True, width="stretch")
        missing = [name for name in (family, other) if name not in set(lox["family"])]
        if missing:
            st.caption(f"{' and '.join(missing)} has no LoX measurement yet (`python -m explorer demo lox`).")
