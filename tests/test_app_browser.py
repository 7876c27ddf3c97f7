"""The app in a real browser: Debian's headless chromium, driven by playwright. Uploading an image
segments it (no button); every view follows a second upload (the attribution equals the library's
for the new image); one legend with the class areas; colour bars under the LD maps; stage images
keep their aspect ratio; no server path on the page; a click on the prediction opens the context
probe; the sky swap runs. Every wait is bounded. Ends with a screenshot.

Needs the ``playwright`` wheel (only its driver; no ``playwright install``) and ``/usr/bin/chromium``
(``apt-get install chromium``). Under ``CI=true`` a missing browser fails the test; elsewhere it skips.
``GALD_APP_SCREENSHOT=path.png`` also writes the screenshot there (the README's image).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import socket
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import numpy as np
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
        mp.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio")))  # the test reads it back
        examples = views.example_images(tmp_path_factory.mktemp("examples"))
        demo = app.build_demo(app.load_predictor(), examples=examples)
        _, url, _ = demo.launch(prevent_thread_lock=True, server_port=_free_port(), quiet=True, **app.LAUNCH_KWARGS)
        yield url, examples
        demo.close()


def _image_at(page, selector: str) -> np.ndarray:
    """The pixels the browser shows in an <img> (fetched from its src, decoded with Pillow)."""
    src = page.locator(f"{selector} img").first.get_attribute("src")
    with Image.open(io.BytesIO(page.request.get(src).body())) as im:
        return np.asarray(im.convert("RGB"))


def _wait_new_src(page, selector: str, old: str | None) -> str:
    page.wait_for_function(
        "([sel, old]) => { const i = document.querySelector(sel + ' img'); return i && i.src && i.src !== old; }",
        arg=[selector, old],
    )
    return page.locator(f"{selector} img").first.get_attribute("src")


def test_the_page_in_a_browser(served, tmp_path):
    from playwright.sync_api import sync_playwright

    from gald import app
    from gald.viz import views

    url, examples = served
    day = next(p for p, label in examples if "synthetic" in label and "day" in label)
    dusk = next(p for p, label in examples if "synthetic" in label and "dusk" in label)
    predictor = app.load_predictor()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(url, wait_until="domcontentloaded")
            upload = page.locator("#input-image input[type=file]")
            upload.set_input_files(day)  # no click: uploading runs the model
            first = _wait_new_src(page, "#prediction", None)
            legend = page.locator("#legend")
            legend.get_by_text("road").first.wait_for(state="visible")
            assert "%" in legend.inner_text() and page.locator("#areas").count() == 0  # one legend, with areas
            page.get_by_role("tab", name="Attribution").click()
            attribution = _wait_new_src(page, "#attribution", None)

            upload.set_input_files(dusk)  # a second image: every view must follow
            _wait_new_src(page, "#prediction", first)
            _wait_new_src(page, "#attribution", attribution)
            image, _ = views.load_image(dusk)
            analysis = views.analyze(predictor, image)
            areas = views.prediction_views(predictor, analysis)["areas"]
            expected, _ = views.attribution_view(predictor, analysis, max(areas, key=areas.get), "gald")
            assert (_image_at(page, "#attribution") == expected).all()

            page.get_by_role("tab", name="LD masks (Eq. 1)").click()
            page.locator("#ld-mean img").wait_for(state="visible")
            bars = page.locator(".gald-colorbar")
            bars.nth(2).wait_for(state="visible")
            assert bars.count() == 3 and "0.5" in bars.first.inner_text()

            page.get_by_role("tab", name="Per-stage predictions").click()
            thumbs = page.locator("#stages img")
            thumbs.nth(2).wait_for(state="visible")
            for i in range(3):
                fit, natural = thumbs.nth(i).evaluate("i => [getComputedStyle(i).objectFit, i.naturalWidth / i.naturalHeight]")
                assert fit == "contain" and natural == 2.0  # the 128×256 scene, not cropped to a square

            page.get_by_role("tab", name="Model").click()
            page.locator("#model-info").get_by_text("shipped with gald").wait_for(state="visible")
            text = page.locator("body").inner_text()
            for private in (str(app.default_checkpoint().parent), os.environ["GRADIO_TEMP_DIR"], str(Path(day).parent)):
                assert private not in text

            box = page.locator("#prediction img").bounding_box()
            page.mouse.click(box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.85)  # on the ground
            page.locator("#probe img").wait_for(state="visible")  # the click opened the probe's tab
            page.locator("#probe-gate").get_by_text("LD channels").wait_for(state="visible")
            caption = page.locator("#probe-text").inner_text()
            row, column = (int(v) for v in re.search(r"row (\d+), column (\d+)", caption).groups())
            assert abs(row - 0.85 * 128) <= 2 and abs(column - 0.25 * 256) <= 2  # the pixel under the click
            page.locator("#swap-button").click()
            page.locator("#swap-text").get_by_text("Sky repainted in day colours").wait_for(state="visible")
            page.locator("#swap img").wait_for(state="visible")
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
