"""Write the README's screenshots of the dashboard: ``docs/screenshots/<page>.png``.

    .venv/bin/python dashboards/screenshots.py [--cohort DIR] [--model DIR] [--report DIR] [--stay N] [--out DIR]

Serves the dashboard (on the demo outputs unless a cohort is given), opens each page in headless
Chromium, runs a what-if through the interface, and saves one PNG per page, scaled to
``--width`` pixels and reduced to a 256-colour palette to stay small.
"""

from __future__ import annotations

import argparse
import io
import tempfile
from pathlib import Path

from clinic.browser import (
    browser_binaries,
    chromium_driver,
    click_button,
    serve_dashboard,
    wait_for_text,
    wait_until_idle,
)
from PIL import Image

PAGES = {
    "browser": ("", 1500, "Patient browser"),
    "patient": ("patient", 2300, "Patient view"),
    "whatif": ("whatif", 3000, "What-if"),
    "synthetic": ("synthetic", 1300, "Synthetic cohorts"),
}
"""Screenshot name -> (page address, window height in pixels, the page's title)."""


def save_png(png: bytes, path: Path, width: int) -> int:
    """Scale ``png`` to ``width`` pixels wide, reduce it to 256 colours and write it; returns bytes written."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    image = image.resize((width, round(image.height * width / image.width)), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(buffer, format="PNG", optimize=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".png.tmp")
    temporary.write_bytes(buffer.getvalue())
    temporary.replace(path)
    return len(buffer.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cohort", type=Path, help="cohort directory (default: the demo's)")
    parser.add_argument("--model", type=Path, help="model directory (default: the demo's)")
    parser.add_argument("--report", type=Path, help="synthetic report directory")
    parser.add_argument("--stay", type=int, default=None, help="the patient to show")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "screenshots")
    parser.add_argument("--width", type=int, default=1100, help="width of the saved images (pixels)")
    options = parser.parse_args()
    binaries = browser_binaries()
    if binaries is None:
        raise SystemExit("screenshots need Chromium and chromedriver (Debian: apt-get install chromium chromium-driver)")
    arguments = [*(["--cohort", str(options.cohort)] if options.cohort else []),
                 *(["--model", str(options.model)] if options.model else []),
                 *(["--report", str(options.report)] if options.report else [])]
    stay = f"?stay={options.stay}" if options.stay is not None else ""
    with tempfile.TemporaryDirectory() as scratch, serve_dashboard(arguments, log=Path(scratch) / "streamlit.log") as url:
        driver = chromium_driver(binaries)
        try:
            for name, (address, height, title) in PAGES.items():
                driver.set_window_size(1400, height)
                driver.get(f"{url}/{address}{stay}")
                wait_for_text(driver, title, timeout_s=300)
                wait_until_idle(driver)
                if name == "whatif":
                    click_button(driver, "Run what-if")
                    wait_for_text(driver, "Outcomes", timeout_s=300)
                    wait_until_idle(driver, settle_s=3)
                size = save_png(driver.get_screenshot_as_png(), options.out / f"{name}.png", options.width)
                print(f"{options.out / f'{name}.png'}: {size / 1024:.0f} KiB")
        finally:
            driver.quit()


if __name__ == "__main__":
    main()
