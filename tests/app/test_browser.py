"""One real browser: `streamlit run app.py` headless, every page opened in Debian's Chromium via Playwright."""
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
PAGES = {"overview": "", "spectra": "Weight_spectra", "projection": "Projection_lab", "overlap": "Update_overlap",
         "activations": "Activation_space", "spot-check": "Spot-check"}


def test_every_page_in_a_real_browser(server):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu",
                                                                    "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        for name, path in PAGES.items():
            page.goto(f"{server}/{path}", wait_until="networkidle")
            page.wait_for_selector("h1", timeout=60_000)
            if name != "spot-check":
                page.wait_for_selector(".vega-embed canvas, .vega-embed svg", timeout=60_000)
            page.wait_for_timeout(1500)  # let every chart finish drawing before the screenshot
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
            assert page.locator('[data-testid="stException"]').count() == 0, f"{name} shows an exception"
            assert "Traceback" not in page.content()
            if name != "spot-check":
                assert page.locator(".vega-embed").count() >= 2, f"{name} shows too few charts"
        browser.close()
