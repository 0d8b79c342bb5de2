"""One real browser: `streamlit run app.py` headless, every page opened in Debian's Chromium via Playwright, and
what is drawn looked at: every chart big enough to read and holding coloured marks, Overview first in the
navigation. EXPLORER_SCREENSHOTS=docs/screenshots retakes the README's screenshots."""
import base64
import os
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / os.environ.get("EXPLORER_SCREENSHOTS", "test-artifacts/screenshots")
# The first page opened is not the overview: a fresh server must show the app's navigation on any page.
PAGES = {"spectra": "Weight_spectra", "overview": "", "projection": "Projection_lab", "overlap": "Update_overlap",
         "activations": "Activation_space", "spot-check": "Spot-check"}
MIN_WIDTH, MIN_HEIGHT = 250, 150
MIN_COLOURED = 150  # pixels whose channels differ by more than 60: marks, not text, axes or grid
# Counts coloured pixels of a PNG inside the page, which has a PNG decoder (no imaging library needed here).
COLOURED = """async (src) => {
  const img = new Image(); img.src = src; await img.decode();
  const canvas = document.createElement('canvas'); canvas.width = img.width; canvas.height = img.height;
  const ctx = canvas.getContext('2d'); ctx.drawImage(img, 0, 0);
  const d = ctx.getImageData(0, 0, img.width, img.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (Math.max(d[i], d[i + 1], d[i + 2]) - Math.min(d[i], d[i + 1], d[i + 2]) > 60) n++;
  }
  return n;
}"""


def _open(page, url: str) -> None:
    """Open a page and wait until its charts stop appearing and have drawn."""
    page.goto(url, wait_until="networkidle")
    page.wait_for_selector("h1", timeout=60_000)
    start = time.time()
    count, stable_since = -1, start
    # A first render can compute for seconds before its first chart (findings bootstrap over prompts).
    while time.time() - stable_since < 3 or (count == 0 and time.time() - start < 30):
        now = page.locator(".vega-embed").count()
        if now != count:
            count, stable_since = now, time.time()
        page.wait_for_timeout(250)
    page.wait_for_timeout(1500)


def _coloured_pixels(page, element) -> int:
    png = element.screenshot()
    return page.evaluate(COLOURED, "data:image/png;base64," + base64.b64encode(png).decode())


def test_every_chart_is_readable_and_drawn(server, browser):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems = []
    for name, path in PAGES.items():
        _open(page, f"{server}/{path}")
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
        assert page.locator('[data-testid="stException"]').count() == 0, f"{name} shows an exception"
        assert "Traceback" not in page.content()
        entries = page.locator('[data-testid="stSidebarNav"] a').all_inner_texts()
        assert entries and entries[0] == "Overview", f"{name}: navigation starts {entries[:2]}"
        charts = page.locator(".vega-embed")
        if name != "spot-check":
            assert charts.count() >= 2, f"{name} shows too few charts"
        for i in range(charts.count()):
            chart = charts.nth(i)
            chart.scroll_into_view_if_needed()
            page.wait_for_timeout(300)
            box = chart.bounding_box()
            if box["width"] < MIN_WIDTH or box["height"] < MIN_HEIGHT:
                problems.append(f"{name} chart {i}: {box['width']:.0f}x{box['height']:.0f} px")
            coloured = _coloured_pixels(page, chart)
            if coloured < MIN_COLOURED:
                problems.append(f"{name} chart {i}: {coloured} coloured pixels")
    page.close()
    assert not problems, problems


def _select(page, key: str, value: str) -> None:
    box = page.locator(f".st-key-{key} input")
    box.click()
    box.fill(value)
    page.wait_for_timeout(500)
    page.keyboard.press("Enter")
    page.wait_for_timeout(3000)


def _selected(page, key: str) -> str:
    return page.locator(f".st-key-{key} input").input_value()


def test_clicked_cell_is_selected_and_the_selectboxes_then_keep_their_choice(server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    _open(page, f"{server}/Weight_spectra")
    heatmap = page.locator(".vega-embed").first
    box = heatmap.bounding_box()
    target = None
    for x in range(int(box["x"]) + 60, int(box["x"] + box["width"]), 6):  # hover until a 'useful' cell answers
        page.mouse.move(x, box["y"] + box["height"] * 0.4)
        page.wait_for_timeout(60)
        tooltip = page.locator("#vg-tooltip-element")
        if tooltip.count() and tooltip.is_visible() and "useful" in tooltip.inner_text():
            target = (x, tooltip.inner_text())
            break
    assert target, "no heatmap cell of the useful update found under the mouse"
    lines = [line.strip() for line in target[1].splitlines() if line.strip()]  # "key", "value", ...
    tensor = lines[lines.index("tensor") + 1]
    page.mouse.click(target[0], box["y"] + box["height"] * 0.4)
    page.wait_for_timeout(3000)
    assert _selected(page, "spectra_update") == "useful" and _selected(page, "spectra_tensor") == tensor
    _select(page, "spectra_update", "harmful")
    assert _selected(page, "spectra_update") == "harmful", "the update snapped back to the clicked cell's"
    other = "model.layers.1.mlp.down_proj.weight" if "layers.1.mlp.down_proj" not in tensor else \
        "model.layers.2.mlp.down_proj.weight"
    _select(page, "spectra_tensor", other)
    assert _selected(page, "spectra_tensor") == other and _selected(page, "spectra_update") == "harmful"
    page.close()


def test_the_rank_control_shows_scores_at_a_position_off_the_grid(server, browser):
    """ρ = 0.32 is none of the contaminated grid's values (every 0.05): without checkpoints the page shows the
    nearest scored points, ρ = 0.30 and 0.35, each with its four scores and their intervals, and says that nothing is
    interpolated; ρ = 0.30, which the old eight-value grid lacked, is a scored point."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    _open(page, f"{server}/Projection_lab")
    thumb = page.locator(".st-key-proj_frac input[type=range]")  # the slider is a native range input
    assert thumb.input_value() == "0.25"
    before = page.locator("body").inner_text().count("95% CI")  # the Defences view below has intervals too
    thumb.focus()
    for _ in range(5):
        page.keyboard.press("ArrowRight")
    page.wait_for_function("document.body.innerText.includes('ρ = 0.30, scored')", timeout=60_000)
    page.wait_for_timeout(2000)
    text = page.locator("body").inner_text()
    assert "is not a scored point" not in text and text.count("95% CI") == before  # one point, as at ρ = 0.25
    for _ in range(2):
        page.keyboard.press("ArrowRight")
    page.wait_for_function("document.body.innerText.includes('ρ = 0.32 is not a scored point')", timeout=60_000)
    page.wait_for_timeout(2000)
    text = page.locator("body").inner_text()
    assert "nothing is interpolated" in text and "ρ = 0.30, scored" in text and "ρ = 0.35, scored" in text
    assert text.count("95% CI") == before + 4  # the scores of two points, not one
    if os.environ.get("EXPLORER_SCREENSHOTS"):
        page.screenshot(path=str(SCREENSHOTS / "projection-between.png"))
    page.close()
