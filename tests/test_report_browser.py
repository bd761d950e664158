"""The report as a person sees it: rendered by a real headless Chromium (Debian's chromium and
chromium-driver, driven by selenium), with no console error, no network request, and figures that
are present and not blank. Set DLBENCH_SCREENSHOT_DIR to keep the screenshots and look at them."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("matplotlib", reason="the report extra is not installed: pip install 'dlbench[report]'")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed: pip install 'dlbench[dev]'")

from PIL import Image  # noqa: E402 (matplotlib's dependency)

from conftest import ROOT  # noqa: E402
from report_records import EVIL, fleet  # noqa: E402
from runner.records import collection  # noqa: E402
from runner.report import compare, page, prices  # noqa: E402

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not (CHROMIUM and DRIVER), reason="no headless browser: apt-get install chromium chromium-driver")]
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage")


@pytest.fixture
def browser(tmp_path):
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS + (f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1300,900"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=DRIVER))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def requests(driver) -> list[str]:
    import json

    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def not_blank(png: bytes) -> tuple[int, float]:
    """(distinct colors, share of pixels that are not white) of a screenshot."""
    im = Image.open(io.BytesIO(png)).convert("RGB")
    counts = {color: n for n, color in im.getcolors(im.width * im.height)}
    return len(counts), 1 - counts.get((255, 255, 255), 0) / (im.width * im.height)


def render(driver, text: str, path: Path, name: str) -> bytes:
    path.write_text(text, encoding="utf-8")
    requests(driver)  # drop what the browser's own start page asked for
    driver.get(path.as_uri())
    # get() can hand back while a long page (many figures as data: URIs) is still 'interactive':
    # wait for the load to finish, up to the page-load timeout, and say what state it stopped in.
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    state = lambda d: d.execute_script("return document.readyState")  # noqa: E731
    try:
        WebDriverWait(driver, 60, poll_frequency=0.2).until(lambda d: state(d) == "complete")
    except TimeoutException:
        pytest.fail(f"the page did not finish loading in 60 s: readyState is {state(driver)!r}")
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1300, min(height + 40, 16000))
    shot = driver.get_screenshot_as_png()
    if os.environ.get("DLBENCH_SCREENSHOT_DIR"):
        Path(os.environ["DLBENCH_SCREENSHOT_DIR"], f"{name}.png").write_bytes(shot)
    return shot


def check(driver, text: str, path: Path, name: str, figures: int) -> None:
    from selenium.webdriver.common.by import By

    render(driver, text, path, name)
    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert errors == []
    # The page itself and its data: figures, nothing else (chrome: is the browser's own UI)
    assert [u for u in requests(driver) if not u.startswith(("data:", "chrome:", "chrome-untrusted:"))] == [path.as_uri()]
    imgs = driver.find_elements(By.CSS_SELECTOR, "figure img")
    assert len(imgs) == figures
    for img in imgs:
        loaded = driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img)
        assert loaded and img.size["width"] > 300 and img.size["height"] > 150
        driver.execute_script("arguments[0].scrollIntoView()", img)
        colors, inked = not_blank(img.screenshot_as_png)
        assert colors > 20 and inked > 0.03, (img.get_attribute("alt"), colors, inked)
    assert driver.find_elements(By.TAG_NAME, "script") == []


def test_fixture_report_renders_cleanly_and_escapes(browser, tmp_path):
    from selenium.webdriver.common.by import By

    recs = fleet()
    text = page.html(recs, compare.rows(recs), prices.resolve(["cuda=2.5"]))
    check(browser, text, tmp_path / "fixture.html", "report-fixture", figures=3)
    body = browser.find_element(By.TAG_NAME, "body").text
    assert EVIL in body and "FAIL: not comparable" in body and "free tier" in body
    assert browser.execute_script("return window.__xss === undefined")


def test_committed_results_render_cleanly(browser, tmp_path):
    recs, _ = collection.load([ROOT / "results"])
    text = page.html(recs, compare.rows(recs), prices.resolve(["cpu=0.10"]))
    specs = {r["spec_hash"] for r in compare.training(recs)}  # three figures per training spec; studies draw none
    check(browser, text, tmp_path / "results.html", "report-results", figures=3 * len(specs))
