"""The dashboard in headless Chromium (Debian's chromium and chromedriver, driven by Selenium)
against a real API server on the session's stack: an alert published on the alerts topic during
the test shows up in the live feed, and a screenshot is saved."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest
import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from tests.factories import alert as make_alert
from tests.factories import model_ref
from tests.integration.pipeline import free_port
from visionline.kafka import producer
from visionline.messages import Alert, Topic, to_json
from visionline.tokens import create_token

pytestmark = pytest.mark.integration

CHROMEDRIVER = "/usr/bin/chromedriver"  # Debian's chromium-driver (make browser)
SCREENSHOTS = Path(__file__).resolve().parents[3] / "bench-results"


@pytest.fixture(scope="module")
def api_server(new_api_app):
    """The API under uvicorn on a free port (a browser needs a real socket)."""
    app = new_api_app()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the API server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--window-size=1400,900",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console, CSP reports
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def _alert(camera_id: str) -> Alert:
    return make_alert(
        camera_id,
        "frame-1",
        "browser-test",
        label="scratch",
        confidence=0.93,
        severity="critical",
        model=model_ref("defect_detector", "1"),
    )


def test_an_alert_published_during_the_test_appears_in_the_live_feed(
    api_server, browser, engine, stack
):
    token = create_token(engine, "browser-test", "viewer")
    browser.get(f"{api_server}/dashboard#token={token}")
    wait = WebDriverWait(browser, 30)
    # The live stream is open once the page says so; alerts published before that are not live.
    wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "status"), "live"))
    alert = _alert(f"browser-{uuid.uuid4().hex[:8]}")
    kafka = producer(stack.kafka_bootstrap)
    kafka.produce(str(Topic.ALERTS), to_json(alert), key=alert.camera_id.encode())
    assert kafka.flush(10) == 0
    selector = f'#alert-feed li[data-alert-id="{alert.alert_id}"]'
    row = wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, selector)))
    assert "scratch" in row.text and alert.camera_id in row.text
    assert "critical" in row.text
    # The page works under its Content-Security-Policy: the browser blocked nothing on it.
    console = [entry["message"] for entry in browser.get_log("browser")]
    assert not [m for m in console if "Content Security Policy" in m], console
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / "dashboard-browser-test.png"
    assert browser.save_screenshot(str(path))
    assert path.stat().st_size > 10_000  # a rendered page, not an empty image


def test_without_a_token_the_page_asks_for_one(api_server, browser):
    browser.get(f"{api_server}/dashboard")
    browser.execute_script("localStorage.clear()")
    browser.get(f"{api_server}/dashboard")
    login = WebDriverWait(browser, 15).until(
        expected_conditions.visibility_of_element_located((By.ID, "login"))
    )
    assert login.is_displayed()
    assert "token" in browser.find_element(By.ID, "status").text
