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


def test_plan_report_renders_its_figures(driver, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A ``llmsim plan`` folder's report: the Capacity plan section with its six figures rendered."""
    import yaml
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    from typer.testing import CliRunner

    from sim.cli import app
    from tests.sim.conftest import small_scenario

    data = small_scenario(num_queries=300)
    data["gpus"][0]["count"] = 8
    data["deployments"][1]["tp"] = 4
    data["router"] = {"policy": "lagrangian", "window_s": 1.0, "capacity": "slots", "budget_per_query": 0.002}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    folder = tmp_path / "plan"
    res = CliRunner().invoke(app, ["plan", str(path), "--out", str(folder), "--seeds", "2", "--slo", "e2e_p95=60s",
                                   "-q"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    driver.get((folder / "report.html").as_uri())
    assert "Capacity plan" in driver.find_element(By.TAG_NAME, "body").text
    plan_figs = [c for c in driver.find_elements(By.CSS_SELECTOR, "div.figure")
                 if "GPUs per model" in c.text or "Sustainable load" in c.text or "p95" in c.text]
    assert len(plan_figs) >= 4
    WebDriverWait(driver, 30).until(lambda d: all(c.find_elements(By.CSS_SELECTOR, ".main-svg") for c in plan_figs))
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    driver.set_window_size(1300, driver.execute_script("return document.body.scrollHeight") + 100)
    shot = tmp_path / "plan-report.png"
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
