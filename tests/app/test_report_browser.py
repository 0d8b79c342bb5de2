"""The HTML report and the app's error boxes in a real browser (Debian's Chromium via Playwright).

The report is opened from disk with every other request blocked, as an attachment would be: each chart must be
drawn, and a report made from hostile names must run nothing. The app, served with a damaged bundle and a
family whose live computation fails, must show one error box and no traceback.
"""
from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from playwright.sync_api import Page, sync_playwright

from explorer.core.config import settings
from explorer.results.bundle import Bundle
from explorer.results.findings import findings
from explorer.results.html_report import finding_chart, render

ROOT = Path(__file__).resolve().parents[2]
DEMO_BUNDLE = ROOT / "cache" / "families" / "demo"
CHROMIUM = dict(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu",
                                                            "--disable-background-networking"])
HOSTILE = {"aligned": "</script><img src=x onerror=alert(1)>", "base": '"><svg onload=alert(2)>',
           "contaminated": "<script>alert(3)</script>"}
HOSTILE_MANIFEST = {"family": "</title><script>alert(4)</script>", "created": "<img src=x onerror=alert(5)>",
                    "command": "python -m explorer precompute '</code><iframe src=javascript:alert(6)>",
                    "profile": "<body onload=alert(7)>"}


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(**CHROMIUM)
        yield chromium
        chromium.close()


def _open_offline(browser, report: Path) -> tuple[Page, list[str], list[str]]:
    """The report opened from disk; every request but the file itself is aborted. Returns requests and dialogs."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    url = report.resolve().as_uri()
    requests, dialogs = [], []
    page.on("request", lambda request: requests.append(request.url))
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.route("**/*", lambda route: route.continue_() if route.request.url == url else route.abort())
    page.goto(url, wait_until="load")
    page.wait_for_timeout(1000)  # time for any script or failed image to act
    return page, requests, dialogs


def _charts_of(bundle: Bundle) -> int:
    """The members chart, one per finding with data, and LoX's when the results hold it."""
    return 1 + sum(finding_chart(f) is not None for f in findings(bundle)) + bundle.has("lox")


def _coloured_pixels(png: bytes) -> int:
    """Pixels whose channels differ by more than 60: marks, not grey axes, text or background."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    return sum(1 for r, g, b in image.getdata() if max(r, g, b) - min(r, g, b) > 60)


def test_the_report_draws_every_chart_with_no_network(browser, tmp_path):
    report = tmp_path / "demo-findings.html"
    report.write_text(render(Bundle(DEMO_BUNDLE)), encoding="utf-8")
    page, requests, _ = _open_offline(browser, report)
    assert requests == [report.resolve().as_uri()]  # nothing else was even asked for
    figures = page.locator("figure")
    assert figures.count() == _charts_of(Bundle(DEMO_BUNDLE))
    for index in range(figures.count()):
        figure = figures.nth(index)
        box = figure.locator("svg").first.bounding_box()
        assert box and box["width"] >= 250 and box["height"] >= 150, (index, box)
        assert _coloured_pixels(figure.locator("svg").first.screenshot()) > 300, f"chart {index} has no marks"
        assert len(figure.locator("figcaption").inner_text()) > 60  # it says what the chart shows


def _hostile_bundle(folder: Path) -> Path:
    """A copy of the demo bundle whose member names and manifest fields are markup that would run script."""
    shutil.copytree(DEMO_BUNDLE, folder)
    scores = json.loads((folder / "scores.json").read_text())
    (folder / "scores.json").write_text(json.dumps({HOSTILE.get(m, m): s for m, s in scores.items()}))
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, **HOSTILE_MANIFEST}))
    for table in folder.glob("*.parquet"):
        frame = pd.read_parquet(table)
        for column in ("member", "variant", "a", "b"):
            if column in frame:
                frame[column] = frame[column].replace(HOSTILE)
        frame.to_parquet(table, index=False)
    return folder


def test_a_report_of_hostile_names_runs_nothing(browser, tmp_path):
    bundle = Bundle(_hostile_bundle(tmp_path / "hostile"))
    report = tmp_path / "hostile.html"
    report.write_text(render(bundle), encoding="utf-8")
    page, _, dialogs = _open_offline(browser, report)
    assert dialogs == []
    assert page.evaluate("document.querySelectorAll('img, iframe, script:not([type=\"application/json\"])').length") == 0
    text = page.locator("body").inner_text()
    for value in [*HOSTILE.values(), *HOSTILE_MANIFEST.values()]:
        assert value in text or value.replace("'", "’") in text, value  # shown as text
    assert page.title() == f"Safety subspaces: {HOSTILE_MANIFEST['family']}"
    spec = page.evaluate("JSON.parse(document.getElementById('chart0-spec').textContent)")
    assert HOSTILE["aligned"] in json.dumps(spec)  # the data block holds the names intact
    assert page.locator("figure svg").count() == _charts_of(bundle)


OUT_OF_MEMORY = "CUDA out of memory. Tried to allocate 2.00 GiB"


@pytest.fixture(scope="module")
def damaged_server(tiny_demo, tmp_path_factory, serve):
    """The app on a cache whose demo bundle has a truncated scores.json, plus the tiny family, whose live scoring
    fails in the server as a GPU out of memory would: an error the pages do not foresee."""
    root = tmp_path_factory.mktemp("damaged-server")
    cache = root / "cache"
    shutil.copytree(DEMO_BUNDLE, cache / "families" / "demo")
    scores = cache / "families" / "demo" / "scores.json"
    scores.write_bytes(scores.read_bytes()[:100])
    shutil.copytree(settings().bundles_dir / "tiny", cache / "families" / "tiny")
    shutil.copytree(tiny_demo.parent.parent, root / "tiny", ignore=shutil.ignore_patterns("b"))
    hooks = root / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(  # run by the server's interpreter at start-up
        f"import sys\nsys.path.insert(0, {str(ROOT)!r})\nfrom explorer.evaluation.scores import PointScorer\n"
        f"def out_of_memory(*args, **kwargs):\n    raise RuntimeError({OUT_OF_MEMORY!r})\n"
        "PointScorer.score_stream = out_of_memory\n")
    log = root / "streamlit.log"
    with serve({**os.environ, "EXPLORER_CACHE_DIR": str(cache), "PYTHONPATH": str(hooks)}, log) as url:
        yield url, root / "tiny" / "families" / "tiny.toml", log


ERROR_BOX, EXCEPTION = '[data-testid="stAlertContentError"]', '[data-testid="stException"]'


def _errors(page: Page) -> list[str]:
    page.wait_for_selector(ERROR_BOX, timeout=60_000)
    page.wait_for_timeout(1500)  # let the run finish: a traceback would come after the first box
    assert page.locator(EXCEPTION).count() == 0 and "Traceback" not in page.content()
    return page.locator(ERROR_BOX).all_inner_texts()


@pytest.mark.parametrize("path", ["", "Weight_spectra", "Projection_lab", "Update_overlap", "Activation_space",
                                  "Spot-check"])
def test_a_damaged_bundle_is_one_error_box_in_the_browser(browser, damaged_server, path):
    url, _, _ = damaged_server
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{url}/{path}")
    [message] = _errors(page)
    assert "scores.json cannot be read: it is truncated or corrupt" in message
    page.close()


def test_a_failing_live_action_is_one_error_box_in_the_browser(browser, damaged_server):
    url, family, log = damaged_server
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url)
    sidebar = page.locator('[data-testid="stSidebar"]')
    sidebar.locator('[data-testid="stSelectbox"]').first.click()  # the family picker; "Compare with" may follow
    page.get_by_role("option", name="Another family file…").click()
    field = sidebar.get_by_label("Family file (TOML)")
    field.fill(str(family))
    field.press("Enter")
    page.wait_for_selector("text=precomputed", timeout=60_000)  # the sidebar caption of the tiny family
    sidebar.get_by_role("link", name="Projection lab").click()  # ρ = 0.25 is off its grid: scored live at once
    page.wait_for_selector(f"{ERROR_BOX} >> text=Computing this point live failed", timeout=60_000)
    [message] = _errors(page)
    assert message == ("Computing this point live failed with an unexpected RuntimeError; the details are in "
                       "the server's log.")
    server_log = log.read_text()
    assert "Computing this point live failed" in server_log and "Traceback" in server_log
    page.close()
