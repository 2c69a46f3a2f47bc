"""Open a real compare report in headless Chromium: it must load offline without console errors and
every figure container must hold a rendered plotly plot. Skipped only when Chromium (Debian's
``chromium`` + ``chromium-driver``, installed by .ci/run) is absent."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from reports.build import write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="chromium and chromedriver not installed (apt-get install chromium chromium-driver; .ci/run does)",
)


@pytest.fixture()
def driver():  # type: ignore[no-untyped-def]
    from selenium import webdriver  # in the test extra: a missing selenium is a failure, not a skip
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--window-size=1300,1000"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(str(DRIVER)), options=opts)
    yield drv
    drv.quit()


def test_compare_report_renders_every_figure_without_console_errors(
    compare_folder: Path, driver, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    write_report(compare_folder)
    driver.get((compare_folder / "report.html").as_uri())
    containers = driver.find_elements(By.CSS_SELECTOR, "div.figure")
    assert len(containers) >= 4  # frontier, share by difficulty, latency, budget (+ occupancy)
    WebDriverWait(driver, 30).until(
        lambda d: all(c.find_elements(By.CSS_SELECTOR, ".main-svg") for c in containers)
    )
    for c in containers:
        assert c.find_element(By.TAG_NAME, "h3").text
        assert c.find_element(By.CSS_SELECTOR, "p.caption").text
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    driver.set_window_size(1300, driver.execute_script("return document.body.scrollHeight") + 100)
    shot = tmp_path / "report.png"
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
