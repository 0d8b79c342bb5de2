"""A family's background job in the sidebar of every page: its stage, progress, time left and Cancel while it runs,
refreshed every 2 s; how it ended otherwise."""
from __future__ import annotations

import streamlit as st


def job_panel(name: str) -> None:
    """The family's job in the sidebar: its stage, progress and time left while it runs, refreshed every 2 s;
    how it ended otherwise. A stage completed reruns the page, so that its results appear."""
    from explorer.results.jobs import RUNNING, job_status

    status = job_status(name)
    if status is None:
        return
    st.session_state.setdefault("job_seen", {})[name] = (status.get("state"), status.get("done", 0))
    with st.sidebar:
        if status.get("state") == RUNNING:
            _running_job(name)
        else:
            _job_lines(status)


@st.fragment(run_every=2)
def _running_job(name: str) -> None:
    from explorer.results.jobs import job_status

    status = job_status(name) or {}
    if st.session_state["job_seen"].get(name) != (status.get("state"), status.get("done", 0)):
        st.rerun()  # a stage finished, or the job ended: the whole page reads the bundle again
    _job_lines(status)


def _job_lines(status: dict) -> None:
    from explorer.results.estimates import duration_text
    from explorer.results.jobs import CANCELLED, DONE, FAILED, RUNNING, STOPPED, cancel_job, eta_seconds

    name, state, done = status.get("family", ""), status.get("state"), status.get("done", 0)
    stages = status.get("stages", [])
    if state == RUNNING:
        st.markdown(f"**Computing for {name}**: stage {min(done + 1, len(stages))} of {len(stages)}, "
                    f"{status.get('title', '')}")
        st.progress(status.get("fraction", 0.0), text=status.get("text") or "starting")
        left = eta_seconds(status)
        device = status.get("device", "")
        st.caption((f"{duration_text(left)} left (estimated)" if left is not None else "estimating the time left")
                   + (f" · on the GPU ({device})" if device.startswith("cuda") else " · on the CPU"))
        if st.button("Cancel", key="cancel_job", help="Stops after dropping the stage in progress; the completed "
                                                      "stages are kept."):
            cancel_job(name)
            st.rerun()
    elif state == DONE:
        st.success(f"Computed {len(stages)} stage{'s' if len(stages) != 1 else ''} for {name} (finished "
                   f"{status.get('finished', '')[11:16]} UTC).")
    elif state == CANCELLED:
        st.info(f"Cancelled after {done} of {len(stages)} stages; the completed stages are kept." if done else
                "Cancelled before its first stage was complete; nothing was written.")
    elif state in (FAILED, STOPPED):
        st.error(f"The job stopped at stage {done + 1} of {len(stages)} ({status.get('title', '')}): "
                 f"{status.get('error', '')}")
