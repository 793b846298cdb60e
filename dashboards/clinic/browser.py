"""Drive the dashboard in a real browser: serve it with ``streamlit run`` and open it in headless
Chromium through selenium (Debian's ``chromium`` and ``chromium-driver``). Used by the end-to-end
test (``tests/e2e/``) and by ``dashboards/screenshots.py``, which writes the README's screenshots.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np

APP = Path(__file__).resolve().parents[1] / "app.py"
CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMEDRIVER_PATHS = ("/usr/bin/chromedriver",)
PLOTS_DRAWN = """
return Array.from(document.querySelectorAll('[data-testid="stPlotlyChart"]')).every(chart => {
    const plot = chart.querySelector('.js-plotly-plot');
    return plot !== null && plot._fullLayout !== undefined && plot.querySelector('.main-svg') !== null;
});
"""
"""JavaScript: whether plotly has drawn every chart on the page (a drawn plot has its ``_fullLayout``)."""
WINDOW = (1400, 1000)
"""Browser window size (pixels)."""


def browser_binaries() -> tuple[str, str] | None:
    """``(chromium, chromedriver)`` paths, or None when either is not installed."""
    chromium = next((p for p in CHROMIUM_PATHS if Path(p).exists()), None) or shutil.which("chromium")
    driver = next((p for p in CHROMEDRIVER_PATHS if Path(p).exists()), None) or shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serve_dashboard(arguments: list[str], *, environ: Mapping[str, str] | None = None, timeout_s: float = 120.0,
                    log: Path | None = None) -> Iterator[str]:
    """Run ``streamlit run dashboards/app.py -- <arguments>`` headless on a free port; yield its URL.

    The server is stopped on exit. ``log`` receives its output (default: discarded).

    Raises
    ------
    RuntimeError
        When the server does not answer its health check within ``timeout_s`` seconds (with the
        end of its log).
    """
    port = free_port()
    command = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true", "--server.port", str(port),
               "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
               "--", *arguments]
    sink = open(log, "wb") if log is not None else subprocess.DEVNULL
    server = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, **(environ or {})})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-2000:] if log is not None and log.exists() else ""
                raise RuntimeError(f"the dashboard did not start on port {port} (exit code {server.poll()}):\n{tail}")
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if log is not None:
            sink.close()


def chromium_driver(binaries: tuple[str, str]):
    """A headless Chromium selenium driver of :data:`WINDOW` size (the caller quits it)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = binaries
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", f"--window-size={WINDOW[0]},{WINDOW[1]}",
                 "--hide-scrollbars", "--force-device-scale-factor=1"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


def png_spread(png: bytes) -> tuple[float, float]:
    """``(standard deviation of the grey levels, share of pixels that are not near-white)`` of a PNG:
    a blank chart area has both near 0."""
    from PIL import Image

    grey = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float64)
    return float(grey.std()), float((grey < 235).mean())


def wait_for(driver, css: str, *, count: int = 1, timeout_s: float = 90.0) -> list:
    """The elements matching ``css`` once at least ``count`` are on the page (TimeoutException after
    ``timeout_s`` seconds)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout_s, poll_frequency=0.25).until(
        lambda d: found if len(found := d.find_elements(By.CSS_SELECTOR, css)) >= count else False)


def wait_for_text(driver, text: str, *, timeout_s: float = 90.0):
    """The first element whose text is ``text`` exactly, once it is on the page."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout_s, poll_frequency=0.25).until(
        lambda d: next(iter(d.find_elements(By.XPATH, f"//*[normalize-space(text())='{text}']")), False))


def wait_until_idle(driver, *, timeout_s: float = 120.0, settle_s: float = 1.5) -> None:
    """Wait until the app has stopped running its script (Streamlit's status widget is gone) and
    plotly has drawn every chart on the page, then ``settle_s`` seconds more."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def drawn(d) -> bool:
        return not d.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]') and d.execute_script(PLOTS_DRAWN)

    time.sleep(0.5)
    WebDriverWait(driver, timeout_s, poll_frequency=0.25).until(drawn)
    time.sleep(settle_s)


def click_button(driver, label: str, *, timeout_s: float = 90.0) -> None:
    """Click the button labelled ``label``."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    button = WebDriverWait(driver, timeout_s, poll_frequency=0.25).until(
        lambda d: next(iter(d.find_elements(By.XPATH, f"//button[normalize-space(.)='{label}']")), False))
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", button)
    button.click()
