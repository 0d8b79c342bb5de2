"""The Overview's account of a family's stages: which are computed, and one button for every missing one."""
from __future__ import annotations

from typing import TYPE_CHECKING

import streamlit as st

from pages.common import compute, ui

if TYPE_CHECKING:
    from explorer.results.bundle import Bundle


def stage_panel(bundle: Bundle | None) -> None:
    """Nothing once every stage of a whole precompute is in the results; otherwise what is there and what is not,
    with "Compute every missing stage"."""
    from explorer.results.stages import GRID_FRACS, is_done, planned

    stages = planned(compute.family_members(), GRID_FRACS)
    name = ui.family_name()
    with ui.errors("Reading the family's results"):
        done = {stage: is_done(stage, bundle) for stage in stages}
    if all(done.values()):
        return
    with st.container(border=True):
        if bundle is None:
            st.markdown(f"**{name} has no results yet.** Every page of the explorer reads them. Compute them "
                        "here, all at once, or page by page: each page offers what it needs.")
        else:
            st.markdown(f"**{sum(done.values())} of {len(stages)} stages of {name}'s results are computed.** The "
                        "findings and pages below use what is there; the rest can be computed here.")
        kinds: dict[str, list[bool]] = {}
        for stage in stages:
            kinds.setdefault(stage.kind, []).append(done[stage])
        complete = [_KIND[k] for k, flags in kinds.items() if all(flags)]
        partial = [f"{_KIND[k]} ({sum(flags)} of {len(flags)})" for k, flags in kinds.items() if not all(flags)]
        st.caption((f"Computed: {', '.join(complete)}. " if complete else "") + f"Not yet: {', '.join(partial)}.")
        compute.profile_choice(bundle)
        compute.offer("Compute every missing stage", stages, bundle, "compute_all")


_KIND = {"spectra": "spectra", "energy": "projection energies", "update_mso": "update overlaps",
         "activations": "activations of members", "scores": "member scores", "safelora": "Safe LoRA",
         "grid": "projection grid blocks"}
