"""The app in a real browser: Debian's headless chromium, driven by playwright, uploads an image and
waits (bounded) until the prediction and the LD-mask view are on the page, then takes a screenshot.

Needs the ``playwright`` wheel (only its driver; no ``playwright install``) and ``/usr/bin/chromium``
(``apt-get install chromium``). Under ``CI=true`` a missing browser fails the test; elsewhere it skips.
``GALD_APP_SCREENSHOT=path.png`` also writes the screenshot there (the README's image).
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest
from PIL import Image

CHROMIUM = os.environ.get("GALD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
TIMEOUT_MS = 120_000  # one bound for every wait: page load, segmentation, LD view


def _require(what: str, ok: bool) -> None:
    if ok:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is missing; CI must provide it (see .ci/run)")
    pytest.skip(f"{what} is missing (apt-get install chromium; pip install -e '.[app]')")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    try:
        import gradio  # noqa: F401
        import playwright  # noqa: F401
    except ImportError:
        _require("the app extra (gradio, playwright)", False)
    _require(f"the chromium browser at {CHROMIUM}", os.path.isfile(CHROMIUM) or bool(shutil.which(CHROMIUM)))
    from gald import app
    from gald.viz import views

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio")))
        examples = views.example_images(tmp_path_factory.mktemp("examples"))
        demo = app.build_demo(app.load_predictor(), examples=examples)
        _, url, _ = demo.launch(prevent_thread_lock=True, server_port=_free_port(), quiet=True, **app.LAUNCH_KWARGS)
        yield url, examples
        demo.close()


def test_upload_segment_and_screenshot(served, tmp_path):
    from playwright.sync_api import sync_playwright

    url, examples = served
    upload = next(p for p, label in examples if "synthetic" in label and "day" in label)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(url, wait_until="domcontentloaded")
            page.locator("#input-image input[type=file]").set_input_files(upload)
            page.locator("#segment-button").click()
            page.locator("#prediction img").wait_for(state="visible")
            page.locator("#areas").get_by_text("road").first.wait_for(state="visible")
            page.get_by_role("tab", name="LD masks (Eq. 1)").click()
            page.locator("#ld-mean img").wait_for(state="visible")
            assert "Synthetic-data model" in page.locator("#model-banner").inner_text()
            shot = tmp_path / "app.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    with Image.open(shot) as im:
        assert im.size[0] == 1280 and im.size[1] >= 600
    target = os.environ.get("GALD_APP_SCREENSHOT")
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)
