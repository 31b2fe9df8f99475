"""The web page in headless Chromium (Playwright with the system Chromium): upload a video, wait, see the result."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium (apt-get install -y chromium)")


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.mark.slow
def test_upload_progress_and_timeline(browser, server, world, tmp_path):
    page = browser.new_page()
    problems = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(server.url + "/")
    page.wait_for_function("document.getElementById('model').textContent.startsWith('Model:')")
    assert "calm, tense" in page.text_content("#model")
    assert "NOT real" in page.text_content("#model-warning")
    page.set_input_files("#video", str(world["videos"] / "v1.mp4"))
    page.click("#submit")
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)
    assert page.locator("#timeline polyline").count() == 2  # one line per class
    assert page.get_attribute("#timeline polyline[data-name='calm']", "points").count(",") == 3  # 3 segments
    headline = page.text_content("#headline")
    assert headline.startswith("v1: ") and ("calm" in headline or "tense" in headline)
    assert page.locator("#probabilities tr").count() == 2
    assert page.get_attribute("#download", "href").startswith("blob:")
    assert page.input_value("#token") == "" and page.text_content("#error") == ""
    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    assert problems == []


def test_a_refused_file_shows_its_reason(browser, server, tmp_path):
    page = browser.new_page()
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    page.goto(server.url + "/")
    page.set_input_files("#video", str(bad))
    page.click("#submit")
    page.wait_for_function("document.getElementById('error').textContent.length > 0")
    assert page.text_content("#error").startswith("notes.mp4: cannot open as a media file")
    assert page.is_hidden("#result")
