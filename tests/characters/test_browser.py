"""In headless Chromium: what the Characters tab shows of a character."""

from __future__ import annotations

import pytest

from masuka.characters.making import create_character
from tests.chromium import chromium

from .test_making import request

chromium()  # skips this module without it, outside CI
pytestmark = pytest.mark.browser


def test_the_face_crops_are_shown_whole(live_app, tiny_model, tiny_clip, portrait, page):
    app = live_app()
    create_character(app.studio, request(tiny_model("sdxl"), tiny_clip, portrait, views=1))
    page.goto(app.url)
    page.get_by_role("tab", name="Characters").first.click(timeout=30_000)
    picker = page.get_by_label("Character", exact=True)
    picker.fill("anna")
    picker.press("Enter")
    crop = page.locator(".block", has_text="Faces the views are compared with").locator("img").first
    crop.wait_for(timeout=30_000)
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=crop.element_handle(),
                           timeout=15_000)
    shown = crop.evaluate("""img => {
        const own = img.getBoundingClientRect(), seen = img.closest('.grid-wrap').getBoundingClientRect();
        return {fit: getComputedStyle(img).objectFit, width: own.width, height: own.height,
                inside: own.top >= seen.top - 1 && own.bottom <= seen.bottom + 1};
    }""")
    assert shown["fit"] == "contain", "the whole face, not the part that fills the box"
    assert shown["inside"], "not cut off by the gallery's height"
    assert shown["width"] < 300 and shown["height"] < 300, "one small square, not stretched across the row"
