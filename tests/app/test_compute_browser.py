"""A family without results in a real browser (Debian's Chromium via Playwright): chosen in the sidebar, its spectra
computed from the page, which draws them by itself when the job is done; a running job shown again after a reload,
and cancelled from the sidebar."""
import os
import re
import time
from pathlib import Path

from playwright.sync_api import expect

from explorer.results.jobs import RUNNING, cancel_job, job_status

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"


def _choose_family(page, path: Path) -> None:
    """The sidebar's "Family" selectbox, "Another family file…", then the file's path typed in and Enter."""
    choice = page.locator(".st-key-family_choice input")
    choice.click()
    choice.fill("Another family file")
    page.get_by_role("option", name="Another family file…").click()
    box = page.get_by_placeholder("path/to/family.toml")
    box.fill(str(path))
    box.press("Enter")
    expect(page.locator('[data-testid="stSidebar"]')).to_contain_text(
        re.compile(r"fresh · (no results computed yet|precomputed)"), timeout=60_000)


def _no_exception(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0
    assert "Traceback" not in page.content()


def test_a_job_started_in_the_browser_updates_the_page_and_survives_a_reload(fresh_family, cache, serve, browser,
                                                                              tmp_path):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "EXPLORER_CACHE_DIR": str(cache)}
    with serve(env, tmp_path / "streamlit.log") as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        sidebar = page.locator('[data-testid="stSidebar"]')
        try:
            page.goto(url, wait_until="networkidle")
            page.wait_for_selector("h1", timeout=60_000)
            _choose_family(page, fresh_family)
            expect(page.get_by_role("button", name="Compute every missing stage")).to_be_visible(timeout=60_000)
            page.locator('[data-testid="stSidebarNav"] a', has_text="Weight spectra").click()
            compute = page.get_by_role("button", name="Compute the spectra")
            expect(compute).to_be_visible(timeout=60_000)
            compute.click()
            started = time.time()
            # No reload: the sidebar's fragment notices the job's end and reruns the page, which draws the maps.
            expect(sidebar).to_contain_text("Computed 1 stage for fresh", timeout=120_000)
            expect(page.locator(".vega-embed").first).to_be_visible(timeout=max(5_000, 120_000 - 1000 * (
                time.time() - started)))
            expect(page.get_by_role("button", name="Compute the spectra")).to_have_count(0)
            page.wait_for_timeout(1500)
            _no_exception(page)
            page.screenshot(path=str(SCREENSHOTS / "compute-spectra.png"))

            page.locator('[data-testid="stSidebarNav"] a', has_text="Activation space").click()
            compute = page.get_by_role("button", name="Compute activations")
            expect(compute).to_be_visible(timeout=60_000)
            compute.click()
            expect(sidebar).to_contain_text("Computing for fresh", timeout=30_000)
            expect(sidebar.locator('[data-testid="stProgress"]')).to_be_visible()
            expect(compute).to_be_disabled(timeout=10_000)  # one job of a family at a time
            page.screenshot(path=str(SCREENSHOTS / "compute-running.png"))

            page.reload(wait_until="networkidle")  # a new session: it forgets the chosen family
            page.wait_for_selector("h1", timeout=60_000)
            assert job_status("fresh")["state"] == RUNNING
            _choose_family(page, fresh_family)
            expect(sidebar).to_contain_text("Computing for fresh", timeout=30_000)
            expect(sidebar).to_contain_text(re.compile(r"stage \d of 5"))
            expect(page.get_by_role("button", name="Compute activations")).to_be_disabled()
            page.screenshot(path=str(SCREENSHOTS / "compute-after-reload.png"))
            sidebar.get_by_role("button", name="Cancel").click()
            expect(sidebar).to_contain_text("Cancelled", timeout=60_000)
            # The first member's stage may have completed before the cancel: then the rest are offered.
            again = page.get_by_role("button",
                                     name=re.compile(r"^Compute (activations|the activations of the other members)"))
            expect(again).to_be_enabled(timeout=10_000)
            _no_exception(page)
            page.screenshot(path=str(SCREENSHOTS / "compute-cancelled.png"))
            assert job_status("fresh")["state"] == "cancelled"
        finally:
            cancel_job("fresh")
            page.close()
