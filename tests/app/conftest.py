"""What the browser tests share: `streamlit run app.py` headless on a free port."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def streamlit_server(env: dict[str, str], log: Path) -> Iterator[str]:
    """The app served with `env`, its output written to `log`; yields its URL and stops it afterwards."""
    port = _free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless",
                                 "true", "--server.port", str(port), "--server.address", "127.0.0.1",
                                 "--browser.gatherUsageStats", "false"], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("streamlit did not start within 60 s")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    """The app on the committed demo results."""
    env = {k: v for k, v in os.environ.items() if k != "EXPLORER_CACHE_DIR"}
    with streamlit_server(env, tmp_path_factory.mktemp("server") / "streamlit.log") as url:
        yield url


@pytest.fixture(scope="session")
def serve():
    """`serve(env, log)`: the app with an environment of the test's own (a private cache, say), as a context."""
    return streamlit_server


CHROMIUM = "/usr/bin/chromium"  # Debian's; never `playwright install`


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium driven by Playwright, shared by a test module's browser tests."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu",
                                                                     "--disable-background-networking"])
        yield chromium
        chromium.close()
