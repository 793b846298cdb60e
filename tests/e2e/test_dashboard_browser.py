"""End to end: ``streamlit run dashboards/app.py`` on a tiny engine cohort, driven in headless
Chromium through selenium: open the what-if page, run a what-if from the interface, and check that
the screenshot of the trajectories chart is not blank."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

DASHBOARDS = Path(__file__).resolve().parents[2] / "dashboards"
if str(DASHBOARDS) not in sys.path:
    sys.path.insert(0, str(DASHBOARDS))

from clinic.browser import (  # noqa: E402
    browser_binaries,
    chromium_driver,
    click_button,
    png_spread,
    serve_dashboard,
    wait_for,
    wait_for_text,
    wait_until_idle,
)

from organsim.physiology import EngineConfig, PhysiologyEngine  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def binaries() -> tuple[str, str]:
    found = browser_binaries()
    if found is None:
        pytest.skip("headless Chromium and chromedriver are not installed (Debian: apt-get install chromium chromium-driver; "
                    ".ci/run installs them)")
    return found


def test_a_whatif_run_through_the_browser_draws_its_chart(binaries: tuple[str, str], tmp_path: Path) -> None:
    cohort = tmp_path / "cohort"
    PhysiologyEngine(EngineConfig(n_patients=10, hours=24, seed=5)).generate().split((0.7, 0.15, 0.15), seed=0).save(cohort)
    log = tmp_path / "streamlit.log"
    with serve_dashboard(["--cohort", str(cohort)], environ={"ORGANSIM_DEMO_OUT": str(tmp_path / "no_demo")}, log=log) as url:
        driver = chromium_driver(binaries)
        try:
            driver.get(f"{url}/whatif?stay=2")
            wait_for_text(driver, "What-if", timeout_s=300)
            wait_until_idle(driver)
            click_button(driver, "Run what-if")
            wait_for_text(driver, "Outcomes", timeout_s=300)
            wait_until_idle(driver, settle_s=2)
            body = driver.find_element("tag name", "body").text
            assert "Traceback" not in body and "Error" not in body.split("Outcomes")[0].split("Run what-if")[-1]
            assert "stay=2" in driver.current_url  # the patient of the address stays open
            chart = wait_for(driver, '[data-testid="stPlotlyChart"]')[0]
            driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", chart)
            png = chart.screenshot_as_png
            (tmp_path / "whatif_chart.png").write_bytes(png)
            spread, inked = png_spread(png)
            assert spread > 10 and inked > 0.01, f"the chart area looks blank: grey-level sd {spread:.1f}, inked share {inked:.3f}"
            table = driver.find_elements("css selector", '[data-testid="stDataFrame"]')
            assert table, "no outcome table on the page"
        finally:
            driver.save_screenshot(str(tmp_path / "whatif_page.png"))
            driver.quit()
