"""A family without results, through Streamlit's AppTest: every page offers a "Compute …" button, a click starts a
background job (explorer.results.jobs), and once it is done the page draws what it computed."""
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from explorer.results.jobs import DONE, RUNNING, cancel_job, job_status

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 120
ACTIVATIONS_TIMEOUT = 480  # five members, about 20 s each on 2 idle cores; several times that on a loaded machine
OVERVIEW = "app.py"  # pages/0_Overview.py through the app's navigation, which its page links need
OFFERING = [OVERVIEW, "pages/1_Weight_spectra.py", "pages/2_Projection_lab.py",
            "pages/3_Update_overlap.py", "pages/4_Activation_space.py"]


def _run(page, family=None, **state):
    at = AppTest.from_file(str(ROOT / page), default_timeout=TIMEOUT)
    if family is not None:
        at.session_state["family"] = str(family)
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


def _compute_buttons(at):
    return [b for b in at.button if b.label.startswith("Compute")]


def _charts(at):
    return list(at.get("vega_lite_chart"))


def _wait(name: str, timeout: float) -> dict:
    """The family's job once it has ended (or the test fails, its log quoted)."""
    deadline = time.time() + timeout
    status = job_status(name)
    while time.time() < deadline:
        status = job_status(name)
        if status is not None and status.get("state") != RUNNING:
            return status
        time.sleep(1)
    pytest.fail(f"the job did not end within {timeout:.0f} s: {status}")


def _job_log(cache: Path, name: str) -> str:
    log = cache / "jobs" / f"{name}.log"
    return log.read_text()[-3000:] if log.exists() else "(no log)"


@pytest.mark.parametrize("page", [*OFFERING, "pages/5_Spot-check.py"])
def test_every_page_of_a_family_without_results_opens_and_offers_to_compute(fresh_family, cache, page):
    at = _run(page, fresh_family)
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    if page in OFFERING:
        buttons = _compute_buttons(at)
        assert buttons, f"{page} offers no Compute button: {[b.label for b in at.button]}"
        assert not any(b.disabled for b in buttons), [b.label for b in buttons]
    assert job_status("fresh") is None  # opening a page starts nothing


def test_computing_the_spectra_from_the_page_draws_them(fresh_family, cache):
    at = _run("pages/1_Weight_spectra.py", fresh_family)
    assert not _charts(at)
    at.button(key="require").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert job_status("fresh")["state"] in (RUNNING, DONE)
    status = _wait("fresh", 120)
    assert status["state"] == DONE, (status, _job_log(cache, "fresh"))
    at = _run("pages/1_Weight_spectra.py", fresh_family)
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert _charts(at), "the spectra are computed but no chart is drawn"
    assert not any(b.label == "Compute the spectra" for b in at.button)
    assert any(s.value.startswith("Computed 1 stage for fresh") for s in at.sidebar.success)


def test_activations_computed_from_the_page_while_other_pages_wait(fresh_family, cache):
    """Five members, one stage each: while the job runs another page's Compute button is disabled, saying why;
    once it is done the page draws the embedding of every member."""
    at = _run("pages/4_Activation_space.py", fresh_family)
    at.button(key="compute_activations").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    try:
        assert job_status("fresh")["state"] == RUNNING
        overlap = _run("pages/3_Update_overlap.py", fresh_family)
        assert not overlap.exception and not overlap.error
        button = overlap.button(key="require")
        assert button.label == "Compute the update overlaps" and button.disabled
        assert any(c.value.startswith("A job is computing") for c in overlap.caption)
        assert any(m.value.startswith("**Computing for fresh**") for m in overlap.sidebar.markdown)
        assert overlap.sidebar.button(key="cancel_job")
        deadline = time.time() + ACTIVATIONS_TIMEOUT
        while (job_status("fresh") or {}).get("done", 0) < 1 and job_status("fresh")["state"] == RUNNING \
                and time.time() < deadline:
            time.sleep(1)
        if job_status("fresh")["state"] == RUNNING:  # one member done: the page draws it, the others still to come
            partial = _run("pages/4_Activation_space.py", fresh_family)
            assert not partial.exception and not partial.error, [e.value for e in partial.error]
            assert partial.selectbox(key="act_member").options[0] == "base"
            assert any("base, layer " in c.proto.spec for c in _charts(partial)), "no embedding chart of base"
            assert any(e.label.startswith("Not computed yet: the activations of ") for e in partial.expander)
            assert partial.button(key="compute_more_activations").disabled
        status = _wait("fresh", max(deadline - time.time(), 1))
        assert status["state"] == DONE and status["done"] == 5, (status, _job_log(cache, "fresh"))
    finally:
        cancel_job("fresh")
    at = _run("pages/4_Activation_space.py", fresh_family)
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert not any(b.label == "Compute activations" for b in at.button)
    assert set(at.selectbox(key="act_member").options) >= {"base", "aligned", "useful", "harmful", "contaminated"}
    assert any("aligned, layer " in c.proto.spec for c in _charts(at)), "no embedding chart"
    overlap = _run("pages/3_Update_overlap.py", fresh_family)
    assert not overlap.button(key="require").disabled


def _midway(family: Path, cache: Path) -> None:
    """The family's spectra, projection energies and update overlaps computed, as from the pages; nothing else."""
    from explorer.results.jobs import start_job
    from explorer.results.stages import Settings, Stage

    start_job(family, [Stage("spectra"), Stage("energy"), Stage("update_mso")], Settings("full"))
    status = _wait("fresh", 120)
    assert status["state"] == DONE, (status, _job_log(cache, "fresh"))


def test_pages_midway_draw_what_is_computed_and_offer_the_rest(fresh_family, cache):
    _midway(fresh_family, cache)
    at = _run(OVERVIEW, fresh_family)
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    assert any(m.value.startswith("**3 of 32 stages of fresh's results are computed.**") for m in at.markdown)
    assert {"compute_all", "compute_scores"} <= {b.key for b in _compute_buttons(at)}
    for page in ("pages/1_Weight_spectra.py", "pages/3_Update_overlap.py"):
        at = _run(page, fresh_family)
        assert not at.exception and not at.error, (page, at.exception, [e.value for e in at.error])
        assert _charts(at) and not _compute_buttons(at), page
    at = _run("pages/4_Activation_space.py", fresh_family)
    assert not at.exception and [b.key for b in _compute_buttons(at)] == ["compute_activations"]


def test_projection_lab_midway_draws_the_energies_and_offers_points(fresh_family, cache):
    _midway(fresh_family, cache)
    at = _run("pages/2_Projection_lab.py", fresh_family)
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert any("Task energy kept" in c.proto.spec for c in _charts(at))
    labels = [b.label for b in _compute_buttons(at)]
    assert "Compute this point (ρ = 0.25)" in labels and "Compute Safe LoRA's points" in labels
    assert any(label.startswith("Compute the useful grid") for label in labels)


def test_overview_midway_compared_with_demo_broad(fresh_family, cache):
    _midway(fresh_family, cache)
    at = _run(OVERVIEW, fresh_family, compare_family="demo-broad")
    assert not at.exception, at.exception
    assert at.sidebar.selectbox(key="compare_choice_fresh").value == "demo-broad"
    assert not any("failed unexpectedly" in w.value for w in at.warning), [w.value for w in at.warning]


def _without_checkpoints(family: Path, folder: Path) -> Path:
    """The family's file, its members' checkpoints pointing where there are none: its results remain."""
    text = family.read_text().replace('"../cache/models/', '"../missing-models/')
    path = folder / "families" / family.name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _offers_nothing(at) -> None:
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert not _compute_buttons(at), [b.label for b in at.button]
    assert not any("has no results yet" in m.value or "stages of" in m.value for m in at.markdown)
    assert _charts(at)


def test_the_demo_family_with_an_empty_cache_offers_nothing_to_compute(cache):
    """The committed demo results are found with a private, empty cache: nothing is missing, nothing is offered."""
    _offers_nothing(_run(OVERVIEW))  # the app's default family: families/demo.toml
    assert not (cache / "jobs").exists()


def test_the_demo_family_without_its_checkpoints_offers_nothing_to_compute(cache, tmp_path):
    _offers_nothing(_run(OVERVIEW, _without_checkpoints(ROOT / "families" / "demo.toml", tmp_path)))
