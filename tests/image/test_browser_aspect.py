"""In headless Chromium: the Aspect follows the size a starting picture sets; an iPhone's HEIC, which Chromium
cannot show, shows there as a copy it can, and goes onto the inpaint canvas when Inpaint/Outpaint is chosen."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.chromium import chromium
from tests.photos import SIDEWAYS_HEIC

chromium()  # skips this module without it, outside CI
pytestmark = pytest.mark.browser


def test_a_wide_starting_picture_shows_a_custom_aspect(live_app, page, tmp_path):
    picture = tmp_path / "wide.png"
    Image.new("RGB", (200, 120), "teal").save(picture)
    app = live_app()
    page.goto(app.url)
    page.get_by_role("tab").first.wait_for(timeout=30_000)
    aspect = page.get_by_label("Aspect", exact=True)
    expect(aspect).to_have_value("1:1", timeout=15_000)
    page.get_by_label("Image", exact=True).check()
    page.locator("input[type=file]").first.set_input_files(str(picture))
    expect(page.get_by_label("Width", exact=True)).to_have_value("192", timeout=15_000)
    expect(aspect).to_have_value("custom", timeout=15_000)
    aspect.click()
    page.get_by_role("option", name="16:9").click()  # a preset sets the size, and the Aspect stays on it
    expect(page.get_by_label("Width", exact=True)).to_have_value("1344", timeout=15_000)
    page.wait_for_timeout(500)
    expect(aspect).to_have_value("16:9")

    page.locator("input[type=file]").first.set_input_files(str(SIDEWAYS_HEIC))  # stored sideways, 384x288
    expect(page.get_by_label("Width", exact=True)).to_have_value("288", timeout=15_000)
    shown = page.locator("img[src*='-shown-'][src$='.jpg']")  # the upright JPEG copy, in the Starting image box
    expect(shown).to_have_count(1, timeout=15_000)
    assert shown.evaluate("img => img.decode().then(() => [img.naturalWidth, img.naturalHeight])") == [288, 384]

    page.get_by_label("Inpaint/Outpaint", exact=True).check()  # the picture goes onto the empty canvas
    editor = page.locator("#masuka-canvas")
    editor.scroll_into_view_if_needed()
    suit = 0
    for _ in range(30):  # until the canvas has drawn it (seconds on a busy machine)
        shot = np.asarray(Image.open(io.BytesIO(editor.screenshot())).convert("RGB")).astype(int)
        suit = int(((shot[..., 0] > 180) & (shot[..., 1] > 60) & (shot[..., 1] < 150) & (shot[..., 2] < 90)).sum())
        if suit > 2000:
            break
        page.wait_for_timeout(500)
    assert suit > 2000, "the astronaut's orange suit is on the canvas"
