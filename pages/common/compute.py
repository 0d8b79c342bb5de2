"""Computing a family's results from the pages: what a page needs, and a "Compute …" button that starts a background
job (explorer.results.jobs) with its estimated time; the job's progress is pages.common.job_panel's."""
from __future__ import annotations

from typing import TYPE_CHECKING

import streamlit as st

from pages.common import ui

if TYPE_CHECKING:
    from explorer.checkpoints.family import Family
    from explorer.results.bundle import Bundle
    from explorer.results.stages import Settings, Stage

PROFILE_NOTE = {"full": "100 prompts a score, as the demo", "quick": "32 prompts a score", "smoke": "8 prompts a score"}


def family_members() -> list[str]:
    """The chosen family's members, from its file alone: its checkpoints need not exist."""
    from explorer.checkpoints.family import ALIGNED, BASE, read_family_spec

    with ui.errors("Reading the family file"):
        return [BASE, ALIGNED, *read_family_spec(st.session_state["family"])["finetuned"]]


def job_settings(bundle: Bundle | None) -> Settings:
    """The settings of the family's results: the bundle's where it has them, else those chosen on the page."""
    from explorer.results.stages import Settings

    chosen = st.session_state.get("compute_profile", "full")
    if bundle is None:
        return Settings(chosen)
    manifest = bundle.manifest
    # A setting is the results' own once a stage that depends on it is there (stages.settings_conflict).
    scored, gridded = bool(bundle.scores), bundle.has("projection") or bundle.has("safelora")
    profile = manifest["profile"] if scored else manifest.get("grid_profile") if gridded else chosen
    return Settings(profile, manifest.get("grid_profile") if gridded else profile, int(manifest.get("seed", 0)))


def profile_choice(bundle: Bundle | None) -> None:
    """The scoring profile of the scores a job computes, offered while no score binds the results to one."""
    if bundle is not None and (bundle.scores or bundle.has("projection") or bundle.has("safelora")):
        return
    st.selectbox("Scoring profile", list(PROFILE_NOTE), key="compute_profile", format_func=lambda p: f"{p} "
                 f"({PROFILE_NOTE[p]})", help="Every score of this family's results uses the same profile, so that "
                 "they compare like with like; it is fixed by the first score computed.")


def estimate_text(family: Family, stages: list[Stage], settings: Settings) -> str:
    from explorer.core.config import settings as engine_settings
    from explorer.results.estimates import duration_text, stage_seconds
    from explorer.results.stages import machine

    device = engine_settings().device
    seconds = sum(stage_seconds(family, s, settings, device) for s in stages)
    where = "the GPU" if device.startswith("cuda") else f"{machine()['cpus']} CPU cores"
    return f"{duration_text(seconds)} on {where} (an estimate from the family's size and this device's speed)"


def require(bundle: Bundle | None, stages: list[Stage], label: str, needs: str) -> Bundle:
    """Stop the page, offering to compute them, unless the family's results hold `stages`."""
    from explorer.results.stages import is_done

    if bundle is not None and all(is_done(s, bundle) for s in stages):
        return bundle
    offer(label, stages, bundle, key="require", needs=needs)
    st.stop()


def offer(label: str, stages: list[Stage], bundle: Bundle | None, key: str, needs: str | None = None) -> None:
    """What the page needs (`needs`), and a button that computes `stages` in the background, with their estimated
    time; disabled, with the reason, without the family's checkpoints or while a job of the family runs."""
    from explorer.results.stages import is_done

    if needs:
        st.info(needs)
    todo = [s for s in stages if not is_done(s, bundle)]
    if not todo:
        return
    family, problem = ui.checkpoints(bundle)
    name = ui.family_name()
    running = _running(name)
    settings = job_settings(bundle)
    clicked = st.button(label, key=key, type="primary", disabled=family is None or running is not None)
    if problem:
        st.caption(problem)
    elif running is not None:
        st.caption(f"A job is computing {running.get('title', 'results')} for {name} (see the sidebar); this can start "
                   "when it has finished.")
    else:
        with ui.errors("Estimating the time"):
            st.caption(f"{len(todo)} stage{'s' if len(todo) > 1 else ''}, {estimate_text(family, todo, settings)}. "
                       "It runs in the background: the other pages stay usable, and the results appear here "
                       "as each stage completes.")
    if clicked and family is not None:
        from explorer.results.jobs import start_job

        with ui.errors("Starting the computation"):
            start_job(st.session_state["family"], todo, settings)
        st.rerun()


def _running(name: str) -> dict | None:
    from explorer.results.jobs import RUNNING, job_status

    status = job_status(name)
    return status if status and status.get("state") == RUNNING else None
